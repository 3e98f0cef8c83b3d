"""The DAG factory: every spec in a folder becomes an Airflow DAG.

A deployment's dags folder needs one Python file::

    from pathlib import Path
    from airflow_mlpipe.factory import build_dags

    globals().update(build_dags(Path(__file__).parent / "pipelines"))

A broken spec becomes a *placeholder DAG* with the same dag_id: it shows the file, line and
message in the Airflow UI and fails if triggered, and it never runs the pipeline. An Airflow
import error would be the alternative, but import errors belong to a Python file: raising one
from the loader would hide every pipeline in the folder, and a dag_id that disappears loses its
place (and run history) in the UI.

When a worker starts a task, Airflow's parsing context names the DAG, and only that spec is read.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from airflow.sdk import DAG, Param, get_parsing_context
from airflow.sdk.definitions.param import ParamsDict

from airflow_mlpipe.operators.component import ComponentOperator
from airflow_mlpipe.operators.record import ExecutionRecordOperator
from airflow_mlpipe.operators.sweep import add_sweep_tasks
from airflow_mlpipe.pipeline_run import CACHE_PARAM, OVERRIDES_PARAM, PipelineRef
from airflow_mlpipe.record import RECORD_TASK_ID
from airflow_mlpipe.resolver import Component, resolve_component
from airflow_mlpipe.runtimes import task_arguments as runtime_task_arguments
from airflow_mlpipe.runtimes.kubernetes import RuntimeUnavailable
from airflow_mlpipe.schedules import ScheduleError, dag_schedule, pipeline_asset
from airflow_mlpipe.spec import (
    TASK_SETTINGS,
    Location,
    Pipeline,
    PipelineStage,
    Problem,
    SpecError,
    load_folder,
    stage_overridable,
)
from airflow_mlpipe.spec.spec_cache import open_spec_cache

log = logging.getLogger(__name__)

DEFAULT_START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)
MLPIPE_TAG = "mlpipe"
INVALID_TAG = "mlpipe:invalid-spec"


def build_dags(spec_folder: str | os.PathLike[str], environment: str | None = None) -> dict[str, DAG]:
    """A DAG for every spec under ``spec_folder``, keyed by dag_id (a placeholder for broken ones)."""
    from airflow_mlpipe import settings

    only = get_parsing_context().dag_id
    # Read [mlpipe] component_modules once per parse, not twice per stage (an Airflow config lookup).
    prefixes = settings.component_modules()
    cache_dir = settings.spec_cache_dir()
    result = load_folder(
        spec_folder,
        environment,
        only=only,
        component_modules=prefixes,
        ignore_file_syntax=settings.dag_ignore_file_syntax(),
        cache=open_spec_cache(cache_dir) if cache_dir else None,
    )
    dags: dict[str, DAG] = {}
    errors = dict(result.errors)
    for name, pipeline in result.pipelines.items():
        try:
            dags[name] = build_dag(pipeline, prefixes)
        except ScheduleError as exc:  # an asset URI that only Airflow's normaliser refuses
            where = Location(pipeline.sources[0], 1, 1) if pipeline.sources else None
            errors[name] = SpecError([Problem(str(exc), where, "metadata.schedule.assets")])
        except RuntimeUnavailable as exc:  # e.g. an executor this deployment does not configure
            errors[name] = _runtime_error(pipeline, exc)
    for name, error in errors.items():
        log.error("Invalid pipeline spec '%s':\n%s", name, error.format())
        placeholder = build_placeholder_dag(name, error)
        dags[placeholder.dag_id] = placeholder
    return dags


def build_dag(pipeline: Pipeline, component_modules: tuple[str, ...] | None = None) -> DAG:
    """The DAG for one validated pipeline."""
    metadata = pipeline.metadata
    components = {
        stage.name: resolve_component(stage.component, component_modules) for stage in pipeline.stages
    }
    overridable = {stage.name: stage_overridable(stage, components[stage.name]) for stage in pipeline.stages}
    ref = PipelineRef(
        name=pipeline.name,
        version=pipeline.version,
        config_version=pipeline.config_version,
        environment=pipeline.environment,
        sources=pipeline.sources,
        overridable=MappingProxyType(overridable),
        side_effects=frozenset(
            name for name, component in components.items() if component.cache_policy == "never"
        ),
        swept=MappingProxyType(
            {stage.name: stage.sweep.swept_fields() for stage in pipeline.stages if stage.sweep is not None}
        ),
    )
    dag = DAG(
        dag_id=pipeline.name,
        schedule=dag_schedule(metadata.schedule),
        start_date=_start_date(metadata.start_date),
        catchup=metadata.catchup,
        description=metadata.description or None,
        tags=sorted({*metadata.tags, MLPIPE_TAG, f"v{pipeline.version}"}),
        doc_md=_doc_md(pipeline),
        default_args={"owner": metadata.owner},
    )
    task_settings = set(TASK_SETTINGS)
    default_settings = pipeline.defaults.model_dump(include=task_settings, exclude_none=True)
    with dag:
        tasks = {}
        first_tasks = {}  # a swept stage starts with its plan task; a plain stage is one task
        for stage in pipeline.stages:
            settings = default_settings | stage.model_dump(include=task_settings, exclude_none=True)
            if stage.sweep is not None:
                first_tasks[stage.name], tasks[stage.name] = add_sweep_tasks(
                    stage=stage.name,
                    component=stage.component,
                    config=stage.config,
                    sweep=stage.sweep,
                    dependencies=stage.dependencies,
                    pipeline=ref,
                    cache=_cache_enabled(stage, pipeline, components[stage.name]),
                    cache_ttl=_setting(stage, pipeline, "cache_ttl"),
                    outlets=_outlets(components[stage.name], stage.config, pipeline.name),
                    # Each variant runs where the stage's runtime says; the plan and the selection here.
                    task_settings=settings | runtime_task_arguments(stage.runtime),
                )
                continue
            tasks[stage.name] = first_tasks[stage.name] = ComponentOperator(
                task_id=stage.name,
                component=stage.component,
                config=stage.config,
                pipeline=ref,
                cache=_cache_enabled(stage, pipeline, components[stage.name]),
                cache_ttl=_setting(stage, pipeline, "cache_ttl"),
                outlets=_outlets(components[stage.name], stage.config, pipeline.name),
                doc_md=f"Component `{stage.component}`",
                **settings,
                **runtime_task_arguments(stage.runtime),
            )
        record = ExecutionRecordOperator(
            task_id=RECORD_TASK_ID,
            pipeline=ref,
            notify_on_failure=list(metadata.notify_on_failure),
            # Updated only by a successful run: the record task fails when a stage did not complete.
            outlets=[pipeline_asset(pipeline.name)],
        )
        # One set_upstream per task with all its upstreams: Airflow hashes the DAG once per task
        # in each call, and an edge at a time hashed it twice per edge.
        for stage in pipeline.stages:
            # A gated stage waits for its approval task, which waits for the stage's dependencies.
            gate = _approval_gate(stage, ref) if stage.approval and stage.approval.required else None
            upstream = [tasks[dependency] for dependency in stage.dependencies]
            if upstream:
                (gate or first_tasks[stage.name]).set_upstream(upstream)
            if gate is not None:
                first_tasks[stage.name].set_upstream(gate)
        record.set_upstream(list(tasks.values()))
    # The params go on the DAG after its tasks are built. Airflow deep-copies a DAG's params into
    # every task created inside it, once per operator class in the task's hierarchy: the largest
    # single cost of building a DAG (a fifth of the parse). The copies add nothing here: no task
    # has params of its own, at run time Airflow merges the DAG's params into every task's
    # context (``process_params``), and the trigger form reads the DAG's. Assigning them still
    # runs the DAG's converter and its check of the defaults against the schemas.
    dag.params = ParamsDict(_dag_params(overridable))
    return dag


def _dag_params(overridable: dict[str, frozenset[str]]) -> dict[str, Param]:
    """The trigger form's fields: the per-stage config overrides and the stage cache switch."""
    return {
        OVERRIDES_PARAM: Param(
            {},
            type="object",
            title="Config overrides",
            description=_overrides_description(overridable),
        ),
        CACHE_PARAM: Param(
            True,
            type="boolean",
            title="Use the stage cache",
            description="Off: every stage runs again instead of reusing the outputs of an "
            "identical earlier stage run",
        ),
    }


def _approval_gate(stage: PipelineStage, ref: PipelineRef) -> Any:
    """The human approval task in front of ``stage`` (imported only by pipelines that have one)."""
    from airflow_mlpipe.approvals import approval_task_id
    from airflow_mlpipe.operators.approval import StageApprovalOperator

    assert stage.approval is not None
    return StageApprovalOperator(
        task_id=approval_task_id(stage.name),
        stage=stage.name,
        component=stage.component,
        pipeline=ref,
        upstream_stages=stage.dependencies,
        response_timeout=stage.approval.timeout,
        doc_md=f"Approval of stage `{stage.name}` before it runs",
    )


def build_placeholder_dag(name: str, error: SpecError) -> DAG:
    """A DAG that shows a broken spec's problems in the UI and fails if anyone triggers it."""
    from airflow.providers.standard.operators.python import PythonOperator

    dag_id = _dag_id_for(name)
    first = error.problems[0].format().splitlines()[0] if error.problems else "invalid spec"
    dag = DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=DEFAULT_START_DATE,
        catchup=False,
        description=f"INVALID SPEC: {first}"[:500],
        tags=[MLPIPE_TAG, INVALID_TAG],
        doc_md=(
            "## This pipeline spec is invalid\n\nThe pipeline will not run until the spec is fixed. "
            "Run `mlpipe validate` on it locally.\n\n```\n" + error.format() + "\n```\n"
        ),
        is_paused_upon_creation=True,
    )
    with dag:
        PythonOperator(task_id="invalid_spec", python_callable=_fail_invalid_spec, op_args=[error.format()])
    return dag


def _runtime_error(pipeline: Pipeline, exc: RuntimeUnavailable) -> SpecError:
    """A spec whose ``runtime`` this deployment cannot give, as the problem of its placeholder DAG."""
    from airflow_mlpipe.spec import Location, Problem

    location = Location(pipeline.sources[0] if pipeline.sources else pipeline.name, 1, 1)
    return SpecError([Problem(str(exc), location, "runtime", "see the section on runtimes in the README")])


def _fail_invalid_spec(message: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(f"the pipeline spec is invalid:\n{message}")


def _dag_id_for(name: str) -> str:
    """The spec's name when it is a valid dag_id, else a safe id derived from the file name."""
    return (
        name
        if re.fullmatch(r"[A-Za-z0-9_.-]{1,250}", name)
        else re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:250] or "_"
    )


def _start_date(value: Any) -> datetime:
    if value is None:
        return DEFAULT_START_DATE
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)


def _setting(stage: PipelineStage, pipeline: Pipeline, name: str) -> Any:
    """A stage setting from the stage, else from the spec's ``defaults``, else ``None``."""
    value = getattr(stage, name, None)
    return value if value is not None else getattr(pipeline.defaults, name, None)


def _cache_enabled(stage: PipelineStage, pipeline: Pipeline, component: Component) -> bool:
    """The spec's ``cache`` (stage, then ``defaults``), else the component's policy."""
    if component.cache_policy == "never":
        return False
    chosen = _setting(stage, pipeline, "cache")
    return bool(chosen) if chosen is not None else component.cache_policy == "on"


def _overrides_description(overridable: dict[str, frozenset[str]]) -> str:
    """The trigger form's help for ``overrides``: which fields of which stage a trigger may change."""
    allowed = {stage: sorted(fields) for stage, fields in overridable.items() if fields}
    if not allowed:
        return "This pipeline allows no trigger-time config overrides."
    stage, fields = next(iter(allowed.items()))
    example = json.dumps({stage: {fields[0]: "..."}})
    listing = "; ".join(f"{stage}: {', '.join(fields)}" for stage, fields in allowed.items())
    return f"Per-stage config overrides for this run, e.g. {example}. Overridable fields: {listing}"


def _outlets(component: Component, config: dict[str, Any], pipeline: str) -> list[Any]:
    if getattr(component.module, "assets", None) is None:
        return []  # no assets hook: nothing to declare, and the loader already validated the config
    try:
        validated = component.config_model.model_validate(config)
    except Exception:
        return []  # templated values: the config is validated again at run time
    return component.assets(validated, pipeline)


def _doc_md(pipeline: Pipeline) -> str:
    rendered = _resolved_spec_json(pipeline.to_execution_format())
    description = pipeline.metadata.description
    return (
        f"{description}\n\n"
        f"* version: `{pipeline.version}`\n* environment: `{pipeline.environment}`\n"
        f"* config version: `{pipeline.config_version}`\n"
        f"* spec: {', '.join(f'`{os.path.basename(s)}`' for s in pipeline.sources)}\n\n"
        f"### Resolved spec\n\n```json\n{rendered}\n```\n"
    )


def _resolved_spec_json(rendered: dict[str, Any]) -> str:
    """The rendered spec as JSON with a line per field and per stage.

    Written by hand because ``json.dumps`` with ``indent`` falls back to its pure-Python encoder,
    which made the doc_md a tenth of the factory's parse time.
    """
    fields = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in rendered.items() if k != "stages"]
    stages = ",\n".join(f"    {json.dumps(stage)}" for stage in rendered["stages"])
    return "{\n" + ",\n".join([*fields, f'  "stages": [\n{stages}\n  ]']) + "\n}"
