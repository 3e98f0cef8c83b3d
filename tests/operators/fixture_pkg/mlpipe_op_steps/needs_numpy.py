"""Imports numpy inside run(): fails where numpy is not installed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from airflow_mlpipe.contract import ComponentContext


class Config(BaseModel):
    pass


def run(config: Config, context: ComponentContext) -> dict[str, Any]:
    import numpy

    return {"metrics": {"pi": float(numpy.pi)}}
