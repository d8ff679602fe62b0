"""Where things are: in the repository, in an installed wheel, and inside the training pod."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# A wheel carries the top-level data dirs under detk8s/_data (pyproject.toml's force-include);
# a source checkout has them beside the package.
DATA_DIR = "_data"
SOURCE_ROOT = PACKAGE_DIR.parent


def data_path(relative: str) -> Path:
    """A top-level data file or dir of detk8s (k8s_templates, configs/paddledet, Dockerfile)."""
    installed = PACKAGE_DIR / DATA_DIR / relative
    return installed if installed.exists() else SOURCE_ROOT / relative


TEMPLATES_DIR = "k8s_templates"
AFFINITY_SCHEMA = f"{TEMPLATES_DIR}/schemas/affinity.json"  # Kubernetes' own, for `affinity:`


CONFIGS_DIR = "configs"


def model_configs_dir(framework: str) -> str:
    """A framework's model configs, relative to a project (its own) or to detk8s (shipped)."""
    return f"{CONFIGS_DIR}/{framework}"


def config_search_path(project_root: Path) -> tuple[Path, ...]:
    """Where model configs are looked up: the project's configs/, then those detk8s ships."""
    return (project_root / CONFIGS_DIR, data_path(CONFIGS_DIR))


PROJECT_FILE = "detk8s.yaml"

# The training image's user and group (the Dockerfile's USER): pods run as them, never as root.
IMAGE_UID = IMAGE_GID = 10001


def user_cache_dir() -> Path:
    """detk8s's cache on this machine ($XDG_CACHE_HOME/detk8s): safe to delete at any time."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "detk8s"
