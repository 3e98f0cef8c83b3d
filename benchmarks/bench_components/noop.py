"""A component that does nothing: what is left of a stage's run time is the operator's own cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    """No settings besides an optional label."""

    model_config = ConfigDict(extra="forbid")

    label: str = ""


def run(config: Config, context: Any) -> Mapping[str, Any]:
    """Return no artifacts and no metrics."""
    return {}
