"""A test component that requires 'model' and 'features', and declares nothing it produces."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from airflow_mlpipe.contract import Requires

requires = Requires(artifacts=("model", "features"))


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = 10


def run(config: Config, context: Any) -> dict[str, Any]:
    return {}
