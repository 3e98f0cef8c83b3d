"""What the page shows about a pipeline, read from its serialized DAG (never from its spec file).

The api-server must not parse spec YAML: a hostile spec could take its process down, and with it
the UI and the REST API. The dag-processor already parsed every spec of every loader file and
stored the result in Airflow's metadata database; this module reads that. The factory gives each
pipeline's DAG

* the tags ``mlpipe`` and ``v<version>`` (a placeholder DAG for a broken spec: ``mlpipe`` and
  ``mlpipe:invalid-spec``, with the problems in a fenced block of its ``doc_md``);
* a ``doc_md`` ending with a fenced JSON block after ``### Resolved spec``: the rendered spec
  (``pipeline``, ``version``, ``environment``, ``config_version``, ``metadata``, ``stages``
  with each stage's ``component``, ``config`` and ``upstream``).

:func:`snapshot` takes what is needed from a deserialized DAG; :func:`summary` turns that into
the page's summary. Both are pure: no database, no files, no network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: The factory's tags (``airflow_mlpipe.factory.MLPIPE_TAG`` / ``INVALID_TAG``), repeated here so
#: that the api-server does not import the factory (and with it the spec reader).
MLPIPE_TAG = "mlpipe"
INVALID_TAG = "mlpipe:invalid-spec"
COMPONENT_OPERATOR = "ComponentOperator"
REGISTRY_COMPONENT = "registry.register_model"
DEFAULT_ALIAS = "production"
#: A doc_md larger than this is not searched for the resolved spec (the factory writes ~10 KB).
MAX_DOC_BYTES = 2 * 1024 * 1024

_RESOLVED = re.compile(r"^### Resolved spec\s*\n+```json\n(?P<json>.*?)\n```", re.MULTILINE | re.DOTALL)
_FENCED = re.compile(r"^```\n(?P<text>.*?)\n```", re.MULTILINE | re.DOTALL)
_TASK_COMPONENT = re.compile(r"^Component `(?P<name>[^`]+)`")
_VERSION_TAG = re.compile(r"^v(?P<version>\d+\.\d+\.\d+\S*)$")


@dataclass(frozen=True)
class TaskSnapshot:
    task_id: str
    task_type: str
    doc_md: str | None = None
    config: Any = None
    upstream: tuple[str, ...] = ()


@dataclass(frozen=True)
class DagSnapshot:
    """What the summary needs from one serialized DAG."""

    dag_id: str
    tags: frozenset[str]
    description: str | None = None
    doc_md: str | None = None
    owner: str | None = None
    schedule: str | None = None
    tasks: tuple[TaskSnapshot, ...] = field(default_factory=tuple)


def snapshot(dag: Any) -> DagSnapshot:
    """The parts of a deserialized DAG (``SerializedDAG``) the summary reads."""
    tasks = tuple(
        TaskSnapshot(
            task_id=task.task_id,
            task_type=str(getattr(task, "task_type", "") or ""),
            doc_md=getattr(task, "doc_md", None),
            config=getattr(task, "config", None),
            upstream=tuple(sorted(getattr(task, "upstream_task_ids", ()) or ())),
        )
        for task in dag.tasks
    )
    timetable = getattr(dag, "timetable", None)
    return DagSnapshot(
        dag_id=dag.dag_id,
        tags=frozenset(str(tag) for tag in (dag.tags or ())),
        description=dag.description,
        doc_md=dag.doc_md,
        owner=getattr(dag, "owner", None),
        schedule=getattr(timetable, "summary", None),
        tasks=tasks,
    )


class _Metadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    owner: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    schedule: str | dict[str, Any] | None = None  # a mapping: a schedule on data (after, assets)
    notify_on_failure: list[str] = Field(default_factory=list)


class _Stage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    component: str
    config: dict[str, Any] = Field(default_factory=dict)
    upstream: list[str] = Field(default_factory=list)


class _ResolvedSpec(BaseModel):
    """The resolved spec the factory writes into a pipeline DAG's ``doc_md``."""

    model_config = ConfigDict(extra="ignore")

    pipeline: str
    version: str
    environment: str
    config_version: str
    metadata: _Metadata
    stages: list[_Stage]


def resolved_spec(doc_md: str | None) -> _ResolvedSpec | None:
    """The resolved spec in a pipeline DAG's docs; None if there is none (or it is malformed)."""
    if not doc_md or len(doc_md) > MAX_DOC_BYTES:
        return None
    match = _RESOLVED.search(doc_md)
    if match is None:
        return None
    try:
        return _ResolvedSpec.model_validate(json.loads(match["json"]))
    except (ValueError, RecursionError, ValidationError):
        return None


def problems(doc_md: str | None) -> list[str]:
    """A placeholder DAG's problems: one entry per problem, its ``hint:`` lines included."""
    match = _FENCED.search(doc_md or "")
    if match is None:
        return ["the spec is invalid (its DAG does not say why; run `mlpipe validate` on it)"]
    found: list[str] = []
    for line in match["text"].splitlines():
        if found and (line.startswith((" ", "\t")) or not line.strip()):
            found[-1] += f"\n{line}"  # a problem's hint, or a multi-line message
        else:
            found.append(line)
    return [problem.rstrip() for problem in found]


def summary(dag: DagSnapshot) -> dict[str, Any]:
    """The page's summary of a pipeline: spec, schedule, owners, thresholds, registries."""
    if INVALID_TAG in dag.tags:
        return {**_empty(dag.dag_id), "description": "", "problems": problems(dag.doc_md)}
    spec = resolved_spec(dag.doc_md)
    if spec is None:
        return _from_tasks(dag)
    stages = [(stage.name, stage.component, stage.config, stage.upstream) for stage in spec.stages]
    return {
        "name": dag.dag_id,
        "valid": True,
        "version": spec.version,
        "config_version": spec.config_version,
        "environment": spec.environment,
        "schedule": _schedule_text(spec.metadata.schedule),
        "owners": [spec.metadata.owner],
        "description": spec.metadata.description,
        "tags": list(spec.metadata.tags),
        "notify_on_failure": list(spec.metadata.notify_on_failure),
        **_stage_facts(dag.dag_id, stages),
        "problems": [],
    }


def _schedule_text(schedule: str | dict[str, Any] | None) -> str | None:
    """A schedule on data in one line: ``after user_engagement_features & s3://bucket/x``."""
    if not isinstance(schedule, dict):
        return schedule
    joiner = " | " if schedule.get("any") else " & "
    return "after " + joiner.join([*schedule.get("after", ()), *schedule.get("assets", ())])


def unreadable_summary(name: str, reason: str) -> dict[str, Any]:
    """The summary of a DAG whose serialized form could not be read."""
    problem = f"the api-server could not read this DAG's serialized form: {reason}"
    return {**_empty(name), "problems": [problem]}


def _from_tasks(dag: DagSnapshot) -> dict[str, Any]:
    """A summary from the DAG's structure alone, for a DAG whose docs hold no resolved spec."""
    stages = []
    for task in dag.tasks:
        found = _TASK_COMPONENT.match(task.doc_md or "") if task.task_type == COMPONENT_OPERATOR else None
        if found:
            config = task.config if isinstance(task.config, Mapping) else {}
            stages.append((task.task_id, found["name"], dict(config), list(task.upstream)))
    versions = [m["version"] for m in map(_VERSION_TAG.match, sorted(dag.tags)) if m]
    return {
        **_empty(dag.dag_id),
        "version": versions[0] if versions else None,
        "schedule": dag.schedule,
        "owners": [owner.strip() for owner in (dag.owner or "").split(",") if owner.strip()],
        "description": dag.description or "",
        "tags": sorted(tag for tag in dag.tags if tag != MLPIPE_TAG and not _VERSION_TAG.match(tag)),
        **_stage_facts(dag.dag_id, stages),
        "problems": [
            "the DAG's docs hold no resolved spec (a DAG built by another airflow-mlpipe version?): "
            "config version and environment are unknown"
        ],
        "valid": True,
    }


def _empty(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "valid": False,
        "version": None,
        "config_version": None,
        "environment": None,
        "schedule": None,
        "owners": [],
        "description": "",
        "tags": [],
        "notify_on_failure": [],
        "stages": [],
        "thresholds": {},
        "registries": [],
        "problems": [],
    }


def _stage_facts(
    pipeline: str, stages: Sequence[tuple[str, str, Mapping[str, Any], Sequence[str]]]
) -> dict[str, Any]:
    return {
        "stages": [
            {"name": name, "component": component, "dependencies": list(upstream)}
            for name, component, _, upstream in stages
        ],
        "thresholds": thresholds(config for _, _, config, _ in stages),
        "registries": registry_locations(
            pipeline, [(name, config) for name, kind, config, _ in stages if kind == REGISTRY_COMPONENT]
        ),
    }


def thresholds(configs: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Metric thresholds written in the spec (``thresholds`` of any stage's config, e.g. evaluate)."""
    found: dict[str, float] = {}
    for config in configs:
        values = config.get("thresholds")
        if isinstance(values, Mapping):
            found.update(
                {
                    str(name): float(value)
                    for name, value in values.items()
                    if isinstance(value, int | float) and not isinstance(value, bool)
                }
            )
    return found


def registry_locations(
    pipeline: str, stages: Sequence[tuple[str, Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Where the pipeline's register stages put models, as their configs say (deduplicated).

    Each: ``stage``, ``registry`` (a URI; an absolute path means ``file://``), ``conn_id``,
    ``model_name`` (default: the pipeline's name), ``alias`` and ``uri`` (the model's folder).
    A value that is a Jinja template is rendered only at run time: ``templated`` is then true
    and the location cannot be read from here.
    """
    locations: dict[tuple[Any, ...], dict[str, Any]] = {}
    for stage, config in stages:
        registry = config.get("registry")
        if not isinstance(registry, str) or not registry.strip():
            continue
        registry = registry.strip()
        registry = f"file://{registry}" if registry.startswith("/") else registry
        mlflow_name = (
            registry[len("mlflow://") :].strip("/") if registry.lower().startswith("mlflow://") else ""
        )
        model_name = mlflow_name or config.get("model_name") or pipeline
        alias = config.get("alias") or DEFAULT_ALIAS
        conn_id = config.get("conn_id") or None
        values = [registry, model_name, alias, conn_id]
        location = {
            "stage": stage,
            "registry": registry,
            "conn_id": conn_id,
            "model_name": model_name,
            "alias": alias,
            # An MLflow registered model is named, not a folder (the register stage's Asset URI).
            "uri": f"mlflow://{model_name}"
            if mlflow_name or registry.lower().startswith("mlflow://")
            else f"{registry.rstrip('/')}/{model_name}",
            "templated": any(_is_template(value) for value in values),
        }
        locations.setdefault((location["uri"], conn_id, alias), location)
    return list(locations.values())


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and any(marker in value for marker in ("{{", "{%", "{#"))
