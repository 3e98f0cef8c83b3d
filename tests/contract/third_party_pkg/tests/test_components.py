"""ACME's own unit tests, with airflow-mlpipe's authoring kit (no Airflow processes)."""

from __future__ import annotations

import json

from airflow_mlpipe.testing import run_component


def test_make_table_then_summarise(tmp_path):
    made = run_component("acme.make_table", {"users": 2}, artifact_dir=tmp_path / "make")
    assert made.metrics["rows"] == 4

    summary = run_component(
        "acme.summarise", {}, inputs={"make": made}, artifact_dir=tmp_path / "summarise", stage="summarise"
    )

    assert summary.metrics == {"clicks": 8.0, "upstream_rows": 4.0}
    assert json.loads((tmp_path / "summarise" / "summary.json").read_text())["total"] == 8
