"""A test component whose declarations depend on its config: it reads and writes named artifacts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from airflow_mlpipe.contract import Produces, Requires


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_artifact: str = ""
    output_artifact: str = "table"
    count: int = 1


def requires(config: Config) -> Requires:
    return Requires(artifacts=(config.input_artifact,) if config.input_artifact else ())


def produces(config: Config) -> Produces:
    return Produces(artifacts=(config.output_artifact,))


def run(config: Config, context: Any) -> dict[str, Any]:
    return {}
