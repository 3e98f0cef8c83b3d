"""Run one component in a unit test: a real ``ComponentContext``, no Airflow processes."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from airflow_mlpipe.contract import ComponentContext, StageOutputs
from airflow_mlpipe.resolver import Component, check_module, resolve_component
from airflow_mlpipe.runner import run_stage


def run_component(
    component: str | ModuleType,
    config: Mapping[str, Any],
    *,
    inputs: Mapping[str, Mapping[str, Any]] | None = None,
    artifact_dir: str | os.PathLike[str] | None = None,
    pipeline: str = "test_pipeline",
    stage: str = "stage",
    run_id: str = "test_run",
    airflow_context: Mapping[str, Any] | None = None,
    component_modules: Sequence[str] = (),
) -> StageOutputs:
    """Validate ``config`` with the component's ``Config``, call ``run``, and check the result.

    This is the path a pipeline stage takes (:func:`airflow_mlpipe.runner.run_stage`), without
    templating, overrides or XCom: ``inputs`` stand for the upstream stages' outputs
    (``{"extract": {"artifacts": {"table": uri}}}``), ``artifact_dir`` defaults to a new
    temporary folder, reached as a ``file://`` ``ObjectStoragePath`` like a deployment's.

    :param component: a component string (resolved as in a spec; modules under
        ``component_modules`` are allowed) or the component module itself
    :raises pydantic.ValidationError: when ``config`` is invalid
    :raises airflow_mlpipe.contract.ContractError: when the component breaks its contract
    """
    from airflow.sdk import ObjectStoragePath

    if isinstance(component, ModuleType):
        resolved = Component(component.__name__, check_module(component.__name__, component))
    else:
        resolved = resolve_component(component, component_modules)
    validated = resolved.config_model.model_validate(dict(config))
    folder = Path(artifact_dir) if artifact_dir is not None else Path(tempfile.mkdtemp(prefix="mlpipe-"))
    folder.mkdir(parents=True, exist_ok=True)
    context = ComponentContext(
        pipeline=pipeline,
        pipeline_version="0.0.0",
        config_version="test",
        environment="test",
        stage=stage,
        run_id=run_id,
        git_commit="unknown",
        inputs={name: StageOutputs.validate(outputs) for name, outputs in (inputs or {}).items()},
        artifact_dir=ObjectStoragePath(f"file://{folder.resolve()}"),
        airflow_context=dict(airflow_context or {}),
        log=logging.getLogger(f"airflow_mlpipe.testing.{stage}"),
    )
    return run_stage(resolved, validated, context)
