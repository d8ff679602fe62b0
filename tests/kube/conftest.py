"""Serves the ``kube_api`` fixture to tests/kube (tests/conftest.py may import it for all tests)."""

from .emulator import kube_api  # noqa: F401
