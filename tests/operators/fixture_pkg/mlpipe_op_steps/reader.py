"""Reads its upstream 'make' the three ways the README documents, and fails on a secret if asked."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from airflow_mlpipe.contract import ComponentContext, Requires

requires = Requires(artifacts=("table",))


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = 10
    raise_with: str = ""


def run(config: Config, context: ComponentContext) -> dict[str, Any]:
    if config.raise_with:
        raise RuntimeError(f"could not log in with {config.raise_with}")
    by_key = context.inputs["make"]["artifacts"]["table"]
    by_attribute = context.inputs["make"].artifacts["table"]
    by_method = context.input("make")["artifacts"]["table"]
    assert by_key == by_attribute == by_method
    text = context.artifact_dir / "copy.txt"
    text.write_text(context.artifact_dir.__class__(by_key).read_text())
    return {
        "artifacts": {"copy": str(text)},
        "metrics": {"upstream_rows": context.inputs["make"]["metrics"]["rows"]},
    }
