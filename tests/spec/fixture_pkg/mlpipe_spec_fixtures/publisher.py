"""A test component with side effects: never cached, so it may not be swept."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

cache = "never"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = "somewhere"
    seed: int = 0


def run(config: Config, context: Any) -> dict[str, Any]:
    return {}
