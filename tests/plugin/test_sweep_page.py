"""The page's sweep tables: the records API hands the record's ``sweeps`` over whole (masked),
and the page's script turns the newest one into a table per swept stage with the winner marked."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_mlpipe.plugin import app as plugin_app
from airflow_mlpipe.plugin import queries, security
from airflow_mlpipe.sweeps import SweepOutcome, VariantOutcome

from .test_api import _run

SCRIPT = Path(plugin_app.__file__).parent / "static" / "mlpipe.js"

SWEEP = SweepOutcome(
    metric="val_recall@10",
    mode="max",
    selected=1,
    variants=[
        VariantOutcome(
            label="factors=64, regularization=10",
            variant={"factors": 64, "regularization": 10},
            config={"factors": 64, "regularization": 10.0, "epochs": 30},
            metrics={"val_recall@10": 0.21},
            state="success",
        ),
        VariantOutcome(
            label="factors=128, regularization=10",
            variant={"factors": 128, "regularization": 10},
            config={"factors": 128, "regularization": 10.0, "epochs": 30},
            metrics={"val_recall@10": 0.24},
            state="success",
            cached_from="scheduled__2026-01-01",
        ),
        VariantOutcome(
            label="factors=128, regularization=50",
            variant={"factors": 128, "regularization": 50},
            config={"factors": 128, "regularization": 50.0, "epochs": 30, "password": "hunter3-secret"},
            state="failed",
            error="RuntimeError: out of memory\nmore",
        ),
    ],
).model_dump(mode="json")

ENTRIES = [
    {"run_id": "manual__new", "record": {"pipeline": "ranking", "sweeps": {}}},
    {"run_id": "manual__old", "record": {"pipeline": "ranking", "sweeps": {"train": SWEEP}}},
]


@pytest.fixture
def client(monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setattr(security, "require_read", lambda *args, **kwargs: None)
    monkeypatch.setattr(queries, "is_pipeline", lambda session, name: name == "ranking")
    entries = [{**queries.run_summary(_run(run_id=e["run_id"])), "record": e["record"]} for e in ENTRIES]
    monkeypatch.setattr(queries, "records", lambda session, dag_id, limit=50, offset=0: (entries, 2))
    import airflow.utils.session

    monkeypatch.setattr(airflow.utils.session, "create_session", contextlib.nullcontext)
    app = plugin_app.create_app()
    app.dependency_overrides[security.current_user] = lambda: SimpleNamespace(get_name=lambda: "tester")
    return TestClient(app)


def test_the_records_api_returns_every_variant_of_a_sweep_masked(client):
    from airflow._shared.secrets_masker import mask_secret

    mask_secret("hunter3-secret")
    records = client.get("/api/pipelines/ranking/records").json()["records"]
    sweep = records[1]["record"]["sweeps"]["train"]
    assert (sweep["metric"], sweep["mode"], sweep["selected"]) == ("val_recall@10", "max", 1)
    assert [v["label"] for v in sweep["variants"]] == [v["label"] for v in SWEEP["variants"]]
    assert sweep["variants"][2]["config"]["password"] == "***"
    assert sweep["variants"][2]["error"].startswith("RuntimeError: out of memory")


def node() -> str:
    found = shutil.which("node") or shutil.which("nodejs")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is not installed; CI must provide it")
        pytest.skip("node is not installed (apt-get install nodejs)")
    return found


def sweep_tables(entries: list[dict]) -> list[dict]:
    """The page script's own ``sweepTables`` run on ``entries`` (Node, the script as shipped)."""
    program = (
        f"const page = require({json.dumps(str(SCRIPT))});"
        "process.stdout.write(JSON.stringify(page.sweepTables(JSON.parse(process.argv[1]))));"
    )
    done = subprocess.run(
        [node(), "-e", program, json.dumps(entries)], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


def test_the_page_draws_a_table_per_swept_stage_of_the_newest_record_that_has_sweeps_winner_marked():
    [table] = sweep_tables(ENTRIES)
    assert (table["stage"], table["run_id"], table["metric"], table["mode"]) == (
        "train",
        "manual__old",
        "val_recall@10",
        "max",
    )
    assert table["fields"] == ["factors", "regularization"]
    assert [row["values"] for row in table["rows"]] == [[64, 10], [128, 10], [128, 50]]
    assert [row["selected"] for row in table["rows"]] == [False, True, False]
    assert [row.get("value") for row in table["rows"]] == [0.21, 0.24, None]
    assert [row["state"] for row in table["rows"]] == ["success", "success", "failed"]
    assert [row["cached"] for row in table["rows"]] == [False, True, False]
    assert table["rows"][2]["error"].startswith("RuntimeError: out of memory")


def test_the_page_has_no_sweep_table_without_sweeps_and_says_when_none_succeeded():
    assert sweep_tables([{"run_id": "r", "record": {"sweeps": {}}}, {"run_id": "s", "record": None}]) == []
    failed = {**SWEEP, "selected": None}
    [table] = sweep_tables([{"run_id": "r", "record": {"sweeps": {"train": failed}}}])
    assert table["selected"] is None and not any(row["selected"] for row in table["rows"])
    html = (SCRIPT.parent / "index.html").read_text()
    assert 'id="sweeps"' in html and 'id="sweeps-title"' in html
