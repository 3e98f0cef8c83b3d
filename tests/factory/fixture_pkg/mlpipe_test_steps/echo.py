"""A downstream component that reports what it received: upstream metrics and artifact URIs."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


def run(config: Config, context: Any) -> dict[str, Any]:
    received = {stage: outputs.to_dict() for stage, outputs in context.inputs.items()}
    out = context.artifact_dir / "received.json"
    out.write_text(json.dumps(received, sort_keys=True))
    metrics = {
        f"{stage}.{name}": value
        for stage, outputs in context.inputs.items()
        for name, value in outputs.metrics.items()
    }
    return {"artifacts": {"received": str(out)}, "metrics": metrics}
