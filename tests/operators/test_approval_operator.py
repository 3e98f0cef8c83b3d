"""The approval task's request and decision, and what the record makes of decisions and asset events.

Real operators in real DAGs, called with the small task context of ``conftest.py``; the human
answer comes in as the event Airflow resumes the task with.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, DownstreamTasksSkipped

from airflow_mlpipe.approvals import DECISION_XCOM_KEY, request_body
from airflow_mlpipe.operators.approval import StageApprovalOperator
from airflow_mlpipe.operators.record import ExecutionRecordOperator
from airflow_mlpipe.pipeline_run import PipelineRef

from .conftest import DagRunStub, TaskInstanceStub

STAGES = ("evaluate", "register", "notify")
REF = PipelineRef(
    name="ops",
    version="2.1.0",
    config_version="cfg123",
    environment="test",
    sources=(),
    overridable=MappingProxyType(dict.fromkeys(STAGES, frozenset())),
)
ANSWERED = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)


def gated_dag() -> tuple[StageApprovalOperator, ExecutionRecordOperator]:
    """evaluate -> register.approval -> register -> notify, and the record after every stage."""
    from airflow.providers.standard.operators.empty import EmptyOperator

    with DAG("ops", schedule=None):
        tasks = {stage: EmptyOperator(task_id=stage) for stage in STAGES}
        gate = StageApprovalOperator(
            task_id="register.approval",
            stage="register",
            component="registry.register_model",
            pipeline=REF,
            upstream_stages=["evaluate"],
            response_timeout=timedelta(days=3),
        )
        record = ExecutionRecordOperator(task_id="execution_record", pipeline=REF)
        tasks["evaluate"] >> gate >> tasks["register"] >> tasks["notify"]
        for task in tasks.values():
            task >> record
    return gate, record


def event(option: str, user: str | None = "maria", timedout: bool = False) -> dict:
    return {
        "chosen_options": [option],
        "params_input": {},
        "responded_at": ANSWERED,
        "responded_by_user": {"id": user, "name": user} if user else None,
        "timedout": timedout,
    }


def test_approve_pushes_who_approved_and_when_and_lets_the_stage_run() -> None:
    gate, _ = gated_dag()
    ti = TaskInstanceStub("ops", "run1", task_id="register.approval")

    result = gate.execute_complete({"ti": ti, "task": gate}, event("Approve"))

    assert result["chosen_options"] == ["Approve"]
    assert ti.xcoms[("register.approval", DECISION_XCOM_KEY)] == {
        "approved": True,
        "by": "maria",
        "at": "2026-12-01T09:30:00Z",
        "timed_out": False,
    }


def test_reject_pushes_the_decision_then_skips_the_gated_stage() -> None:
    gate, _ = gated_dag()
    ti = TaskInstanceStub("ops", "run1", task_id="register.approval")
    ti.map_index = -1  # type: ignore[attr-defined]

    with pytest.raises(DownstreamTasksSkipped) as skipped:
        gate.execute_complete({"ti": ti, "task": gate}, event("Reject"))

    assert skipped.value.tasks == ["register"]  # the rest follows by the trigger rules
    decision = ti.xcoms[("register.approval", DECISION_XCOM_KEY)]
    assert decision["approved"] is False and decision["by"] == "maria"


def test_a_timeout_answers_with_the_default_reject_and_nobody() -> None:
    gate, _ = gated_dag()
    ti = TaskInstanceStub("ops", "run1", task_id="register.approval")
    ti.map_index = -1  # type: ignore[attr-defined]

    with pytest.raises(DownstreamTasksSkipped):
        gate.execute_complete({"ti": ti, "task": gate}, event("Reject", user=None, timedout=True))

    decision = ti.xcoms[("register.approval", DECISION_XCOM_KEY)]
    assert decision == {"approved": False, "by": None, "at": "2026-12-01T09:30:00Z", "timed_out": True}


def test_the_request_shows_the_run_and_upstream_metrics_against_their_thresholds() -> None:
    evaluate = {
        "metrics": {
            "recall@10": 0.3454,
            "threshold.recall@10": 0.15,
            "passed.recall@10": 1.0,
            "ndcg@10": 0.1011,
            "threshold.ndcg@10": 0.12,
            "passed.ndcg@10": 0.0,
            "coverage": 0.642,
        },
        "config": {"thresholds": {"recall@10": 0.15, "ndcg@10": 0.12}},
    }
    custom = {"metrics": {"auc": 0.71}, "config": {"thresholds": {"auc": 0.75}}}

    body = request_body(
        pipeline="ops",
        version="2.1.0",
        config_version="cfg123",
        environment="test",
        run_id="manual__2026-12-01",
        stage="register",
        component="registry.register_model",
        upstream={"evaluate": evaluate, "score": custom},
        timeout="3d",
    )

    for shown in ("`ops`", "`2.1.0`", "`cfg123`", "`test`", "`manual__2026-12-01`", "**register**"):
        assert shown in body
    assert "| evaluate | recall@10 | 0.3454 | 0.15 | PASS |" in body
    assert "| evaluate | ndcg@10 | 0.1011 | 0.12 | **FAIL** |" in body
    assert "| evaluate | coverage | 0.642 | - | - |" in body
    assert "| score | auc | 0.71 | 0.75 | **FAIL** |" in body  # a threshold from the config only
    assert "threshold.recall@10" not in body and "passed.ndcg@10" not in body
    assert "No answer within 3d rejects." in body


def record_context(states: dict[str, str], decision: dict | None) -> tuple[TaskInstanceStub, dict]:
    ti = TaskInstanceStub("ops", "run1", states=states, task_id="execution_record")
    for stage, state in states.items():
        if state == "success":
            ti.xcoms[(stage, "return_value")] = {"metrics": {"rows": 1}}
    if decision is not None:
        ti.xcoms[("register.approval", DECISION_XCOM_KEY)] = decision
    return ti, {"ti": ti, "dag_run": DagRunStub(conf={}), "run_id": "run1"}


REJECTED = {"approved": False, "by": "maria", "at": "2026-12-01T09:30:00Z", "timed_out": False}


def test_a_declined_run_writes_its_record_and_ends_skipped_not_failed() -> None:
    _, record_task = gated_dag()
    ti, context = record_context(
        {"evaluate": "success", "register.approval": "success", "register": "skipped", "notify": "skipped"},
        REJECTED,
    )

    with pytest.raises(AirflowSkipException, match="approval declined"):
        record_task.execute(context)

    record = ti.xcoms[("execution_record", "return_value")]
    assert record["stages_completed"] == ["evaluate"]
    assert record["stages_skipped"] == ["register", "notify"]
    assert record["approvals"] == {"register": REJECTED}


def test_an_approved_run_records_the_approval() -> None:
    _, record_task = gated_dag()
    approved = {**REJECTED, "approved": True}
    _, context = record_context(dict.fromkeys([*STAGES, "register.approval"], "success"), approved)

    value = record_task.execute(context)

    assert value["approvals"] == {"register": approved}


def test_a_failed_stage_still_fails_the_record_whatever_the_approvals() -> None:
    _, record_task = gated_dag()
    _, context = record_context(
        {"evaluate": "failed", "register.approval": "upstream_failed", "register": "upstream_failed"},
        None,
    )

    with pytest.raises(AirflowFailException):
        record_task.execute(context)


def test_the_record_names_the_asset_events_that_started_the_run() -> None:
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    def asset_event(uri: str, dag_id: str | None, minute: int) -> AssetEventDagRunReferenceResult:
        return AssetEventDagRunReferenceResult(
            asset={"name": uri, "uri": uri, "extra": {}},
            extra={},
            source_task_id="execution_record" if dag_id else None,
            source_dag_id=dag_id,
            source_run_id=f"manual__{minute}" if dag_id else None,
            source_map_index=-1 if dag_id else None,
            source_aliases=[],
            timestamp=datetime(2026, 12, 1, 3, minute, tzinfo=timezone.utc),
        )

    events = TriggeringAssetEventsAccessor.build(
        [asset_event("s3://bucket/x", None, 5), asset_event("x-mlpipe://pipelines/features", "features", 1)]
    )
    _, record_task = gated_dag()
    _, context = record_context(dict.fromkeys([*STAGES, "register.approval"], "success"), None)
    context["triggering_asset_events"] = events
    context["dag_run"] = DagRunStub(conf={}, run_type="asset_triggered", triggering_user_name=None)

    value = record_task.execute(context)

    assert value["triggered_by"] == "asset"
    assert value["triggering_asset_events"] == [
        {
            "uri": "x-mlpipe://pipelines/features",
            "name": "x-mlpipe://pipelines/features",
            "source_dag_id": "features",
            "source_run_id": "manual__1",
            "source_task_id": "execution_record",
            "timestamp": "2026-12-01T03:01:00Z",
        },
        {
            "uri": "s3://bucket/x",
            "name": "s3://bucket/x",
            "source_dag_id": None,
            "source_run_id": None,
            "source_task_id": None,
            "timestamp": "2026-12-01T03:05:00Z",
        },
    ]
