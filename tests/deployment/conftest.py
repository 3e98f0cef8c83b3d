"""A real api-server with the plugin and real execution records, for the plugin and browser tests.

``ui_server`` (once per session): an Airflow home on SQLite with this repo's ``dags/`` and
``plugins/``, real runs made with ``airflow dags test`` (two successful ``recommender_training``
runs registering into a temporary registry, one failed run, one ``user_engagement_features``
run), then ``airflow api-server`` as a process. Its auth manager is SimpleAuthManager with two
restricted users (``auth_fixture/mlpipe_test_auth.py``). Needs no service besides itself.

The registry is the spec's, through a ``dev`` overlay (a trigger may not change it). A second
team folder, ``dags/ranking/`` with its own loader file, holds ``ranking_features`` and a
hostile spec nested 30,000 levels deep (``deep_nesting.yaml``).

``e2e_cluster`` (once per session): the docker-compose topology as processes (api-server,
scheduler, dag-processor, two Celery workers on PostgreSQL and Redis) over ``dags/`` plus the specs
of ``e2e_specs.py``, for ``test_e2e_celery.py`` and ``test_assets_approval.py``. No shared disk: the
workers (``celery-worker`` on the default queue, ``gpu-worker`` on ``gpu``, where the reference
pipeline's ``train`` goes) each have their own temporary folder and copy of the dags folder, and
the artifact root and the model registry are on S3 (``e2e_storage``, moto on loopback).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from airflow_processes import (
    AirflowApi,
    AirflowProcesses,
    CeleryCluster,
    E2eStorage,
    celery_cluster,
    clean_environment,
    copy_dags,
    free_port,
    wait_until,
    write_passwords,
)

HERE = Path(__file__).parent
REPO = HERE.parents[1]
USERS = {"admin": "admin", "viewer": "viewer", "analyst": "viewer", "auditor": "viewer"}
NESTING = 30_000


@dataclass
class UiServer:
    base_url: str
    root: Path
    dags: Path
    registry: Path
    env: dict[str, str]
    processes: AirflowProcesses
    runs: dict[str, str] = field(default_factory=dict)

    def password(self, user: str) -> str:
        return f"{user}-password"

    def api(self, user: str = "admin") -> AirflowApi:
        return AirflowApi(self.base_url, user, self.password(user))


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    from airflow_mlpipe.demo_data import generate_user_events

    root = tmp_path_factory.mktemp("ui-server")
    registry = f"file://{root / 'registry'}"
    registry_overlay = f"stages:\n  - name: register\n    config: {{registry: '{registry}'}}\n"
    dags = copy_dags(root / "dags", {"recommender_training.dev.yaml": registry_overlay})
    _add_team_folder(dags / "ranking")
    analytics = root / "analytics.db"
    generate_user_events(analytics, n_users=600, n_items=300, n_events=30_000)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = clean_environment(
        AIRFLOW_HOME=str(root / "airflow-home"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{root / 'airflow.db'}",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__AUTH_MANAGER="mlpipe_test_auth.ScopedAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=write_passwords(root / "passwords.json", USERS),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(root / "passwords.json"),
        AIRFLOW__API__BASE_URL=base_url,
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API__SECRET_KEY=uuid.uuid4().hex,
        AIRFLOW__API_AUTH__JWT_SECRET=uuid.uuid4().hex,
        AIRFLOW__MLPIPE__ARTIFACT_ROOT=f"file://{root / 'artifacts'}",
        AIRFLOW_CONN_ANALYTICS_DB=f"sqlite:///{analytics}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE / "auth_fixture"), os.environ.get("PYTHONPATH")])),
    )
    processes = AirflowProcesses(env, root / "logs")
    server = UiServer(base_url, root, dags, root / "registry", env, processes)
    try:
        processes.run("db", "migrate")
        processes.run("dags", "reserialize")
        # The api-server starts while the runs are made: it only reads the database on requests.
        processes.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(port))
        for label, dag_id, overrides in [
            ("first", "recommender_training", {}),
            # The reference spec sweeps factors: a trigger replaces the sweep's values to change it.
            (
                "second",
                "recommender_training",
                {"train": {"sweep": {"grid": {"factors": [16], "regularization": [10, 20]}}, "epochs": 10}},
            ),
            ("failed", "recommender_training", {"extract": {"batch_size": "lots"}}),
            ("features", "user_engagement_features", {}),
        ]:
            conf = f'{{"overrides": {_json(overrides)}}}'
            # A failed run makes 'dags test' exit non-zero: the database says how each run ended.
            processes.run("dags", "test", dag_id, "--conf", conf, timeout=600, check=False)
            server.runs[label] = _latest_run_id(root / "airflow.db", dag_id)

        def up() -> bool:
            processes.check_alive()
            import httpx

            return httpx.get(f"{base_url}/api/v2/version", timeout=5).status_code == 200

        wait_until(up, 120, "the api-server")
        yield server
    finally:
        processes.stop()


@pytest.fixture(scope="session")
def e2e_storage(s3_endpoint: str) -> E2eStorage:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="mlpipe-test-key",
        aws_secret_access_key="mlpipe-test-secret",
    )
    suffix = uuid.uuid4().hex[:10]
    buckets = E2eStorage(client, f"e2e-artifacts-{suffix}", f"e2e-models-{suffix}")
    for bucket in (buckets.artifacts, buckets.registry):
        client.create_bucket(Bucket=bucket)
    return buckets


@pytest.fixture(scope="session")
def e2e_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, e2e_storage: E2eStorage
) -> Iterator[CeleryCluster]:
    import e2e_specs

    from airflow_mlpipe.demo_data import generate_user_events

    root = tmp_path_factory.mktemp("e2e")
    analytics = root / "analytics.db"
    generate_user_events(analytics, n_users=600, n_items=300, n_events=30_000)
    overlay = e2e_specs.OVERLAY.format(
        gpu_queue=e2e_specs.GPU_QUEUE, registry=e2e_storage.registry_uri, conn_id=e2e_specs.S3_CONN_ID
    )
    specs = {
        f"recommender_training.{e2e_specs.ENVIRONMENT}.yaml": overlay,
        "failing_pipeline.yaml": e2e_specs.FAILING,
        "minutely_events.yaml": e2e_specs.MINUTELY,
        **e2e_specs.SPECS_FOR_ASSETS_AND_APPROVALS,
    }
    s3_connection = f"AIRFLOW_CONN_{e2e_specs.S3_CONN_ID.upper()}"
    env = {
        "AIRFLOW__MLPIPE__ENVIRONMENT": e2e_specs.ENVIRONMENT,
        "AIRFLOW_CONN_ANALYTICS_DB": f"sqlite:///{analytics}",
        s3_connection: os.environ[s3_connection],
        # No file:// anywhere: what one worker writes, another reads from S3.
        "AIRFLOW__MLPIPE__ARTIFACT_ROOT": f"s3://{e2e_specs.S3_CONN_ID}@{e2e_storage.artifacts}/runs",
    }
    dag_ids = {name.partition(".")[0] for name in specs} | {"recommender_training"}
    users = {e2e_specs.TRIGGERER: "user"}
    queues = {"gpu-worker": e2e_specs.GPU_QUEUE}
    with celery_cluster(request.config, root, specs, dag_ids, env, users=users, queues=queues) as started:
        yield started


def _add_team_folder(folder: Path) -> None:
    """A second loader file with its own specs: a copy of user_engagement_features, and a spec
    nested ``NESTING`` levels deep (60 KB) that must not take anything down."""
    import shutil

    (folder / "pipelines").mkdir(parents=True)
    shutil.copy(REPO / "dags" / "mlpipe_loader.py", folder / "mlpipe_loader.py")
    features = (REPO / "dags" / "pipelines" / "user_engagement_features.yaml").read_text()
    renamed = features.replace("name: user_engagement_features", "name: ranking_features")
    renamed = renamed.replace("analytics-team", "ranking-team")
    (folder / "pipelines" / "ranking_features.yaml").write_text(renamed)
    deep = "name: deep_nesting\nversion: 1.0.0\nmetadata: {owner: x}\nstages:\n" + "- " * NESTING + "x\n"
    (folder / "pipelines" / "deep_nesting.yaml").write_text(deep)


def _json(value: object) -> str:
    import json

    return json.dumps(value)


def _latest_run_id(database: Path, dag_id: str) -> str:
    import sqlite3

    with sqlite3.connect(database) as db:
        row = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
    return row[0]
