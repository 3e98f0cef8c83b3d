"""The compare route without a server: authorization, 404s, parameter bounds, masking, shape.

``GET /api/pipelines/{name}/compare?a=RUN&b=RUN`` is called through FastAPI's test client with a
fixed user; the two database reads (is it a pipeline, the record of one run) are replaced by
records kept here, and the comparison itself is the real ``compare_records``.
(``tests/deployment/test_plugin_api.py`` compares real runs in a real api-server.)
"""

from __future__ import annotations

import contextlib
import copy
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mlpipe.compare import compare_records
from airflow_mlpipe.plugin import app as plugin_app
from airflow_mlpipe.plugin import queries, security

COMPARE = "/api/pipelines/ranking/compare"
RUN_A = "manual__2026-01-02T03:00:00+00:00"
RUN_B = "manual__2026-01-03T03:00:00+00:00"


def _record(run_id: str) -> dict[str, Any]:
    return {
        "pipeline": "ranking",
        "execution_id": run_id,
        "config_version": "aaaaaaaaaaaa",
        "stages_completed": ["extract", "train"],
        "stages_failed": [],
        "stages_skipped": [],
        "stages_cached": [],
        "cached_from": {},
        "configs": {
            "extract": {"query": "SELECT 1", "batch_size": 10000},
            "train": {"factors": 64, "epochs": 50, "early_stopping": {"patience": 5}},
        },
        "outputs": {
            "extract": {
                "artifacts": {"data": "file:///a/data.parquet"},
                "metrics": {"rows": 100.0},
                "digests": {"data": "sha256:d1"},
            },
            "train": {
                "artifacts": {"model": "file:///a/model.npz"},
                "metrics": {"val_recall@10": 0.25, "epochs_run": 12.0},
                "digests": {"model": "sha256:m1"},
            },
        },
        "errors": {},
    }


def _entry(run_id: str, record: dict[str, Any], day: int) -> dict[str, Any]:
    start = datetime(2026, 1, day, 3, 0, tzinfo=timezone.utc)
    run = SimpleNamespace(
        dag_id="ranking",
        run_id=run_id,
        state=SimpleNamespace(value="success"),
        run_type=SimpleNamespace(value="manual"),
        triggered_by=SimpleNamespace(value="ui"),
        triggering_user_name="alice",
        run_after=start,
        start_date=start,
        end_date=start + timedelta(seconds=60),
    )
    return {**queries.run_summary(run), "record": record}


@pytest.fixture
def stored(monkeypatch) -> dict[str, Any]:
    """The records the replaced database holds, by run id; ``lookups`` lists every read."""
    record_a = _record(RUN_A)
    record_b = _record(RUN_B)
    record_b["stages_cached"] = ["extract"]
    record_b["cached_from"] = {"extract": RUN_A}
    record_b["configs"]["train"]["factors"] = 16
    record_b["configs"]["train"]["early_stopping"] = {"patience": 3}
    record_b["outputs"]["train"] = {
        "artifacts": {"model": "file:///b/model.npz"},
        "metrics": {"val_recall@10": 0.3, "epochs_run": 12.0},
        "digests": {"model": "sha256:m2"},
    }
    db: dict[str, Any] = {
        "entries": {RUN_A: _entry(RUN_A, record_a, 2), RUN_B: _entry(RUN_B, record_b, 3)},
        "lookups": [],
    }

    def record(session, dag_id, run_id):
        db["lookups"].append((dag_id, run_id))
        entry = db["entries"].get(run_id) if dag_id == "ranking" else None
        return copy.deepcopy(entry)

    monkeypatch.setattr(security, "can_read", lambda user, dag_id, entities=(): True)
    monkeypatch.setattr(queries, "is_pipeline", lambda session, name: name == "ranking")
    monkeypatch.setattr(queries, "record", record)
    import airflow.utils.session

    monkeypatch.setattr(airflow.utils.session, "create_session", contextlib.nullcontext)
    return db


@pytest.fixture
def client():
    from fastapi.testclient import TestClient

    app = plugin_app.create_app()
    app.dependency_overrides[security.current_user] = lambda: SimpleNamespace(get_name=lambda: "tester")
    return TestClient(app)


def test_compare_is_compare_records_of_the_two_runs_with_both_runs(client, stored):
    response = client.get(COMPARE, params={"a": RUN_A, "b": RUN_B})
    assert response.status_code == 200, response.text
    data = response.json()
    assert stored["lookups"] == [("ranking", RUN_A), ("ranking", RUN_B)]

    record_a = stored["entries"][RUN_A]["record"]
    record_b = stored["entries"][RUN_B]["record"]
    expected = compare_records(record_a, record_b)
    assert data["stages"] == expected["stages"]
    assert (data["pipeline"], data["runs"], data["same"]) == ("ranking", [RUN_A, RUN_B], False)
    assert data["config_version"] == ["aaaaaaaaaaaa", "aaaaaaaaaaaa"]
    # Each run as the records route gives it.
    assert data["a"] == stored["entries"][RUN_A] and data["b"] == stored["entries"][RUN_B]

    stages = {stage["stage"]: stage for stage in data["stages"]}
    assert stages["extract"]["status"] == ["computed", "cached"] and stages["extract"]["same"] is True
    train = stages["train"]
    assert train["status"] == ["computed", "computed"]
    assert train["config"] == [
        {"key": "early_stopping.patience", "a": 5, "b": 3},
        {"key": "factors", "a": 64, "b": 16},
    ]
    assert train["artifacts"] == [{"name": "model", "a": "sha256:m1", "b": "sha256:m2", "same": False}]
    metrics = {metric["name"]: metric for metric in train["metrics"]}
    assert metrics["val_recall@10"]["delta"] == pytest.approx(0.05)
    assert metrics["epochs_run"]["delta"] == 0.0


def test_a_run_compared_with_itself_is_read_once_and_the_same(client, stored):
    data = client.get(COMPARE, params={"a": RUN_A, "b": RUN_A}).json()
    assert stored["lookups"] == [("ranking", RUN_A)]
    assert data["same"] is True and all(stage["same"] for stage in data["stages"])
    assert data["a"]["run_id"] == data["b"]["run_id"] == RUN_A


def test_a_run_without_a_record_is_a_404_naming_it(client, stored):
    response = client.get(COMPARE, params={"a": RUN_A, "b": "manual__nope"})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "'manual__nope'" in detail and RUN_A not in detail and "ranking/records" in detail

    both = client.get(COMPARE, params={"a": "scheduled__x", "b": "manual__y"}).json()["detail"]
    assert "'scheduled__x' and 'manual__y'" in both

    unknown = client.get("/api/pipelines/unknown/compare", params={"a": RUN_A, "b": RUN_B})
    assert unknown.status_code == 404 and "No pipeline named 'unknown'" in unknown.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"b": RUN_B},
        {"a": RUN_A},
        {},
        {"a": "", "b": RUN_B},
        {"a": RUN_A, "b": "x" * (plugin_app.MAX_RUN_ID + 1)},
    ],
    ids=["no-a", "no-b", "neither", "empty-a", "oversized-b"],
)
def test_missing_or_oversized_run_ids_are_a_422_and_never_reach_the_database(client, stored, params):
    response = client.get(COMPARE, params=params)
    assert response.status_code == 422, response.text
    assert stored["lookups"] == []


def test_a_run_id_of_airflows_maximum_length_is_looked_up(client, stored):
    longest = "x" * plugin_app.MAX_RUN_ID
    assert client.get(COMPARE, params={"a": RUN_A, "b": longest}).status_code == 404
    assert stored["lookups"] == [("ranking", RUN_A), ("ranking", longest)]


def test_without_read_access_to_runs_and_xcoms_it_is_a_403_before_any_read(client, stored, monkeypatch):
    asked: list[tuple[str, tuple[str, ...]]] = []

    def can_read(user, dag_id, entities=()):
        asked.append((dag_id, tuple(entities)))
        return False

    monkeypatch.setattr(security, "can_read", can_read)
    response = client.get(COMPARE, params={"a": RUN_A, "b": RUN_B})
    assert response.status_code == 403
    assert asked == [("ranking", ("RUN", "XCOM"))]  # what the records route asks
    assert stored["lookups"] == []


def test_the_comparison_leaves_through_the_secrets_masker(client, stored):
    from airflow._shared.secrets_masker import mask_secret

    mask_secret("hunter2-secret")  # as Airflow does for every connection password it loads
    record_a = stored["entries"][RUN_A]["record"]
    record_b = stored["entries"][RUN_B]["record"]
    record_a["configs"]["extract"]["password"] = "old-plain-password"
    record_b["configs"]["extract"]["password"] = "new-plain-password"
    record_a["configs"]["extract"]["db"] = {"api_token": "token-one", "host": "db1"}
    record_b["configs"]["extract"]["db"] = {"api_token": "token-two", "host": "db2"}
    record_b["configs"]["extract"]["uri"] = "postgresql://scott:hunter2-secret@db2/x"
    record_b["errors"] = {"train": "could not connect as scott:hunter2-secret@db"}

    data = client.get(COMPARE, params={"a": RUN_A, "b": RUN_B}).json()
    [extract] = [stage for stage in data["stages"] if stage["stage"] == "extract"]
    differences = {difference["key"]: (difference["a"], difference["b"]) for difference in extract["config"]}
    # Sensitive by their key's name, though the key is a value here and not a dict key.
    assert differences["password"] == ("***", "***")
    assert differences["db.api_token"] == ("***", "***")
    assert differences["db.host"] == ("db1", "db2")  # not sensitive: shown
    # A known secret inside any string.
    assert differences["uri"] == (None, "postgresql://scott:***@db2/x")
    assert data["b"]["record"]["errors"]["train"] == "could not connect as scott:***@db"
    assert data["b"]["record"]["configs"]["extract"]["password"] == "***"
    assert "hunter2-secret" not in str(data) and "plain-password" not in str(data)
