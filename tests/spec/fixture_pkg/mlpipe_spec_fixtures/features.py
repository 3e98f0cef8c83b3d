"""A test component that declares it produces 'features' and 'interactions'."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from airflow_mlpipe.contract import Produces

produces = Produces(artifacts=("features", "interactions"))


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_days: int = 30


def run(config: Config, context: Any) -> dict[str, Any]:
    return {}
