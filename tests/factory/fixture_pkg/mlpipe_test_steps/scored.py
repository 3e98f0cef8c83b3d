"""A component to sweep: its metric depends on its config, and chosen variants fail."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

cache = "on"  # deterministic: the same config gives the same outputs


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factors: int = Field(8, gt=0, json_schema_extra={"overridable": True})
    regularization: float = Field(1.0, ge=0)
    fail_factors: list[int] = Field(default_factory=list, description="variants with these factors raise")


def run(config: Config, context: Any) -> dict[str, Any]:
    context.log.info("scored progress: factors=%s regularization=%s", config.factors, config.regularization)
    if config.factors in config.fail_factors:
        raise RuntimeError(f"diverged with factors={config.factors}")
    model = context.artifact_dir / "model.txt"
    model.write_text(f"factors={config.factors} regularization={config.regularization}")
    score = config.factors / (1 + config.regularization)
    return {"artifacts": {"model": str(model)}, "metrics": {"val_score": score, "factors": config.factors}}
