"""`detk8s build`: the project's images, tagged by the hash of their inputs, built (and pushed)
only when that tag is neither here nor in the registry."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from detk8s.cli.cluster_opts import ContextOpt, DryRun, KubeconfigOpt, NamespaceOpt, connect
from detk8s.cli.common import app, err, project
from detk8s.errors import ConfigErrors, UsageError

if TYPE_CHECKING:
    from detk8s.images.builders import Builder
    from detk8s.images.image import ImageBuild
    from detk8s.project import Project


@app.command()
def build(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Images by their name under `images:` (default: those the runs use).",
            show_default=False,
        ),
    ] = None,
    all_images: Annotated[bool, typer.Option("--all", help="Every image in the project.")] = False,
    push: Annotated[bool, typer.Option("--push", help="Push to the image's registry.")] = False,
    dry_run: Annotated[
        DryRun,
        typer.Option(
            "--dry-run",
            help="client: print each tag and the exact builder command (with --in-cluster, the "
            "Job); server: --in-cluster --submit validated by the API server, nothing created.",
        ),
    ] = DryRun.none,
    builder: Annotated[
        str,
        typer.Option(
            "--builder", metavar="NAME", help="auto (docker if its daemon answers), docker, podman."
        ),
    ] = "auto",
    build_args: Annotated[
        list[str] | None,
        typer.Option(
            "--build-arg",
            metavar="KEY=VALUE",
            help="Over the project's build args; part of the tag.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Show only build steps (last lines on failure).")
    ] = False,
    in_cluster: Annotated[
        bool,
        typer.Option("--in-cluster", help="Print a kaniko Job that builds and pushes in-cluster."),
    ] = False,
    submit: Annotated[
        bool, typer.Option("--submit", help="With --in-cluster: create that Job.")
    ] = False,
    kaniko_image: Annotated[
        str | None,
        typer.Option("--kaniko-image", metavar="IMAGE", help="kaniko executor image.", hidden=True),
    ] = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Build the training images, tagged by the hash of what goes into them.

    A tag already built here or in the registry is not built again."""
    proj = project()
    images = _images(proj, names or [], all_images, _parse_args(build_args or []))
    if submit and not in_cluster:
        raise UsageError("--submit creates the in-cluster build Job: add --in-cluster")
    if dry_run is DryRun.server and not (in_cluster and submit):
        raise UsageError("--dry-run=server validates the in-cluster Job: add --in-cluster --submit")
    if in_cluster:
        _in_cluster(proj, images, submit, dry_run, kaniko_image, context, namespace, kubeconfig)
        return
    from detk8s.images.builders import Builder, NoBuilder, detect, shown

    if dry_run is DryRun.client:
        try:
            chosen = detect(builder)
        except NoBuilder as e:  # the plan is still worth seeing
            err(f"warning: {e}; showing a docker build")
            chosen = Builder("docker", "docker")
        for image in images:
            typer.echo(f"{image.name}: {image.ref}")
            where = image.context or Path("<context>")  # assembled only for a real build
            typer.echo(f"  {shown(chosen.build_cmd(image, where))}")
            if image.context is None:
                typer.echo("  <context>: detk8s's Dockerfile and requirements, detk8s as a "
                           "wheel, the project's model configs")  # fmt: skip
            if push:
                typer.echo(f"  {shown(chosen.push_cmd(image.ref))}")
        return
    chosen = detect(builder)
    for image in images:
        _build_one(chosen, image, push, quiet)


def _parse_args(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--build-arg {pair.split('=')[0]!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _images(
    proj: Project, names: list[str], all_images: bool, extra: dict[str, str]
) -> list[ImageBuild]:
    from detk8s.images.context import ContextError
    from detk8s.images.image import image_build

    declared = proj.settings.images
    if not declared:
        raise UsageError(f"{proj.file.name} declares no images (images: NAME: REPOSITORY)")
    if all_images:
        names = list(declared)
    elif not names:
        names = _used_images(proj)
    unknown = [n for n in names if n not in declared]
    if unknown:
        known = ", ".join(declared)
        raise UsageError(f"no image {unknown[0]!r} in {proj.file.name} (known: {known})")
    images = [image_build(n, declared[n], proj.root, extra) for n in dict.fromkeys(names)]
    try:
        for image in images:
            _ = image.tag  # the inputs are readable: fail now, in one line, not mid-build
    except ContextError as e:
        raise UsageError(str(e)) from None
    return images


def _used_images(proj: Project) -> list[str]:
    """The images the project's runs name (`image: auto`, an image's name or repository)."""
    from detk8s.jobspec import image_name

    loaded, errors = proj.load_runs(proj.select([], all_runs=True))
    if errors:
        raise ConfigErrors(errors)
    used = []
    for run in loaded:
        name = image_name(run, proj.settings)
        if name is not None and name in proj.settings.images and name not in used:
            used.append(name)
    if not used:
        raise UsageError("no run uses an image of the project: name one (detk8s build NAME)")
    return used


def build_and_push(proj: Project, names: list[str], builder: str = "auto") -> None:
    """Build and push the project's images `names` (what `submit --build` does first)."""
    from detk8s.images.builders import detect

    chosen = detect(builder)
    for image in _images(proj, names, False, {}):
        _build_one(chosen, image, push=True, quiet=True)


def _build_one(builder: Builder, image: ImageBuild, push: bool, quiet: bool) -> None:
    from detk8s.images.registry import manifest_exists

    ref = image.ref
    local = builder.exists_locally(ref)
    if local and not push:
        typer.echo(f"{image.name}: {ref} exists locally: nothing to build")
        return
    remote = manifest_exists(ref)
    if remote.exists:
        typer.echo(f"{image.name}: {ref} exists in the registry: nothing to build or push")
        return
    if remote.exists is None:
        err(f"warning: {image.name}: {remote.detail}; building")
    if not local:
        import tempfile

        err(f"{image.name}: building {ref} with {builder.name}")
        with tempfile.TemporaryDirectory(prefix="detk8s-context-") as scratch:
            cmd = builder.build_cmd(image, image.context_dir(Path(scratch)))
            _run(cmd, f"{image.name}: {builder.name} build", quiet)
        typer.echo(f"{image.name}: built {ref}")
    if push:
        _run(builder.push_cmd(ref), f"{image.name}: push of {ref}", quiet)
        typer.echo(f"{image.name}: pushed {ref}")


def _run(cmd: list[str], what: str, quiet: bool) -> None:
    from detk8s.images.builders import BuildError, run_streamed

    result = run_streamed(cmd, err, steps_only=quiet)
    if result.code == 0:
        return
    if quiet:  # the lines were not shown yet: a failure ends with the builder's last lines
        for line in result.tail:
            err(line)
    where = f" at {result.step}" if result.step else ""
    raise BuildError(f"{what} failed{where} (exit code {result.code})")


def _in_cluster(
    proj: Project,
    images: list[ImageBuild],
    submit: bool,
    dry_run: DryRun,
    kaniko_image: str | None,
    context: str | None,
    namespace: str | None,
    kubeconfig: str | None,
) -> None:
    from detk8s.backends.kubernetes.manifests import to_yaml
    from detk8s.images.kaniko import KANIKO_IMAGE, job_name, render_build_job, submit_build_job
    from detk8s.images.registry import manifest_exists

    ns = namespace or proj.settings.namespace or "default"
    rendered = {i.name: render_build_job(i, ns, kaniko_image or KANIKO_IMAGE) for i in images}
    if not submit or dry_run is DryRun.client:
        sys.stdout.write(to_yaml([m for ms in rendered.values() for m in ms]))
        return
    cluster = connect(proj, context, namespace, kubeconfig)
    for image in images:
        remote = manifest_exists(image.ref)
        if remote.exists:
            typer.echo(f"{image.name}: {image.ref} exists in the registry: nothing to build")
            continue
        outcome = submit_build_job(cluster, rendered[image.name], dry_run is DryRun.server)
        typer.echo(
            f"{image.name}: {outcome} jobs/{job_name(image)} in namespace {cluster.namespace} "
            f"(builds and pushes {image.ref}); logs: kubectl logs -n {cluster.namespace} "
            f"-f job/{job_name(image)}"
        )
