"""Fixtures for DAG factory tests: a test component package and spec folders."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURE_PACKAGES = Path(__file__).parent / "fixture_pkg"
TEST_COMPONENTS = "mlpipe_test_steps"

if str(FIXTURE_PACKAGES) not in sys.path:
    sys.path.insert(0, str(FIXTURE_PACKAGES))


@pytest.fixture
def allow_test_components(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let specs in this process use ``mlpipe_test_steps.*`` components."""
    monkeypatch.setenv("AIRFLOW__MLPIPE__COMPONENT_MODULES", TEST_COMPONENTS)


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for Airflow subprocesses that run specs using the test components."""
    return {
        "AIRFLOW__MLPIPE__COMPONENT_MODULES": TEST_COMPONENTS,
        "PYTHONPATH": os.pathsep.join([str(FIXTURE_PACKAGES), os.environ.get("PYTHONPATH", "")]),
    }


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write ``NAME.yaml`` (dedented) into ``tmp_path / 'specs'`` and return the folder."""

    def write(name: str, text: str) -> Path:
        folder = tmp_path / "specs"
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
        return folder

    return write
