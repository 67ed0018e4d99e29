"""pytest fixtures of the Blender tests (import them into a test module to use them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.blender.harness import build_zip


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension zip, built once per test session by ``build_addon.py``."""
    return build_zip(tmp_path_factory.mktemp("addon"))
