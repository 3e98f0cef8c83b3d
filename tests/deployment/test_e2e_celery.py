"""End to end on real Airflow processes: the docker-compose topology, without containers.

PostgreSQL is the metadata database (a fresh database per run of this module), Redis the Celery
broker; ``airflow api-server``, ``scheduler``, ``dag-processor`` and two Celery workers run as
processes of this Python environment over a copy of this repo's ``dags/`` with the specs of
``e2e_specs.py`` added (``e2e_cluster`` in ``conftest.py``, one deployment per session). No shared
disk: two workers with their own temporary folders (``train`` on the ``gpu`` queue), artifacts and
registry on S3. Everything goes through the REST API as a client would: trigger, watch, read the
execution record and the task logs. Failure e-mails reach a real SMTP server on loopback.

Skipped (with the reason) where PostgreSQL or Redis is not running; under ``CI=true`` they must be.
Bounded: every wait has a timeout, and the fixture stops every process group it started.
"""

from __future__ import annotations

import email
import email.policy
import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from airflow_processes import AirflowApi, CeleryCluster, E2eStorage, head_commit, wait_until
from e2e_specs import ENVIRONMENT, GPU_QUEUE, S3_CONN_ID, STAGES, TRIGGERER, WORKERS

from airflow_mlpipe.testing.smtp import html_body, text_body

pytestmark = pytest.mark.postgres


@pytest.fixture
def cluster(e2e_cluster: CeleryCluster) -> CeleryCluster:
    """The session's Celery deployment (``conftest.py``), shared with ``test_assets_approval.py``."""
    return e2e_cluster


@pytest.fixture
def storage(e2e_storage: E2eStorage) -> E2eStorage:
    """The deployment's S3 buckets: its artifact root and its model registry."""
    return e2e_storage


def test_rest_api_trigger_runs_recommender_training_to_success(cluster: CeleryCluster, storage: E2eStorage):
    api = cluster.api
    api.set_paused("recommender_training", False)
    conf = {"overrides": {"train": {"epochs": 12}}}
    run_id = api.trigger("recommender_training", conf)

    run = api.wait_for_run("recommender_training", run_id, timeout=300)
    assert run["state"] == "success", cluster.explain("recommender_training", run_id)
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
    version = str(record["outputs"]["register"]["metrics"]["version"]).removesuffix(".0")
    assert version_uri.endswith(f"{storage.registry}/models/recommender_training/versions/{version}")
    assert version in storage.versions()

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


def test_train_runs_on_the_gpu_worker_and_no_stage_reads_another_workers_disk(
    cluster: CeleryCluster, storage: E2eStorage
):
    api = cluster.api
    api.set_paused("recommender_training", False)
    run_id = latest_successful_run(api, "recommender_training", missing_ok=True)
    if run_id is None:  # run on its own
        run_id = api.trigger("recommender_training", {"overrides": {"train": {"epochs": 12}}})
        run = api.wait_for_run("recommender_training", run_id, timeout=300)
        assert run["state"] == "success", cluster.explain("recommender_training", run_id)

    path = f"/api/v2/dags/recommender_training/dagRuns/{quote(run_id, safe='')}/taskInstances"
    instances = {ti["task_id"]: ti for ti in api.get(path)["task_instances"]}
    # train went to the gpu queue, which only gpu-worker consumes; the rest stayed on the default.
    assert (instances["train"]["queue"], instances["train"]["hostname"]) == (GPU_QUEUE, "gpu-worker")
    for task_id in [*STAGES, "execution_record"]:
        if task_id != "train":
            assert (instances[task_id]["queue"], instances[task_id]["hostname"]) == (
                cluster.queue,
                "celery-worker",
            ), task_id

    # What one stage hands the next is on S3: no local path of either worker anywhere.
    record = api.xcom("recommender_training", run_id, "execution_record")
    for stage, outputs in record["outputs"].items():
        for uri in outputs["artifacts"].values():
            on_s3 = (f"s3://{S3_CONN_ID}@{storage.artifacts}/runs/", f"s3://{S3_CONN_ID}@{storage.registry}/")
            assert uri.startswith(on_s3), (stage, uri)
    handed_over = json.dumps([record, *(api.xcom("recommender_training", run_id, s) for s in STAGES)])
    assert "file://" not in handed_over
    for worker in WORKERS:
        assert str(cluster.worker_disk(worker)) not in handed_over
    assert str(cluster.root) not in handed_over
    # train read the features extract and transform_features wrote on the other worker.
    train_log = api.task_log("recommender_training", run_id, "train")
    assert f"Artifact dir: s3://{S3_CONN_ID}@{storage.artifacts}/runs/recommender_training/" in train_log
    features = record["outputs"]["transform_features"]["artifacts"]["features"]
    key = features.split(f"@{storage.artifacts}/", 1)[1]
    stored = storage.keys(storage.artifacts, "runs/recommender_training/")
    assert any(k == key or k.startswith(f"{key}/") for k in stored), (key, stored[:5])


def test_an_unchanged_rerun_takes_every_cacheable_stage_from_the_cache(cluster: CeleryCluster):
    # Runs after the first recommender_training run above, on the same artifact root.
    api = cluster.api
    conf = {"overrides": {"train": {"epochs": 12}}}
    first = api.xcom(
        "recommender_training", latest_successful_run(api, "recommender_training"), "execution_record"
    )

    run_id = api.trigger("recommender_training", conf)

    run = api.wait_for_run("recommender_training", run_id, timeout=300)
    assert run["state"] == "success", cluster.explain("recommender_training", run_id)
    record = api.xcom("recommender_training", run_id, "execution_record")
    # extract (external data) and register (a side effect) run again; the rest is cached.
    assert record["stages_cached"] == ["transform_features", "train", "evaluate"]
    assert record["cached_from"] == dict.fromkeys(record["stages_cached"], first["execution_id"])
    assert record["outputs"]["extract"]["digests"] == first["outputs"]["extract"]["digests"]
    assert record["outputs"]["train"] == first["outputs"]["train"]
    assert record["fingerprints"] == first["fingerprints"]
    assert (
        record["outputs"]["register"]["metrics"]["version"]
        == first["outputs"]["register"]["metrics"]["version"] + 1
    )
    # The components of the cached stages did not run: their task logs say so, and hold none of
    # the component's own progress lines.
    train_log = api.task_log("recommender_training", run_id, "train")
    assert (
        f"cache hit: fingerprint {record['fingerprints']['train']} from run {first['execution_id']}"
        in train_log
    )
    assert "to train on" not in train_log and "validation recall" not in train_log
    assert "to train on" in api.task_log("recommender_training", first["execution_id"], "train")

    # {"cache": false} recomputes everything.
    uncached = api.trigger("recommender_training", {**conf, "cache": False})
    assert api.wait_for_run("recommender_training", uncached, timeout=300)["state"] == "success"
    assert api.xcom("recommender_training", uncached, "execution_record")["stages_cached"] == []


def latest_successful_run(api, dag_id: str, missing_ok: bool = False) -> Any:
    runs = api.get(f"/api/v2/dags/{dag_id}/dagRuns", order_by="-run_after", state="success")["dag_runs"]
    if not runs and missing_ok:
        return None
    return runs[0]["dag_run_id"]


def test_a_user_who_may_only_trigger_cannot_change_what_the_spec_author_fixed(
    cluster: CeleryCluster, storage: E2eStorage
):
    triggerer = AirflowApi(cluster.api.base_url, TRIGGERER, f"{TRIGGERER}-password")
    versions = storage.versions()
    # What the security review did: another database and query, and a model past its gate.
    conf = {
        "overrides": {
            "extract": {"conn_id": "hr_db", "query": "SELECT * FROM salaries"},
            "register": {"promote_if": "always"},
        }
    }

    run_id = triggerer.trigger("recommender_training", conf)

    run = triggerer.wait_for_run("recommender_training", run_id, timeout=300)
    assert run["state"] == "failed"
    assert run["triggering_user_name"] == TRIGGERER
    states = cluster.api.task_states("recommender_training", run_id)
    assert states["extract"] == "failed"
    assert {states[stage] for stage in STAGES[1:]} == {"upstream_failed"}
    record = cluster.api.xcom("recommender_training", run_id, "execution_record")
    error = record["errors"]["extract"]
    for field in ("extract.conn_id", "extract.query", "register.promote_if"):
        assert field in error, error
    assert "overridable: [...]" in error
    assert "Component: data.extract.database" in cluster.api.task_log(
        "recommender_training", run_id, "extract"
    )
    assert "Extracting from connection" not in cluster.api.task_log("recommender_training", run_id, "extract")
    assert storage.versions() == versions

    # The same user may change what the spec lets a trigger change.
    allowed = triggerer.trigger("recommender_training", {"overrides": {"train": {"epochs": 3}}})
    assert triggerer.wait_for_run("recommender_training", allowed, timeout=300)["state"] == "success"


def test_failing_pipeline_sends_one_failure_email(cluster: CeleryCluster):
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

    def about_this_pipeline() -> list[int]:
        # Other tests of the module fail runs of other pipelines, which e-mail their own owners.
        return [
            i for i, (_, sent) in enumerate(cluster.smtp.messages) if "failing_pipeline" in sent["Subject"]
        ]

    wait_until(about_this_pipeline, 60, "the failure e-mail")
    # One e-mail per failed run: nothing else may follow, from a worker or from the dag-processor,
    # which runs DAG callbacks when it next processes the file and re-parses it every
    # min_file_process_interval. So listen until it has parsed the specs again, finishing at least
    # one refresh_interval after the run ended; a fixed short sleep would end before either.
    refresh = dag_processor_seconds(cluster, "refresh_interval")
    reparse = dag_processor_seconds(cluster, "min_file_process_interval")
    quiet_until = utc(run["end_date"]) + timedelta(seconds=refresh)

    def parsed_after_quiet_period() -> bool:
        parsed = api.get("/api/v2/dags/failing_pipeline")["last_parsed_time"]
        return parsed is not None and utc(parsed) > quiet_until

    wait_until(parsed_after_quiet_period, refresh + reparse + 60, "the dag-processor to parse again")
    [index] = about_this_pipeline()  # exactly one
    recipients, received = cluster.smtp.messages[index]
    assert sorted(recipients) == ["oncall@example.com", "owner@example.com"]
    message = email.message_from_bytes(cluster.smtp.raw[index], policy=email.policy.default)
    assert "failing_pipeline" in message["Subject"] and run_id in message["Subject"]
    assert message["From"] == "mlpipe@example.com"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    for body in (text_body(received), html_body(received)):
        assert "extract" in body and "table_that_does_not_exist" in body
        assert f"{api.base_url}/dags/failing_pipeline/runs/" in body


def dag_processor_seconds(cluster: CeleryCluster, option: str) -> float:
    """A ``[dag_processor]`` interval as the cluster's processes read it (their environment)."""
    return float(cluster.processes.run("config", "get-value", "dag_processor", option).stdout.strip())


def utc(timestamp: str) -> datetime:
    # The REST API writes UTC as 'Z', which datetime.fromisoformat reads only from Python 3.11.
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def test_unpaused_frequent_schedule_runs_with_triggered_by_schedule(cluster: CeleryCluster):
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
