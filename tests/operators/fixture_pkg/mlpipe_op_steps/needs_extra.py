"""Declares an extra whose module is not installed anywhere."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from airflow_mlpipe.contract import ComponentContext, Extra

extra = Extra("quantum", modules=("mlpipe_no_such_module_for_tests",))


class Config(BaseModel):
    pass


def run(config: Config, context: ComponentContext) -> dict[str, Any]:
    raise AssertionError("run() must not be called when the extra is missing")
