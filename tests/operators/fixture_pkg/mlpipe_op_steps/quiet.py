"""Returns nothing at all (``None``), which the contract allows."""

from __future__ import annotations

from pydantic import BaseModel

from airflow_mlpipe.contract import ComponentContext


class Config(BaseModel):
    pass


def run(config: Config, context: ComponentContext) -> None:
    context.log.info("nothing to hand on")
