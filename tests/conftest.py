"""Test-wide setup: an isolated Airflow home, and skipping tests whose services are absent."""

from __future__ import annotations

import os
import socket
import tempfile

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
