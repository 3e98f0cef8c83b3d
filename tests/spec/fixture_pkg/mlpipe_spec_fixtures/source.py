"""A test component whose config is entirely optional."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str = "events"
    limit: int | None = None


def run(config: Config, context: Any) -> dict[str, Any]:
    return {}
