"""``runtime.python``: run a stage's component in another Python interpreter on the worker.

Like Airflow's ``ExternalPythonOperator``, for environments whose libraries cannot share the
worker's (another torch, another numpy): the stage's task does everything it always does (the
config, the overrides, the inputs, the fingerprint and the cache, the artifact folder, the
digests) and hands only the component's ``run`` to the interpreter, through
:mod:`airflow_mlpipe.runtimes.child`. In go the config (validated and templated), the inputs, the
artifact folder's URI and the stage's context (pipeline, versions, run id, git commit, and the
JSON-safe part of Airflow's task context: ``ds``, ``logical_date``, ``params``, the run's conf...);
back come the outputs. The interpreter's output is streamed into the task log line by line.

A crash of the component there fails the stage as a crash here would (retries apply); an
interpreter that does not exist, or lacks airflow-mlpipe or a library the component imports,
fails it without retries, naming what to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from airflow_mlpipe.contract import ComponentContext, ContractError, StageOutputs
from airflow_mlpipe.resolver import Component
from airflow_mlpipe.runner import check_outputs
from airflow_mlpipe.runtimes.child import BOOTSTRAP

#: The parts of Airflow's task context the component gets in the other interpreter.
CONTEXT_KEYS = (
    "ds",
    "ds_nodash",
    "ts",
    "ts_nodash",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "run_id",
    "params",
)


class ExternalRuntimeError(Exception):
    """The component failed in the other interpreter (a retry may help, as with any crash)."""


def run_external(
    python: str,
    component: Component,
    config: BaseModel,
    context: ComponentContext,
    component_modules: tuple[str, ...],
) -> StageOutputs:
    """Run ``component`` with ``config`` in the interpreter ``python``; its outputs, checked."""
    if not os.access(python, os.X_OK) or os.path.isdir(python):
        raise ContractError(
            f"runtime.python '{python}' is not an executable interpreter on this worker; create the "
            "environment there (python -m venv ...) or fix the path"
        )
    request = {
        "component": component.name,
        "component_modules": list(component_modules),
        "config": config.model_dump(mode="json"),
        "pipeline": context.pipeline,
        "pipeline_version": context.pipeline_version,
        "config_version": context.config_version,
        "environment": context.environment,
        "stage": context.stage,
        "run_id": context.run_id,
        "git_commit": context.git_commit,
        "inputs": {stage: outputs.to_dict() for stage, outputs in context.inputs.items()},
        "artifact_dir": str(context.artifact_dir),
        "airflow_context": json_context(context.airflow_context),
    }
    with tempfile.TemporaryDirectory(prefix="mlpipe-runtime-") as folder:
        request_path, result_path = Path(folder, "request.json"), Path(folder, "result.json")
        request_path.write_text(json.dumps(request, default=str))
        context.log.info("Running the component in %s", python)
        returncode = _stream([python, "-c", BOOTSTRAP, str(request_path), str(result_path)], folder, context)
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
    if "outputs" in result and returncode == 0:
        return check_outputs(component, config, result["outputs"])
    raise _failure(python, component, returncode, result.get("error"))


def _stream(command: list[str], cwd: str, context: ComponentContext) -> int:
    """Run ``command``, each line of its output a line of the task log; its exit code."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The other interpreter imports what is installed in its own environment, not what the
    # worker's interpreter was pointed at.
    for variable in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(variable, None)
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            context.log.info("%s", line.rstrip("\n"))
        return process.wait()
    finally:
        # A timeout or a kill of the task must not leave the component running.
        if process.poll() is None:
            process.kill()
            process.wait()


def _failure(
    python: str, component: Component, returncode: int, error: Mapping[str, Any] | None
) -> Exception:
    if error is None:
        return ExternalRuntimeError(
            f"component '{component.name}' in {python} exited with {returncode} without a result "
            "(killed, or out of memory?); its output is in the log above"
        )
    if error.get("type") == "MissingPackage":
        module = error.get("module") or "?"
        what = "airflow-mlpipe" if module.split(".")[0] == "airflow_mlpipe" else f"the module '{module}'"
        return ContractError(
            f"component '{component.name}' cannot run in {python}: {what} is not installed there "
            f"({error.get('message')}); install it into that environment: {python} -m pip install "
            + ("airflow-mlpipe" if what == "airflow-mlpipe" else "<the package providing it>")
        )
    message = f"component '{component.name}' failed in {python}: {error.get('type')}: {error.get('message')}"
    return ContractError(message) if error.get("contract") else ExternalRuntimeError(message)


def json_context(airflow_context: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-safe part of Airflow's task context, with the run's conf, for the other interpreter."""
    values: dict[str, Any] = {}
    for key in CONTEXT_KEYS:
        if key in airflow_context:
            values[key] = _json_safe(airflow_context[key])
    dag_run = airflow_context.get("dag_run")
    if dag_run is not None:
        values["conf"] = _json_safe(getattr(dag_run, "conf", None) or {})
    ti = airflow_context.get("ti")
    if ti is not None:
        for key in ("dag_id", "task_id", "try_number", "map_index"):
            values[key] = _json_safe(getattr(ti, key, None))
    return values


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
