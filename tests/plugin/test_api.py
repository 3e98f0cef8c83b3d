"""The plugin's API without a server: parameter bounds, secrets masking, record shaping.

The routes are called through FastAPI's test client with Airflow's authentication replaced by a
fixed user; the database reads are replaced where a test is about what happens around them.
(``tests/deployment/test_plugin_api.py`` runs the same routes in a real api-server.)
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mlpipe.plugin import app as plugin_app
from airflow_mlpipe.plugin import queries, security

RECORDS = "/api/pipelines/ranking/records"


@pytest.fixture
def calls(monkeypatch) -> list[dict[str, Any]]:
    """Database reads replaced: the records route's arguments are recorded, one record returned."""
    seen: list[dict[str, Any]] = []

    def records(session, dag_id, limit=50, offset=0):
        seen.append({"dag_id": dag_id, "limit": limit, "offset": offset})
        return [RECORD_ENTRY], 1

    monkeypatch.setattr(security, "require_read", lambda *args, **kwargs: None)
    monkeypatch.setattr(queries, "is_pipeline", lambda session, name: name == "ranking")
    monkeypatch.setattr(queries, "records", records)
    import airflow.utils.session

    monkeypatch.setattr(airflow.utils.session, "create_session", contextlib.nullcontext)
    return seen


@pytest.fixture
def client():
    from fastapi.testclient import TestClient

    app = plugin_app.create_app()
    app.dependency_overrides[security.current_user] = lambda: SimpleNamespace(get_name=lambda: "tester")
    return TestClient(app)


def _run(**overrides: Any) -> SimpleNamespace:
    start = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
    values = {
        "dag_id": "ranking",
        "run_id": "manual__2026-01-02T03:00:00+00:00",
        "state": SimpleNamespace(value="success"),
        "run_type": SimpleNamespace(value="manual"),
        "triggered_by": SimpleNamespace(value="rest_api"),
        "triggering_user_name": "alice",
        "run_after": start,
        "start_date": start,
        "end_date": start + timedelta(seconds=90.5),
    }
    return SimpleNamespace(**{**values, **overrides})


RECORD_ENTRY = {
    **queries.run_summary(_run()),
    "record": {
        "pipeline": "ranking",
        "errors": {"extract": "OperationalError: could not connect as scott:hunter2-secret@db"},
        "overrides": {"extract": {"password": "plain-text-password", "batch_size": 10}},
    },
}


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=-5",
        "offset=-1",
        f"offset={plugin_app.MAX_OFFSET + 1}",
        "offset=" + "9" * 30,
    ],
)
def test_out_of_bounds_paging_is_a_422_and_never_reaches_the_database(client, calls, query):
    response = client.get(f"{RECORDS}?{query}")
    assert response.status_code == 422, response.text
    assert calls == []


def test_paging_within_bounds_reaches_the_query(client, calls):
    response = client.get(f"{RECORDS}?limit={plugin_app.MAX_LIMIT}&offset={plugin_app.MAX_OFFSET}")
    assert response.status_code == 200
    assert calls == [{"dag_id": "ranking", "limit": plugin_app.MAX_LIMIT, "offset": plugin_app.MAX_OFFSET}]
    assert client.get("/api/pipelines/unknown/records").status_code == 404


def test_records_leave_the_api_through_the_secrets_masker(client, calls):
    from airflow._shared.secrets_masker import mask_secret

    mask_secret("hunter2-secret")  # as Airflow does for every connection password it loads
    record = client.get(RECORDS).json()["records"][0]["record"]
    assert record["errors"]["extract"] == "OperationalError: could not connect as scott:***@db"
    assert record["overrides"]["extract"] == {"password": "***", "batch_size": 10}  # by key name
    assert record["pipeline"] == "ranking"


def test_a_run_is_shaped_with_its_trigger_in_the_records_words():
    entry = queries.run_summary(_run())
    assert entry["run_id"] == "manual__2026-01-02T03:00:00+00:00"
    assert (entry["state"], entry["run_type"], entry["trigger_source"]) == ("success", "manual", "rest_api")
    assert entry["triggered_by"] == "api" and entry["triggering_user_name"] == "alice"
    assert entry["duration_seconds"] == 90.5 and entry["start_date"] == "2026-01-02T03:00:00+00:00"
    assert entry["run_path"] == "dags/ranking/runs/manual__2026-01-02T03%3A00%3A00%2B00%3A00"
    running = queries.run_summary(_run(end_date=None, state=SimpleNamespace(value="running")))
    assert (running["state"], running["duration_seconds"], running["end_date"]) == ("running", None, None)
    ui = queries.run_summary(_run(triggered_by=SimpleNamespace(value="ui")))
    assert ui["triggered_by"] == "manual"
