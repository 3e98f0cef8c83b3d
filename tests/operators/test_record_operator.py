"""ExecutionRecordOperator: one XCom per record, typed fields, masked errors, failing on failure."""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_mlpipe.operators.record import ExecutionRecordOperator
from airflow_mlpipe.pipeline_run import ERROR_XCOM_KEY, PipelineRef
from airflow_mlpipe.record import ExecutionRecord

from .conftest import DagRunStub, TaskInstanceStub


class CountingTaskInstance(TaskInstanceStub):
    pushes: int = 0

    def xcom_push(self, key: str, value: object) -> None:
        self.pushes += 1
        super().xcom_push(key, value)


def record_task() -> ExecutionRecordOperator:
    ref = PipelineRef(
        name="ops",
        version="2.1.0",
        config_version="cfg123",
        environment="test",
        sources=(),
        overridable=MappingProxyType({"make": frozenset(), "use": frozenset()}),
    )
    with DAG("ops", schedule=None):
        return ExecutionRecordOperator(task_id="execution_record", pipeline=ref)


def context_for(ti: TaskInstanceStub, conf: dict | None = None) -> dict:
    ti.task_id = "execution_record"
    return {"ti": ti, "dag_run": DagRunStub(conf=conf or {}), "run_id": ti.run_id}


def test_a_successful_run_returns_the_record_once_with_typed_fields() -> None:
    ti = CountingTaskInstance("ops", "run1", states={"make": "success", "use": "success"})
    ti.xcoms[("make", "return_value")] = {
        "artifacts": {"table": "file:///t"},
        "metrics": {"rows": 3},
        "digests": {"table": "sha256:ab"},
        "fingerprint": "f1",
        "config": {"rows": 3, "password": "***"},
    }
    ti.xcoms[("use", "return_value")] = {"fingerprint": "f2", "cached_from": "run0", "config": {}}

    value = record_task().execute(context_for(ti, {"overrides": {"make": {}}}))

    # Airflow pushes the return value; an explicit push as well would store the record twice.
    assert ti.pushes == 0
    record = ExecutionRecord.model_validate(value)
    assert isinstance(record.timestamp, datetime) and record.timestamp.utcoffset() is not None
    assert record.triggered_by == "manual" and record.triggered_by_user == "alice"
    assert record.stages_completed == ["make", "use"]
    assert record.outputs["make"]["artifacts"]["table"] == "file:///t"
    assert record.outputs["use"].artifacts == {}
    assert record.stage_durations == {"make": 1.5, "use": 1.5}
    assert value["outputs"]["make"] == {
        "artifacts": {"table": "file:///t"},
        "metrics": {"rows": 3.0},
        "digests": {"table": "sha256:ab"},
    }
    assert record.fingerprints == {"make": "f1", "use": "f2"}
    assert record.stages_cached == ["use"] and record.cached_from == {"use": "run0"}
    assert record.configs == {"make": {"rows": 3, "password": "***"}, "use": {}}


def test_a_failed_run_pushes_the_record_once_then_fails_with_masked_errors() -> None:
    from airflow.sdk.log import mask_secret

    secret = "pa55-in-record-W7"
    mask_secret(secret)
    ti = CountingTaskInstance("ops", "run1", states={"make": "failed", "use": "upstream_failed"})
    ti.xcoms[("make", ERROR_XCOM_KEY)] = f"RuntimeError: login failed with {secret}"

    with pytest.raises(AirflowFailException, match="did not complete"):
        record_task().execute(context_for(ti))

    assert ti.pushes == 1
    pushed = ti.xcoms[("execution_record", "return_value")]
    assert pushed["stages_failed"] == ["make"] and pushed["stages_skipped"] == ["use"]
    assert pushed["errors"]["make"].startswith("RuntimeError: login failed with")
    assert secret not in pushed["errors"]["make"]


def finished_run(run_id: str, recall: float, model_digest: str) -> CountingTaskInstance:
    ti = CountingTaskInstance("ops", run_id, states={"make": "success", "use": "success"})
    ti.xcoms[("make", "return_value")] = {
        "artifacts": {"model": f"file:///{run_id}/m"},
        "metrics": {"recall@10": recall},
        "digests": {"model": model_digest},
        "config": {"rows": 3},
    }
    return ti


def test_a_replay_that_reproduces_the_original_says_it_matches() -> None:
    original = record_task().execute(context_for(finished_run("run1", 0.25, "sha256:aa")))
    replay = finished_run("replay1", 0.25, "sha256:aa")
    replay.other_runs["run1"] = {("execution_record", "return_value"): original}

    value = record_task().execute(context_for(replay, {"replay_of": "run1", "cache": False}))

    assert value["replay_of"] == "run1"
    assert value["replay_matches"] is True and value["replay_differences"] == {}


def test_a_replay_that_differs_names_the_metrics_and_digests() -> None:
    original = record_task().execute(context_for(finished_run("run1", 0.25, "sha256:aa")))
    replay = finished_run("replay1", 0.24, "sha256:bb")
    replay.other_runs["run1"] = {("execution_record", "return_value"): original}

    value = record_task().execute(context_for(replay, {"replay_of": "run1"}))

    assert value["replay_matches"] is False
    differences = value["replay_differences"]["make"]
    assert [metric["name"] for metric in differences["metrics"]] == ["recall@10"]
    assert differences["artifacts"] == [{"name": "model", "a": "sha256:aa", "b": "sha256:bb", "same": False}]
