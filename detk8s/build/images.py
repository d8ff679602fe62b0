"""The project's images (detk8s.yaml `images:`) as builds: context, Dockerfile, args, tag."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from detk8s.build.context import content_hash
from detk8s.config.schema import ImageConfig, ProjectConfig
from detk8s.paths import SOURCE_ROOT


@dataclass(frozen=True)
class ImageBuild:
    name: str  # its key under `images:`
    repository: str
    context: Path
    dockerfile: Path
    build_args: Mapping[str, str] = field(default_factory=dict)
    registry_secret: str | None = None

    @property
    def tag(self) -> str:
        return content_hash(self.context, self.dockerfile, self.build_args)

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


def image_build(
    name: str, config: ImageConfig, project_root: Path, extra_args: Mapping[str, str] = {}
) -> ImageBuild:
    """`extra_args` (from the command line) override the project's build args."""
    context = SOURCE_ROOT if config.context is None else project_root / config.context
    return ImageBuild(
        name=name,
        repository=config.repository,
        context=context,
        dockerfile=context / config.dockerfile,
        build_args={**config.build_args, **extra_args},
        registry_secret=config.registry_secret,
    )


def declared_image(reference: str, project: ProjectConfig) -> str | None:
    """The `images:` key a run's `image:` names: the key itself, or its repository untagged."""
    if reference in project.images:
        return reference
    return next((k for k, c in project.images.items() if c.repository == reference), None)
