"""Fixtures for the hook tests: a real S3 API on loopback (moto's server) and artifacts to register.

The S3 server is reached through Airflow's ``ObjectStoragePath`` with the ``aws`` connection
``mlpipe_hooks_s3``, defined as an ``AIRFLOW_CONN_`` environment variable (subprocesses inherit
it). Without ``moto[server]`` or ``apache-airflow-providers-amazon[s3fs]`` the S3 tests skip,
except under ``CI=true``, where they fail. (The same server as ``tests/components/conftest.py``
starts: conftest fixtures cannot be shared between sibling folders.)
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mlpipe-hooks-airflow-home-"))

S3_CONN_ID = "mlpipe_hooks_s3"
KEY, SECRET = "mlpipe-test-key", "mlpipe-test-secret"


def _require(*modules: str, install: str) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            reason = f"{module} is not installed ({exc}); pip install '{install}'"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"{reason}: CI must run the S3 tests")
            pytest.skip(reason)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, and the Airflow connection pointing at it."""
    _require("moto.server", install="moto[server]")
    _require("s3fs", "airflow.providers.amazon.aws.fs.s3", install="apache-airflow-providers-amazon[s3fs]")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    variable = f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"
    os.environ[variable] = json.dumps(
        {
            "conn_type": "aws",
            "login": KEY,
            "password": SECRET,
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    )
    try:
        yield endpoint
    finally:
        server.stop()
        os.environ.pop(variable, None)


@pytest.fixture
def s3_conn_id(s3_endpoint: str) -> str:
    return S3_CONN_ID


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the moto server (its name)."""
    import boto3

    name = f"models-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )
    client.create_bucket(Bucket=name)
    return name


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
