"""Test-wide setup: an isolated Airflow home, and skipping tests whose services are absent."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# Before anything imports Airflow: never touch a developer's ~/airflow, never load examples.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="mlpipe-tests-airflow-home-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is not listening, except under CI=true, where it must be there."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} is not reachable on {host}:{port} ({exc})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must provide it")
    pytest.skip(reason)


@pytest.fixture
def specs_with_overlays() -> Callable[[Path, Path, dict[str, str]], Path]:
    """Copy a spec folder and add overlay files (file name -> YAML text); returns the copy.

    Tests that must point a pipeline at their own registry or thresholds do it as a spec author
    would, with an environment overlay: trigger-time overrides may not change those fields.
    """

    def copy(source: Path, target: Path, overlays: dict[str, str]) -> Path:
        shutil.copytree(source, target, dirs_exist_ok=True)
        for name, text in overlays.items():
            (target / name).write_text(textwrap.dedent(text))
        return target

    return copy
