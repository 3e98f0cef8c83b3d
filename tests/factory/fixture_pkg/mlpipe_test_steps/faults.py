"""A component for fault tests: leaves one output file per try, can hold its first try or fail on a flag.

Each try first writes ``output-try<N>.txt`` into the artifact dir, so a try that is killed or fails
leaves it behind; only an artifact dir emptied at the start of every try ends with one file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Overridable: the fault tests set them per run, from the trigger.
    started_marker: str = Field(
        "",
        description="append '<pid> <try>' to this file as a try starts",
        json_schema_extra={"overridable": True},
    )
    hold_first_try: float = Field(
        0, description="seconds the first try waits before finishing", json_schema_extra={"overridable": True}
    )
    fail_while_exists: str = Field(
        "", description="fail while this file exists", json_schema_extra={"overridable": True}
    )


def run(config: Config, context: Any) -> dict[str, Any]:
    try_number = int(context.airflow_context["ti"].try_number)
    output = context.artifact_dir / f"output-try{try_number}.txt"
    inputs = {stage: outputs.artifacts for stage, outputs in sorted(context.inputs.items())}
    output.write_text(json.dumps({"stage": context.stage, "try_number": try_number, "inputs": inputs}))
    if config.started_marker:
        with open(config.started_marker, "a") as marker:
            marker.write(f"{os.getpid()} {try_number}\n")
    if try_number == 1 and config.hold_first_try:
        context.log.info("faults: holding try 1 for %s s", config.hold_first_try)
        time.sleep(config.hold_first_try)
    if config.fail_while_exists and Path(config.fail_while_exists).exists():
        raise RuntimeError(f"stage {context.stage} fails while {config.fail_while_exists} exists")
    return {"artifacts": {"output": str(output)}, "metrics": {"try_number": try_number}}
