"""Writes a 'table' artifact; ``skip_table`` makes it return less than it declares."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_mlpipe.contract import ComponentContext, Produces

produces = Produces(artifacts=("table",), metrics=("rows",))


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: int = Field(3, json_schema_extra={"overridable": True})
    query: str = "SELECT 1"
    skip_table: bool = False
    marker: str = Field("", description="a file that gets a line each time run() starts")


def run(config: Config, context: ComponentContext) -> dict[str, Any]:
    if config.marker:
        with open(config.marker, "a") as marker:
            marker.write(f"{context.run_id}\n")
    table = context.artifact_dir / "table.txt"
    table.write_text(f"{config.rows} rows from {config.query}")
    artifacts = {} if config.skip_table else {"table": str(table)}
    return {"artifacts": artifacts, "metrics": {"rows": config.rows}}
