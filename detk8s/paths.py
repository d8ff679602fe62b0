"""Where things are: in the repository, in an installed wheel, and inside the training pod."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# A wheel carries the top-level data dirs under detk8s/_data; a source checkout has them beside
# the package.
_DATA_DIR = PACKAGE_DIR / "_data"
SOURCE_ROOT = PACKAGE_DIR.parent


def data_path(relative: str) -> Path:
    """A top-level data dir of the project (k8s_templates, configs/paddledet)."""
    installed = _DATA_DIR / relative
    return installed if installed.exists() else SOURCE_ROOT / relative


TEMPLATES_DIR = "k8s_templates"


def model_configs_dir(framework: str) -> str:
    """Our model configs for a framework, relative to the project root."""
    return f"configs/{framework}"


PROJECT_FILE = "detk8s.yaml"


def user_cache_dir() -> Path:
    """detk8s's cache on this machine ($XDG_CACHE_HOME/detk8s): safe to delete at any time."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "detk8s"
