"""Writes a small CSV table of (user, item, clicks) rows."""

from __future__ import annotations

from pydantic import BaseModel, Field

from airflow_mlpipe.contract import ComponentContext, Produces

produces = Produces(artifacts=("table",), metrics=("rows",))


class Config(BaseModel):
    users: int = Field(3, ge=1, json_schema_extra={"overridable": True})
    items_per_user: int = 2


def run(config: Config, context: ComponentContext) -> dict:
    lines = ["user,item,clicks"]
    for user in range(config.users):
        for item in range(config.items_per_user):
            lines.append(f"u{user},i{item},{user + item + 1}")
    table = context.artifact_dir / "table.csv"
    table.write_text("\n".join(lines) + "\n")
    context.log.info("acme: wrote %d rows", len(lines) - 1)
    return {"artifacts": {"table": str(table)}, "metrics": {"rows": len(lines) - 1}}
