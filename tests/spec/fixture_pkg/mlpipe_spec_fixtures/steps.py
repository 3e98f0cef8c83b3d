"""A test component with a small typed Config (nested model, list, date, free-form mapping)."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = 3
    mode: str = "fast"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(gt=0, description="how many passes")
    rate: float = 0.1
    name: str = ""
    options: Options = Field(default_factory=Options)
    labels: list[str] = Field(default_factory=list)
    cutoff: date | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


def run(config: Config, context: Any) -> dict[str, Any]:
    return {"metrics": {"epochs": config.epochs}}
