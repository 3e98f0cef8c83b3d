"""Crashes in run(), as a component with a bug does."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from airflow_mlpipe.contract import ComponentContext


class Config(BaseModel):
    pass


def run(config: Config, context: ComponentContext) -> dict[str, Any]:
    context.log.info("about to diverge")
    raise RuntimeError("the loss diverged at epoch 3")
