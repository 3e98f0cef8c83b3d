"""Pipelines triggered by data and approval gates, on real Airflow processes.

The session's Celery deployment (``e2e_cluster``: api-server, scheduler, dag-processor, Celery
worker on PostgreSQL and Redis) with the specs of ``e2e_specs.py``. Asset-triggered runs are
created by the real scheduler from real asset events: those a pipeline's ``execution_record``
task emits, and those a client posts through the REST API. Approvals are answered through the
REST API's ``hitlDetails``, as the UI's Required Actions page does.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest
from airflow_processes import AirflowApi, CeleryCluster, wait_until
from e2e_specs import ALL_ASSETS, ANY_ASSETS

pytestmark = pytest.mark.postgres


@pytest.fixture
def cluster(e2e_cluster: CeleryCluster) -> CeleryCluster:
    return e2e_cluster


def asset_runs(api: AirflowApi, dag_id: str) -> list[dict[str, Any]]:
    return api.get(f"/api/v2/dags/{dag_id}/dagRuns", run_type="asset_triggered", order_by="run_after")[
        "dag_runs"
    ]


def asset_id(api: AirflowApi, uri: str) -> int:
    assets = api.get("/api/v2/assets", uri_pattern=uri)["assets"]
    return next(asset["id"] for asset in assets if asset["uri"] == uri)


def asset_events(api: AirflowApi, uri: str) -> list[dict[str, Any]]:
    return api.get("/api/v2/assets/events", asset_id=asset_id(api, uri), limit=100)["asset_events"]


def post_asset_event(api: AirflowApi, uri: str) -> None:
    api.post("/api/v2/assets/events", {"asset_id": asset_id(api, uri)})


def wait_for_asset_run(cluster: CeleryCluster, dag_id: str, count: int) -> dict[str, Any]:
    """The ``count``-th asset-triggered run of ``dag_id``, once it has finished."""

    def finished() -> dict[str, Any] | None:
        runs = asset_runs(cluster.api, dag_id)
        if len(runs) >= count and runs[count - 1]["state"] in ("success", "failed"):
            return runs[count - 1]
        return None

    return wait_until(finished, 180, f"asset-triggered run {count} of {dag_id}", interval=2)


# --- pipelines triggered by data -----------------------------------------------------------------


def test_a_successful_run_starts_the_pipeline_scheduled_after_it_and_a_failed_one_does_not(
    cluster: CeleryCluster,
):
    api = cluster.api
    for dag_id in ("asset_source", "after_source"):
        api.set_paused(dag_id, False)
    source_run = api.trigger("asset_source")
    assert api.wait_for_run("asset_source", source_run, 180)["state"] == "success", cluster.explain(
        "asset_source", source_run
    )

    run = wait_for_asset_run(cluster, "after_source", 1)

    assert run["state"] == "success", cluster.explain("after_source", run["dag_run_id"])
    assert run["triggered_by"] == "asset"
    record = api.xcom("after_source", run["dag_run_id"], "execution_record")
    assert record["triggered_by"] == "asset"
    [event] = record["triggering_asset_events"]
    assert event["uri"] == event["name"] == "x-mlpipe://pipelines/asset_source"
    assert event["source_dag_id"] == "asset_source"
    assert event["source_run_id"] == source_run
    assert event["source_task_id"] == "execution_record"
    assert record["stages_completed"] == ["extract"]

    # A failed run of the source updates nothing, so nothing runs after it.
    failed_run = api.trigger("asset_source", {"overrides": {"extract": {"batch_size": "lots"}}})
    assert api.wait_for_run("asset_source", failed_run, 180)["state"] == "failed"
    source_events = asset_events(api, "x-mlpipe://pipelines/asset_source")
    assert [event["source_run_id"] for event in source_events] == [source_run]
    time.sleep(10)  # the scheduler would have created a run by now (it did within seconds above)
    assert len(asset_runs(api, "after_source")) == 1


def test_an_asset_posted_through_the_rest_api_starts_the_pipeline_waiting_for_any_of_its_assets(
    cluster: CeleryCluster,
):
    api = cluster.api
    api.set_paused("on_any_asset", False)

    post_asset_event(api, ANY_ASSETS[1])

    run = wait_for_asset_run(cluster, "on_any_asset", 1)
    assert run["state"] == "success", cluster.explain("on_any_asset", run["dag_run_id"])
    record = api.xcom("on_any_asset", run["dag_run_id"], "execution_record")
    assert record["triggered_by"] == "asset"
    [event] = record["triggering_asset_events"]
    assert event["uri"] == ANY_ASSETS[1]
    assert event["source_dag_id"] is None and event["source_run_id"] is None


def test_a_pipeline_waiting_for_all_its_assets_runs_only_once_each_was_updated(cluster: CeleryCluster):
    api = cluster.api
    api.set_paused("on_all_assets", False)

    post_asset_event(api, ALL_ASSETS[0])
    time.sleep(10)
    assert asset_runs(api, "on_all_assets") == []
    post_asset_event(api, ALL_ASSETS[1])

    run = wait_for_asset_run(cluster, "on_all_assets", 1)
    assert run["state"] == "success", cluster.explain("on_all_assets", run["dag_run_id"])
    record = api.xcom("on_all_assets", run["dag_run_id"], "execution_record")
    assert sorted(event["uri"] for event in record["triggering_asset_events"]) == sorted(ALL_ASSETS)


# --- approval gates ------------------------------------------------------------------------------


def hitl_path(dag_id: str, run_id: str, task_id: str) -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/-1/hitlDetails"


def wait_for_approval_request(cluster: CeleryCluster, dag_id: str, run_id: str) -> dict[str, Any]:
    api = cluster.api

    def waiting() -> dict[str, Any] | None:
        if api.task_states(dag_id, run_id).get("publish.approval") != "awaiting_input":
            return None
        return api.get(hitl_path(dag_id, run_id, "publish.approval"))

    return wait_until(waiting, 180, f"the approval request of {dag_id}", interval=2)


def answer(api: AirflowApi, dag_id: str, run_id: str, option: str) -> None:
    response = api.client.patch(
        hitl_path(dag_id, run_id, "publish.approval"), json={"chosen_options": [option], "params_input": {}}
    )
    assert response.status_code == 200, response.text


def test_a_gated_stage_waits_for_a_person_and_runs_once_approved_through_the_rest_api(
    cluster: CeleryCluster,
):
    api = cluster.api
    api.set_paused("gated", False)
    run_id = api.trigger("gated")

    request = wait_for_approval_request(cluster, "gated", run_id)

    # The run waits: the stage has not run, and neither has anything after it.
    states = api.task_states("gated", run_id)
    assert states["extract"] == "success"
    assert states["publish"] is None and states["announce"] is None
    assert api.dag_run("gated", run_id)["state"] == "running"
    assert request["options"] == ["Approve", "Reject"]
    assert "publish" in request["subject"] and "gated" in request["subject"]
    body = request["body"]
    for shown in ("gated", "1.0.0", run_id, "| extract | rows | 50 |", "| extract | batches |"):
        assert shown in body, body

    answer(api, "gated", run_id, "Approve")

    run = api.wait_for_run("gated", run_id, 180)
    assert run["state"] == "success", cluster.explain("gated", run_id)
    assert api.task_states("gated", run_id)["announce"] == "success"
    record = api.xcom("gated", run_id, "execution_record")
    assert record["stages_completed"] == ["extract", "publish", "announce"]
    decision = record["approvals"]["publish"]
    assert decision["approved"] is True and decision["by"] == "admin" and decision["timed_out"] is False
    assert decision["at"] is not None
    assert [e["source_run_id"] for e in asset_events(api, "x-mlpipe://pipelines/gated")] == [run_id]


def test_a_rejected_stage_and_what_follows_are_skipped_and_the_record_says_who_rejected(
    cluster: CeleryCluster,
):
    api = cluster.api
    api.set_paused("gated", False)
    run_id = api.trigger("gated")
    wait_for_approval_request(cluster, "gated", run_id)

    answer(api, "gated", run_id, "Reject")

    run = api.wait_for_run("gated", run_id, 180)
    # A decision is not a failure: the run succeeds, without the stages the person declined.
    assert run["state"] == "success", cluster.explain("gated", run_id)
    states = api.task_states("gated", run_id)
    assert states["publish.approval"] == "success"
    assert states["publish"] == states["announce"] == "skipped"
    assert states["execution_record"] == "skipped"
    record = api.xcom("gated", run_id, "execution_record")
    assert record["stages_completed"] == ["extract"]
    assert record["stages_skipped"] == ["publish", "announce"] and record["stages_failed"] == []
    decision = record["approvals"]["publish"]
    assert decision["approved"] is False and decision["by"] == "admin" and decision["timed_out"] is False
    # The declined run did not complete the pipeline: it updates no asset.
    assert run_id not in [e["source_run_id"] for e in asset_events(api, "x-mlpipe://pipelines/gated")]


def test_an_unanswered_request_times_out_as_a_rejection(cluster: CeleryCluster):
    api = cluster.api
    api.set_paused("gated_timeout", False)
    run_id = api.trigger("gated_timeout")

    run = api.wait_for_run("gated_timeout", run_id, 240)

    assert run["state"] == "success", cluster.explain("gated_timeout", run_id)
    states = api.task_states("gated_timeout", run_id)
    assert states["publish"] == states["announce"] == "skipped"
    record = api.xcom("gated_timeout", run_id, "execution_record")
    decision = record["approvals"]["publish"]
    assert decision["approved"] is False and decision["timed_out"] is True and decision["by"] is None
