"""The package says one version: pyproject.toml's is webhook_service.__version__."""

from __future__ import annotations

import tomllib
from pathlib import Path

import webhook_service

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_and_the_package_say_the_same_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == webhook_service.__version__
