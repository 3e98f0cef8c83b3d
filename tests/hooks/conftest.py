"""Fixtures for the hook tests: artifacts to register, and the hook's log.

The S3 tests use the session's moto server from ``tests/conftest.py`` (``s3_endpoint``,
``s3_conn_id``, ``s3_bucket``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mlpipe-hooks-airflow-home-"))

@pytest.fixture
def source_artifacts(tmp_path: Path) -> dict[str, str]:
    """Files like an evaluation stage's outputs: a model, an index and a report (name -> URI)."""
    source = tmp_path / "evaluate-outputs"
    source.mkdir()
    (source / "model.npz").write_bytes(b"factors" * 1000)
    (source / "user_index.parquet").write_bytes(b"users")
    (source / "report.json").write_text(json.dumps({"recall@10": 0.3}))
    return {
        "model": f"file://{source}/model.npz",
        "user_index": f"file://{source}/user_index.parquet",
        "report": f"file://{source}/report.json",
    }


class LogCapture:
    """The messages hooks logged (through structlog, as Airflow's task SDK sets it up)."""

    def __init__(self, events: list[dict]) -> None:
        self.events = events

    @property
    def text(self) -> str:
        return "\n".join(str(event.get("event")) for event in self.events)


@pytest.fixture
def hook_log() -> Iterator[LogCapture]:
    import structlog.testing

    with structlog.testing.capture_logs() as events:
        yield LogCapture(events)
