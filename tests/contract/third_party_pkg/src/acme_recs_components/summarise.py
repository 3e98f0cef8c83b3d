"""Sums the clicks of its upstream 'make' stage's table."""

from __future__ import annotations

import json

from airflow.sdk import ObjectStoragePath
from pydantic import BaseModel

from airflow_mlpipe.contract import ComponentContext, Produces, Requires

requires = Requires(artifacts=("table",))
produces = Produces(artifacts=("summary",), metrics=("clicks", "upstream_rows"))


class Config(BaseModel):
    column: str = "clicks"


def run(config: Config, context: ComponentContext) -> dict:
    # The README: inputs map each upstream stage to its artifacts and metrics, like run returns.
    table_uri = context.inputs["make"]["artifacts"]["table"]
    assert (
        table_uri == context.inputs["make"].artifacts["table"] == context.input("make")["artifacts"]["table"]
    )
    upstream_rows = context.inputs["make"]["metrics"]["rows"]

    rows = ObjectStoragePath(table_uri).read_text().splitlines()
    header = rows[0].split(",")
    index = header.index(config.column)
    total = sum(int(row.split(",")[index]) for row in rows[1:])

    summary = context.artifact_dir / "summary.json"
    summary.write_text(json.dumps({"pipeline": context.pipeline, "run_id": context.run_id, "total": total}))
    return {
        "artifacts": {"summary": str(summary)},
        "metrics": {"clicks": total, "upstream_rows": upstream_rows},
    }
