"""What the tasks of a pipeline run share: the pipeline they belong to and the run's conf.

The factory builds tasks with these, and both operators (the stages' ``ComponentOperator`` and
the ``ExecutionRecordOperator``) read them; neither operator imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_mlpipe.contract import StageOutputs
from airflow_mlpipe.spec.sweeps import SWEEP_OVERRIDE_KEY, sweep_override_problems
from airflow_mlpipe.spec.sweeps import deep_merge as deep_merge  # where the operators and the CLI find it

#: The run conf key (and DAG param) holding trigger-time config overrides per stage.
OVERRIDES_PARAM = "overrides"
#: The run conf key (and DAG param): ``false`` recomputes every stage instead of using the cache.
CACHE_PARAM = "cache"
#: The run conf key naming the run a replay reproduces (``mlpipe replay`` sets it).
REPLAY_PARAM = "replay_of"
#: The XCom key under which a failed stage leaves its error for the record and the e-mail.
ERROR_XCOM_KEY = "mlpipe_error"


@dataclass(frozen=True)
class PipelineRef:
    """What a task needs to know about the pipeline it belongs to.

    ``overridable`` maps each stage to the config fields a trigger may change (the component's
    marks, or the stage's ``overridable`` list in the spec); ``side_effects`` names the stages
    whose components are never cached. One instance is shared by every task
    of a DAG, so each task can check a run's overrides for the whole pipeline before it starts.
    """

    name: str
    version: str
    config_version: str
    environment: str
    sources: tuple[str, ...]
    overridable: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    #: Stages whose component must never be cached (side effects: a registry hands out a new
    #: version each time), so a replay is not expected to reproduce their outputs.
    side_effects: frozenset[str] = frozenset()
    #: Swept stages -> the config fields their spec's sweep varies. A trigger may replace only
    #: these stages' sweeps, varying these fields and the stage's overridable ones.
    swept: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self.overridable)


class OverrideError(ValueError):
    """A run's trigger-time overrides that the pipeline does not allow; no stage may run with them."""


class StageResult(BaseModel):
    """A stage task's XCom: its outputs, and where they came from.

    Downstream stages read ``outputs``; the execution record reads all of it.
    """

    model_config = ConfigDict(extra="forbid")

    artifacts: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    digests: dict[str, str] = Field(default_factory=dict, description="artifact name -> content digest")
    fingerprint: str | None = Field(None, description="what this stage run depended on, hashed")
    cached_from: str | None = Field(None, description="on a cache hit: the run that computed the outputs")
    config: dict[str, Any] = Field(default_factory=dict, description="the resolved config (secrets masked)")

    @classmethod
    def from_xcom(cls, value: Any) -> StageResult:
        """A stage's XCom as a result (an empty one when the stage pushed nothing)."""
        return cls.model_validate(value or {})

    @property
    def outputs(self) -> StageOutputs:
        return StageOutputs(self.artifacts, self.metrics, self.digests)


def run_overrides(conf: Mapping[str, Any] | None, pipeline: PipelineRef) -> dict[str, dict[str, Any]]:
    """The run's trigger-time config overrides, per stage, after checking them all.

    A run triggered with ``{"overrides": {"train": {"epochs": 5}}}`` runs ``train`` with
    ``epochs: 5``. A trigger is not authorship: only the fields in ``pipeline.overridable`` may
    change, so that whoever may trigger a DAG cannot, say, point the extract at another database
    or promote a model past its thresholds. Anything else (an unknown stage, a field that is not
    overridable, a value of the wrong shape) raises :class:`OverrideError`, naming the field and
    how a spec author allows it.
    """
    overrides = (conf or {}).get(OVERRIDES_PARAM) or {}
    if not isinstance(overrides, Mapping):
        raise OverrideError(f"'{OVERRIDES_PARAM}' in the run's conf must map stage names to config overrides")
    stages = pipeline.stages
    unknown = sorted(set(overrides) - set(stages))
    if unknown:
        raise OverrideError(f"'{OVERRIDES_PARAM}' names unknown stages {unknown}; stages are {list(stages)}")
    checked: dict[str, dict[str, Any]] = {}
    refused: list[str] = []
    for stage, stage_override in overrides.items():
        if not stage_override:
            continue
        if not isinstance(stage_override, Mapping):
            raise OverrideError(f"'{OVERRIDES_PARAM}.{stage}' must be a mapping of config fields to values")
        allowed = pipeline.overridable.get(stage, frozenset())
        config_override = {k: v for k, v in stage_override.items() if k != SWEEP_OVERRIDE_KEY}
        if stage in pipeline.swept:
            problems = sweep_override_problems(
                stage,
                stage_override.get(SWEEP_OVERRIDE_KEY),
                allowed | pipeline.swept[stage],
                pipeline.swept[stage],
                config_override,
            )
            if problems:
                raise OverrideError("; ".join(problems))
            stage_override = config_override  # the sweep's plan task reads the new grid itself
        refused += [f"{stage}.{name}" for name in stage_override if name not in allowed]
        checked[stage] = dict(stage_override)
    if refused:
        allowed_text = "; ".join(
            f"{stage}: {', '.join(sorted(fields))}"
            for stage, fields in pipeline.overridable.items()
            if fields
        )
        raise OverrideError(
            f"trigger-time overrides may not change {', '.join(refused)}: not overridable "
            f"(overridable fields: {allowed_text or 'none'}). To allow a field, the spec author adds "
            "it to the stage's `overridable: [...]` list in the pipeline spec."
        )
    return checked


def cache_wanted(conf: Mapping[str, Any] | None) -> bool:
    """Whether the run may use cached stage outputs (the trigger's ``{"cache": false}`` says no)."""
    value = (conf or {}).get(CACHE_PARAM, True)
    return value is not False and str(value).lower() not in {"false", "0", "no", "off"}


def resolve_git_commit(context: Mapping[str, Any], sources: Sequence[str]) -> str:
    """The DAG bundle's version when the bundle has one (GitDagBundle), else the spec's repo HEAD."""
    from airflow_mlpipe.git import UNKNOWN, head_commit

    bundle = getattr(context.get("ti"), "bundle_instance", None)
    version = getattr(bundle, "version", None)
    if version:
        return str(version)
    for source in sources:
        commit = head_commit(source)
        if commit:
            return commit
    return UNKNOWN


def error_text(message: str, limit: int = 2000) -> str:
    """A task's error as the record and the e-mail may quote it: secrets masked, length bounded.

    Airflow's secrets masker knows every connection password and sensitive Variable this task
    process fetched (a rendered template included); task logs are masked with it, and the error
    XCom leaves the task the same way.
    """
    from airflow.sdk.log import redact

    return str(redact(message))[:limit]
