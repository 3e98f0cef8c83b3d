"""A test component whose run() needs an extra that is not installed anywhere."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from airflow_mlpipe.contract import Extra

extra = Extra("quantum", modules=("json", "mlpipe_spec_fixtures_not_installed_xyz"))


class Config(BaseModel):
    size: int = 1


def run(config: Config, context: Any) -> dict[str, Any]:
    import mlpipe_spec_fixtures_not_installed_xyz  # type: ignore[import-not-found]  # noqa: F401

    return {}
