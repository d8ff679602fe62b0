"""Framework adapters: what one run of a framework needs (command, env, files), backend-neutral.

Adapters are imported only when a run of theirs is rendered, so the registry holds import paths.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detk8s.frameworks.base import FrameworkAdapter

ADAPTERS: dict[str, str] = {
    "paddledet": "detk8s.frameworks.paddledet:PaddleDetAdapter",
}


def known_frameworks() -> list[str]:
    return sorted(ADAPTERS)


def get_adapter(framework: str) -> FrameworkAdapter:
    module, _, attr = ADAPTERS[framework].partition(":")
    adapter: FrameworkAdapter = getattr(import_module(module), attr)()
    return adapter
