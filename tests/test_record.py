"""The execution record's pure parts: stage classification, trigger mapping, task breadcrumbs."""

from __future__ import annotations

from airflow_mlpipe.operators.record import task_breadcrumbs
from airflow_mlpipe.record import classify_stages, triggered_by


def test_stages_are_completed_failed_or_skipped():
    states = {"a": "success", "b": "failed", "c": "upstream_failed", "d": "skipped"}

    assert classify_stages(["a", "b", "c", "d", "e"], states) == (["a"], ["b"], ["c", "d", "e"])


def test_run_types_map_to_the_record_vocabulary():
    assert triggered_by("scheduled") == "schedule"
    assert triggered_by("manual") == "manual"
    assert triggered_by("backfill") == "backfill"
    assert triggered_by("asset_triggered") == "asset"


class _NewerTaskInstance:
    dag_id, run_id = "p", "r1"

    def get_task_breadcrumbs(self, dag_id, run_id):
        assert (dag_id, run_id) == ("p", "r1")
        return [{"task_id": "a", "state": "success", "duration": 1.5}]


class _OlderTaskInstance:
    dag_id, run_id = "p", "r1"

    def get_task_states(self, dag_id, run_ids):
        assert (dag_id, run_ids) == ("p", ["r1"])
        return {"r1": {"a": "failed"}}


def test_breadcrumbs_carry_durations_where_the_task_sdk_has_them():
    assert task_breadcrumbs(_NewerTaskInstance()) == {
        "a": {"task_id": "a", "state": "success", "duration": 1.5}
    }


def test_breadcrumbs_fall_back_to_task_states():
    assert task_breadcrumbs(_OlderTaskInstance()) == {"a": {"task_id": "a", "state": "failed"}}


def test_trigger_source_maps_rest_api_to_api_and_falls_back_to_run_type():
    from airflow_mlpipe.record import triggered_by_source

    assert triggered_by_source("rest_api", "manual") == "api"
    assert triggered_by_source("ui", "manual") == "manual"
    assert triggered_by_source("timetable", "scheduled") == "schedule"
    assert triggered_by_source(None, "backfill") == "backfill"
