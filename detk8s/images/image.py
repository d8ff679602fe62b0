"""The project's images (detk8s.yaml `images:`) as builds: Dockerfile, target, context, build
args, and the tag that hashes them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from detk8s.config.schema import ImageConfig, ProjectConfig
from detk8s.errors import DetkError
from detk8s.images.context import ContextError, content_hash, directory_files, file_digest
from detk8s.images.staged import (
    DOCKERFILE,
    Source,
    materialize,
    staged_digests,
    staged_files,
)
from detk8s.paths import data_path


@dataclass(frozen=True)
class ImageBuild:
    name: str  # its key under `images:`
    repository: str
    project_root: Path
    dockerfile: Path
    context: Path | None  # a directory context; None: detk8s's own, assembled (images/staged.py)
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    registry_secret: str | None = None

    @cached_property
    def dockerfile_text(self) -> str:
        try:
            return self.dockerfile.read_text(encoding="utf-8")
        except OSError as e:
            raise ContextError(f"cannot read {self.dockerfile}: {e.strerror}") from None

    @cached_property
    def files(self) -> dict[str, Source]:
        """Context path -> file, generated content, or None for the detk8s wheel."""
        if self.context is None:
            return staged_files(self.project_root)
        return dict(directory_files(self.context, self.dockerfile_text))

    @cached_property
    def tag(self) -> str:
        if self.context is None:
            digests = staged_digests(self.files)
        else:
            digests = {rel: file_digest(p) for rel, p in self.files.items() if isinstance(p, Path)}
        text = self.dockerfile_text.encode()
        return content_hash(text, self.build_args, self.target, digests)

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def dockerfile_in_context(self) -> str:
        """Where the Dockerfile sits in the context a builder gets."""
        if self.context is None:
            return DOCKERFILE
        try:
            return self.dockerfile.resolve().relative_to(self.context.resolve()).as_posix()
        except ValueError:
            return "Dockerfile.detk8s"

    def context_dir(self, scratch: Path) -> Path:
        """The directory a builder builds from: the project's, or detk8s's assembled in the
        empty dir `scratch`."""
        if self.context is None:
            return materialize(self.files, scratch)
        return self.context


class ImageError(DetkError):
    pass


def image_build(
    name: str, config: ImageConfig, project_root: Path, extra_args: Mapping[str, str] = {}
) -> ImageBuild:
    """`extra_args` (from the command line) override the project's build args."""
    if config.dockerfile is None:
        dockerfile, context = data_path(DOCKERFILE), None
    else:
        context = project_root / (config.context or ".")
        dockerfile = context / config.dockerfile
    return ImageBuild(
        name=name,
        repository=config.repository,
        project_root=project_root,
        dockerfile=dockerfile,
        context=context,
        target=config.target,
        build_args={**config.build_args, **extra_args},
        registry_secret=config.registry_secret,
    )


def declared_image(reference: str, project: ProjectConfig) -> str | None:
    """The `images:` key a run's `image:` names: the key itself, or its repository untagged."""
    if reference in project.images:
        return reference
    return next((k for k, c in project.images.items() if c.repository == reference), None)
