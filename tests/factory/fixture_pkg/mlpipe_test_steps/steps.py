"""A small component for factory tests: writes an artifact, reports a metric, or fails on demand."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: int = Field(
        1, description="reported as the 'value' metric", json_schema_extra={"overridable": True}
    )
    label: str = Field("", description="written into the artifact (templated in tests)")
    fail: bool = Field(False, description="raise instead of finishing")
    fail_with: str = Field("", description="raise an error quoting this (templated in tests)")


def run(config: Config, context: Any) -> dict[str, Any]:
    context.log.info(
        "steps progress: stage %s starting with inputs %s", context.stage, sorted(context.inputs)
    )
    if config.fail:
        raise RuntimeError(f"boom in stage {context.stage}")
    if config.fail_with:
        raise RuntimeError(f"could not log in with {config.fail_with}")
    artifact = context.artifact_dir / "out.txt"
    artifact.write_text(f"{config.value}|{config.label}|{sorted(context.inputs)}")
    return {"artifacts": {"out": str(artifact)}, "metrics": {"value": config.value}}
