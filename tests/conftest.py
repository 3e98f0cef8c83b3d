"""Test-wide setup: an isolated Airflow home, and skipping tests whose services are absent."""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import socket
import tempfile
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Before anything imports Airflow: never touch a developer's ~/airflow, never load examples.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="mlpipe-tests-airflow-home-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# The factory's validated-spec cache in the session's Airflow home, not the user's ~/.cache.
os.environ["AIRFLOW__MLPIPE__SPEC_CACHE_DIR"] = os.path.join(os.environ["AIRFLOW_HOME"], "spec-cache")


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


# -- S3 on loopback ----------------------------------------------------------------------------

S3_CONN_ID = "mlpipe_s3"


def require_modules(*modules: str, install: str) -> None:
    """Skip (fail under CI=true) unless every module imports."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            reason = f"{module} is not installed ({exc}); pip install '{install}'"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"{reason}: CI must run the tests that need it")
            pytest.skip(reason)


@pytest.fixture
def openlineage_provider() -> None:
    """Skip (fail under CI=true) without the Airflow OpenLineage provider."""
    try:
        importlib.import_module("airflow.providers.openlineage.sqlparser")
    except ImportError as exc:
        reason = f"the OpenLineage provider is missing ({exc}); pip install 'airflow-mlpipe[openlineage]'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: CI must run the OpenLineage tests")
        pytest.skip(reason)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, and the Airflow connection ``mlpipe_s3`` pointing at it.

    One server for the session, shared by the component, hook and registry tests. The connection
    is an environment variable (set for the session, so that subprocesses
    inherit it): type ``aws``, dummy keys, ``endpoint_url`` = the server.
    """
    require_modules("moto.server", install="moto[server]")
    require_modules(
        "s3fs", "airflow.providers.amazon.aws.fs.s3", install="apache-airflow-providers-amazon[s3fs]"
    )
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    variable = f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"
    previous = os.environ.get(variable)
    os.environ[variable] = json.dumps(
        {
            "conn_type": "aws",
            "login": "mlpipe-test-key",
            "password": "mlpipe-test-secret",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    )
    try:
        yield endpoint
    finally:
        server.stop()
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous


@pytest.fixture
def s3_conn_id(s3_endpoint: str) -> str:
    """The Airflow connection id of the moto server."""
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
        aws_access_key_id="mlpipe-test-key",
        aws_secret_access_key="mlpipe-test-secret",
    )
    client.create_bucket(Bucket=name)
    return name


# -- MLflow on loopback --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_installed() -> None:
    """Skip (fail under CI=true) without the mlflow extra."""
    require_modules("mlflow", install="airflow-mlpipe[mlflow]")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend store, artifacts served from a local
    folder) for the session; its URL. Tests read what was logged back through its REST API."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    require_modules("mlflow", "mlflow.server", install="airflow-mlpipe[mlflow]")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("wb")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "server"),
            *("--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"),
            *("--artifacts-destination", str(root / "artifacts")),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped with its workers below
        env={key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")},
    )
    try:
        server_log = root / "server.log"
        deadline = time.monotonic() + 240  # the first start migrates its database (slow on a busy machine)
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited with {server.returncode}:\n{server_log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer on {url}:\n{server_log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


@pytest.fixture(scope="session")
def mlflow_api(mlflow_server: str) -> Callable[..., Any]:
    """``mlflow_api("GET", "experiments/get-by-name", experiment_name=...)``: MLflow's REST API
    (``/api/2.0/mlflow/...``) as JSON; GET parameters as keywords, POST bodies as ``json=``."""
    import requests

    def call(method: str, endpoint: str, json: Any = None, **params: Any) -> Any:
        response = requests.request(
            method, f"{mlflow_server}/api/2.0/mlflow/{endpoint}", params=params or None, json=json, timeout=30
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    return call
