"""The factory's Airflow side of schedules on data and approval gates: Asset schedules, the
pipeline's own Asset on the record task, and the approval task in front of a gated stage."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, AssetAll, AssetAny

from airflow_mlpipe.factory import INVALID_TAG, build_dags
from airflow_mlpipe.operators.approval import StageApprovalOperator
from airflow_mlpipe.record import RECORD_TASK_ID

SPEC = """\
name: {name}
version: 1.2.0
metadata:
  owner: team-a
  schedule: {schedule}
stages:
  - name: first
    component: mlpipe_test_steps.steps
    config: {{value: 1}}
  - name: second
    component: mlpipe_test_steps.steps
    dependencies: [first]
{approval}  - name: third
    component: mlpipe_test_steps.steps
    dependencies: [second]
"""


def spec(name: str, schedule: str = "null", approval: str = "") -> str:
    line = f"    approval: {approval}\n" if approval else ""
    return SPEC.format(name=name, schedule=schedule, approval=line)


def test_after_and_assets_compile_to_an_asset_schedule_waiting_for_all(write_spec, allow_test_components):
    write_spec("features", spec("features"))
    folder = write_spec("train", spec("train", '{after: [features], assets: ["s3://bucket/events"]}'))

    dag = build_dags(folder)["train"]

    assert dag.schedule == AssetAll(Asset("x-mlpipe://pipelines/features"), Asset("s3://bucket/events"))


def test_any_true_compiles_to_any_of_the_assets(write_spec, allow_test_components):
    folder = write_spec("train", spec("train", '{assets: ["s3://bucket/a", "s3://bucket/b"], any: true}'))

    dag = build_dags(folder)["train"]

    assert dag.schedule == AssetAny(Asset("s3://bucket/a"), Asset("s3://bucket/b"))


def test_a_cron_schedule_is_unchanged(write_spec, allow_test_components):
    folder = write_spec("train", spec("train", '"0 3 * * *"'))

    assert build_dags(folder)["train"].schedule == "0 3 * * *"


def test_the_record_task_updates_the_pipelines_own_asset(write_spec, allow_test_components):
    folder = write_spec("features", spec("features"))

    record = build_dags(folder)["features"].get_task(RECORD_TASK_ID)

    assert record.outlets == [Asset("x-mlpipe://pipelines/features")]


def test_an_asset_airflow_refuses_makes_a_placeholder_and_hides_no_other_pipeline(
    write_spec, allow_test_components
):
    write_spec("features", spec("features"))
    folder = write_spec("train", spec("train", '{assets: ["s3://"]}'))

    dags = build_dags(folder)

    assert INVALID_TAG not in dags["features"].tags
    assert INVALID_TAG in dags["train"].tags
    assert "Airflow refuses the asset 's3://'" in dags["train"].doc_md
    assert "must contain a bucket name" in dags["train"].doc_md


def test_after_an_unknown_pipeline_makes_a_placeholder(write_spec, allow_test_components):
    folder = write_spec("train", spec("train", "{after: [featurs]}"))

    dag = build_dags(folder)["train"]

    assert INVALID_TAG in dag.tags
    assert "runs after unknown pipeline 'featurs'" in dag.doc_md


def test_a_gated_stage_waits_for_its_approval_task_which_waits_for_its_dependencies(
    write_spec, allow_test_components
):
    folder = write_spec("train", spec("train", approval="{required: true, timeout: 3d}"))

    dag = build_dags(folder)["train"]

    gate = dag.get_task("second.approval")
    assert isinstance(gate, StageApprovalOperator)
    assert gate.upstream_task_ids == {"first"} and gate.downstream_task_ids == {"second"}
    assert dag.get_task("second").upstream_task_ids == {"second.approval"}
    assert dag.get_task("third").upstream_task_ids == {"second"}
    assert RECORD_TASK_ID not in gate.downstream_task_ids  # the record reads its decision by XCom
    assert gate.options == ["Approve", "Reject"]
    assert gate.response_timeout == timedelta(days=3)
    assert gate.defaults == ["Reject"]  # what a timeout answers
    assert gate.retries == 0
    assert "'second'" in gate.subject and "train 1.2.0" in gate.subject


def test_a_gate_without_timeout_waits_as_long_as_it_takes(write_spec, allow_test_components):
    folder = write_spec("train", spec("train", approval="{}"))

    gate = build_dags(folder)["train"].get_task("second.approval")

    assert gate.response_timeout is None and gate.defaults is None


def test_required_false_builds_no_gate(write_spec, allow_test_components):
    folder = write_spec("train", spec("train", approval="{required: false}"))

    dag = build_dags(folder)["train"]

    assert "second.approval" not in dag.task_ids
    assert dag.get_task("second").upstream_task_ids == {"first"}
