"""A stand-in for training plus evaluation: writes a model, reports metrics against a threshold.

Its config has nested settings and secrets, as real training configs do, so tests can check how
configs are flattened and masked on their way to an experiment tracker.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factors: int = 8
    regularization: dict[str, float] = Field(default_factory=lambda: {"l2": 0.5})


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recall: float = Field(0.3, description="reported as recall@10")
    threshold: float = Field(0.2, description="recall@10 must reach it")
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    metrics: list[str] = Field(default_factory=lambda: ["recall@10"])
    api_token: str = Field("", description="a secret: never logged")
    credentials: dict[str, str] = Field(default_factory=dict, description="nested secrets")


def run(config: Config, context: Any) -> dict[str, Any]:
    model = context.artifact_dir / "model.txt"
    model.write_text(f"factors={config.hyperparameters.factors}")
    passed = config.recall >= config.threshold
    return {
        "artifacts": {"model": str(model)},
        "metrics": {
            "recall@10": config.recall,
            "threshold.recall@10": config.threshold,
            "passed.recall@10": float(passed),
            "all_metrics_passed": float(passed),
        },
    }
