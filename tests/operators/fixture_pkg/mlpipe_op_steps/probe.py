"""Reports where it ran: the interpreter, whether Airflow is importable, what it was given."""

from __future__ import annotations

import importlib.util
import json
import sys
from typing import Any

from pydantic import BaseModel, ConfigDict

from airflow_mlpipe.contract import ComponentContext, Produces

produces = Produces(artifacts=("probe",), metrics=("airflow_importable",))


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = "hello"


def run(config: Config, context: ComponentContext) -> dict[str, Any]:
    print("a line the component printed")
    context.log.info("probe running in %s", sys.executable)
    airflow = importlib.util.find_spec("airflow") is not None
    probe = context.artifact_dir / "probe.json"
    with probe.open("w") as out:
        json.dump(
            {
                "executable": sys.executable,
                "message": config.message,
                "inputs": {stage: dict(outputs.artifacts) for stage, outputs in context.inputs.items()},
                "ds": context.airflow_context.get("ds"),
                "conf": context.airflow_context.get("conf"),
                "run_id": context.run_id,
                "git_commit": context.git_commit,
            },
            out,
        )
    return {"artifacts": {"probe": str(probe)}, "metrics": {"airflow_importable": float(airflow)}}
