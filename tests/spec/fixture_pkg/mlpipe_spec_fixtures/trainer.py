"""A test component that requires 'features' and produces 'model' (and a metric)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_mlpipe.contract import Produces, Requires

requires = Requires(artifacts=("features",))
produces = Produces(artifacts=("model",), metrics=("loss",))


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, json_schema_extra={"overridable": True})
    learning_rate: float = Field(0.1, json_schema_extra={"overridable": True})
    seed: int = 0


def run(config: Config, context: Any) -> dict[str, Any]:
    return {}
