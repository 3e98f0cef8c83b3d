"""End to end on real Airflow processes: the docker-compose topology, without containers.

PostgreSQL is the metadata database (a fresh database per run of this module), Redis the Celery
broker; ``airflow api-server``, ``scheduler``, ``dag-processor`` and ``celery worker`` run as
processes of this Python environment over a copy of this repo's ``dags/`` with three specs added.
Everything goes through the REST API as a client would: trigger, watch, read the execution record
and the task logs. Failure e-mails reach a real SMTP server on loopback.

Skipped (with the reason) where PostgreSQL or Redis is not running; under ``CI=true`` they must be.
Bounded: every wait has a timeout, and the fixture stops every process group it started.
"""

from __future__ import annotations

import importlib.util
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from airflow_processes import (
    AirflowApi,
    AirflowProcesses,
    clean_environment,
    copy_dags,
    free_port,
    head_commit,
    require,
    require_service,
    wait_until,
    write_passwords,
)

from airflow_mlpipe.testing.smtp import SmtpSink, html_body

pytestmark = pytest.mark.postgres

PG_HOST, PG_PORT, REDIS_PORT = "127.0.0.1", 5432, 6379
ENVIRONMENT = "e2e"
STAGES = ["extract", "transform_features", "train", "evaluate", "register"]

OVERLAY = """\
# The deployment tests' environment: manual runs only, so unpausing it starts no scheduled run.
metadata:
  schedule: null
"""

FAILING = """\
name: failing_pipeline
version: 1.0.0
metadata:
  owner: e2e-team
  description: Fails on purpose, its query reads a table that does not exist
  schedule: null
  notify_on_failure: ["oncall@example.com", "owner@example.com"]
stages:
  - name: extract
    component: data.extract.database
    config:
      query: "SELECT * FROM table_that_does_not_exist"
      connection: analytics_db
    retries: 0
  - name: features
    component: features.user_engagement
    config: {window_days: 7}
    dependencies: [extract]
"""

MINUTELY = """\
name: minutely_events
version: 1.0.0
metadata:
  owner: e2e-team
  description: A small extract every minute
  schedule: "* * * * *"
stages:
  - name: extract
    component: data.extract.database
    config:
      query: "SELECT user_id, item_id FROM user_events LIMIT 100"
      connection: analytics_db
    retries: 0
"""


@dataclass
class Cluster:
    api: AirflowApi
    processes: AirflowProcesses
    smtp: SmtpSink
    root: Path
    dags: Path
    registry: Path


def _admin_connection():
    import psycopg2

    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres")
    connection.autocommit = True
    return connection


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_service(request.config, "PostgreSQL", PG_HOST, PG_PORT)
    require_service(request.config, "Redis", PG_HOST, REDIS_PORT)
    require(
        importlib.util.find_spec("airflow.providers.celery") is not None,
        "apache-airflow-providers-celery is not installed (pip install -e '.[dev]')",
    )
    from airflow_mlpipe.demo_data import generate_user_events

    root = tmp_path_factory.mktemp("e2e")
    suffix = uuid.uuid4().hex[:10]
    database, queue, redis_db = f"mlpipe_e2e_{suffix}", f"mlpipe_e2e_{suffix}", 1 + int(suffix, 16) % 15
    dags = copy_dags(
        root / "dags",
        {
            f"recommender_training.{ENVIRONMENT}.yaml": OVERLAY,
            "failing_pipeline.yaml": FAILING,
            "minutely_events.yaml": MINUTELY,
        },
    )
    analytics = root / "analytics.db"
    generate_user_events(analytics, n_users=600, n_items=300, n_events=30_000)
    api_port = free_port()
    base_url = f"http://127.0.0.1:{api_port}"
    smtp = SmtpSink()
    users = write_passwords(root / "passwords.json", {"admin": "admin"})
    pg = f"postgres@{PG_HOST}:{PG_PORT}/{database}"
    env = clean_environment(
        AIRFLOW_HOME=str(root / "airflow-home"),
        AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://{pg}",
        AIRFLOW__CELERY__BROKER_URL=f"redis://{PG_HOST}:{REDIS_PORT}/{redis_db}",
        AIRFLOW__CELERY__RESULT_BACKEND=f"db+postgresql://{pg}",
        AIRFLOW__CELERY__WORKER_CONCURRENCY="2",
        AIRFLOW__OPERATORS__DEFAULT_QUEUE=queue,  # no other worker on this broker takes our tasks
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(Path(__file__).resolve().parents[2] / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{base_url}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=users,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(root / "passwords.json"),
        AIRFLOW__API__BASE_URL=base_url,
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API__SECRET_KEY=uuid.uuid4().hex,
        AIRFLOW__API_AUTH__JWT_SECRET=uuid.uuid4().hex,
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__MLPIPE__ENVIRONMENT=ENVIRONMENT,
        AIRFLOW__MLPIPE__ARTIFACT_ROOT=f"file://{root / 'artifacts'}",
        AIRFLOW_CONN_ANALYTICS_DB=f"sqlite:///{analytics}",
        **smtp.connection_env(),
    )
    processes = AirflowProcesses(env, root / "logs")
    admin = _admin_connection()
    admin.cursor().execute(f'CREATE DATABASE "{database}"')
    smtp.controller.start()
    try:
        processes.run("db", "migrate", timeout=240)
        processes.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port))
        processes.start("scheduler", "scheduler")
        processes.start("dag-processor", "dag-processor")
        processes.start("celery-worker", "celery", "worker", "--concurrency", "2", "--queues", queue)

        def api_up() -> bool:
            processes.check_alive()
            return _get_ok(f"{base_url}/api/v2/version")

        wait_until(api_up, 120, "the api-server")
        api = AirflowApi(base_url, "admin", "admin-password")

        def dags_parsed() -> bool:
            processes.check_alive()
            ids = {dag["dag_id"] for dag in api.get("/api/v2/dags", limit=100)["dags"]}
            return {"recommender_training", "failing_pipeline", "minutely_events"} <= ids

        wait_until(dags_parsed, 120, "the dag-processor to parse the specs", interval=2)
        yield Cluster(api, processes, smtp, root, dags, root / "registry")
    finally:
        processes.stop()
        smtp.controller.stop()
        _drop_broker_keys(redis_db, queue)
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


def _get_ok(url: str) -> bool:
    import httpx

    return httpx.get(url, timeout=5).status_code == 200


def _drop_broker_keys(redis_db: int, queue: str) -> None:
    """Remove this module's Celery queue from the shared Redis (other keys are not ours to touch)."""
    try:
        import redis

        client = redis.Redis(host=PG_HOST, port=REDIS_PORT, db=redis_db)
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
    except Exception:  # cleanup only
        pass


def _explain(cluster: Cluster, dag_id: str, run_id: str) -> str:
    states = cluster.api.task_states(dag_id, run_id)
    logs = "\n".join(
        f"--- {task} ---\n{cluster.api.task_log(dag_id, run_id, task)[-2000:]}"
        for task, state in states.items()
        if state == "failed"
    )
    return (
        f"task states: {states}\n{logs}\n--- scheduler ---\n{cluster.processes.log_tail('scheduler', 2000)}"
    )


def test_rest_api_trigger_runs_recommender_training_to_success(cluster: Cluster):
    api = cluster.api
    api.set_paused("recommender_training", False)
    conf = {"overrides": {"register": {"registry": f"file://{cluster.registry}"}}}
    run_id = api.trigger("recommender_training", conf)

    run = api.wait_for_run("recommender_training", run_id, timeout=300)
    assert run["state"] == "success", _explain(cluster, "recommender_training", run_id)
    assert run["run_type"] == "manual" and run["triggered_by"] == "rest_api"

    # The execution record, read through the REST API (the XCom of task execution_record).
    record = api.xcom("recommender_training", run_id, "execution_record")
    assert record["pipeline"] == "recommender_training"
    assert record["pipeline_version"] == "3.2.1"
    assert record["environment"] == ENVIRONMENT
    assert record["execution_id"] == run_id
    assert record["git_commit"] == head_commit(cluster.dags)
    # The Task SDK tells tasks the run type and the user, not the trigger source: see below.
    assert record["triggered_by"] == "manual"
    assert record["triggered_by_user"] == "admin"
    assert record["stages_completed"] == STAGES
    assert record["stages_failed"] == [] and record["stages_skipped"] == []
    assert record["overrides"] == conf["overrides"]
    assert set(record["stage_durations"]) >= set(STAGES)
    assert "recall@10" in record["outputs"]["evaluate"]["metrics"]
    version_uri = record["outputs"]["register"]["artifacts"]["version"]
    assert version_uri.startswith(f"file://{cluster.registry}/recommender_training/versions/")
    assert (Path(version_uri.removeprefix("file://")) / "_COMPLETE").exists()

    # The plugin's API returns the same record with the run's trigger source from the database.
    entries = api.get("/mlpipe/api/pipelines/recommender_training/records")["records"]
    assert entries[0]["run_id"] == run_id
    assert entries[0]["trigger_source"] == "rest_api"
    assert entries[0]["triggered_by"] == "api"
    assert entries[0]["triggering_user_name"] == "admin"
    assert entries[0]["record"] == record

    # Each stage's task log shows the component's progress, read through the REST API.
    components = {
        "extract": "data.extract.database",
        "transform_features": "features.user_engagement",
        "train": "model.matrix_factorization",
        "evaluate": "evaluation.recommender",
        "register": "registry.register_model",
    }
    for stage, component in components.items():
        log = api.task_log("recommender_training", run_id, stage)
        assert f"Component: {component}" in log, log[-3000:]
        assert f"Stage '{stage}' finished in" in log, log[-3000:]
    assert "Metric recall@10 =" in api.task_log("recommender_training", run_id, "evaluate")
    assert "Execution record: completed=" in api.task_log("recommender_training", run_id, "execution_record")


def test_failing_pipeline_sends_one_failure_email(cluster: Cluster):
    api = cluster.api
    api.set_paused("failing_pipeline", False)
    run_id = api.trigger("failing_pipeline")

    run = api.wait_for_run("failing_pipeline", run_id, timeout=180)
    assert run["state"] == "failed"
    assert api.task_states("failing_pipeline", run_id) == {
        "extract": "failed",
        "features": "upstream_failed",
        "execution_record": "failed",
    }
    record = api.xcom("failing_pipeline", run_id, "execution_record")
    assert record["stages_failed"] == ["extract"] and record["stages_skipped"] == ["features"]
    assert "table_that_does_not_exist" in record["errors"]["extract"]

    wait_until(lambda: cluster.smtp.messages, 60, "the failure e-mail")
    time.sleep(2)  # one e-mail per failed run: nothing else may follow
    assert len(cluster.smtp.messages) == 1
    recipients, message = cluster.smtp.messages[0]
    assert sorted(recipients) == ["oncall@example.com", "owner@example.com"]
    assert "failing_pipeline" in message["Subject"] and run_id in message["Subject"]
    assert message["From"] == "mlpipe@example.com"
    body = html_body(message)
    assert "extract" in body and "table_that_does_not_exist" in body
    assert f"{api.base_url}/dags/failing_pipeline/runs/" in body


def test_unpaused_frequent_schedule_runs_with_triggered_by_schedule(cluster: Cluster):
    api = cluster.api
    api.set_paused("minutely_events", False)
    try:

        def scheduled_success() -> dict | None:
            runs = api.get("/api/v2/dags/minutely_events/dagRuns", run_type="scheduled", state="success")
            return runs["dag_runs"][0] if runs["dag_runs"] else None

        run = wait_until(scheduled_success, 180, "a scheduled run of minutely_events to succeed", interval=3)
    finally:
        api.set_paused("minutely_events", True)
    assert run["run_type"] == "scheduled" and run["triggered_by"] == "timetable"
    record = api.xcom("minutely_events", run["dag_run_id"], "execution_record")
    assert record["triggered_by"] == "schedule"
    assert record["triggered_by_user"] is None
    assert record["stages_completed"] == ["extract"]
    entries = api.get("/mlpipe/api/pipelines/minutely_events/records")["records"]
    assert any(
        e["run_id"] == run["dag_run_id"]
        and e["trigger_source"] == "timetable"
        and e["triggered_by"] == "schedule"
        for e in entries
    )
