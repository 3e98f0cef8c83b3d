"""The pipeline spec: typed pydantic models for what a team writes in ``NAME.yaml``.

The models check everything a single value can get wrong (types, names, cron, e-mail, semantic
version, durations). Checks that need the whole spec or the outside world (stage graph, component
resolution, file names) live in :mod:`airflow_mlpipe.spec.checks`, where locations are at hand.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)

from airflow_mlpipe.spec.errors import Problem
from airflow_mlpipe.spec.runtime import StageRuntime
from airflow_mlpipe.spec.sweeps import Sweep

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,199}$"
COMPONENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
# semver.org's recommended expression.
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# Airflow's schedule presets (airflow.sdk.definitions.timetables._cron.CRON_PRESETS plus the two
# special schedules); kept here so validating a spec does not import Airflow.
SCHEDULE_PRESETS = (
    "@once",
    "@continuous",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
)

try:
    from yaml import CSafeDumper as _SafeDumper
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeDumper as _SafeDumper  # type: ignore[assignment]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _parse_duration(value: Any) -> Any:
    """Accept seconds (``300``) or a compact string (``90s``, ``5m``, ``1h30m``, ``2d``)."""
    try:
        return _duration(value)
    except OverflowError:  # .inf, or more days than timedelta holds
        raise ValueError(f"'{value}' is too long for a duration") from None


def _duration(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5m'")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text and _DURATION_PART.sub("", text) == "":
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
            return timedelta(seconds=seconds)
        if text.startswith("P"):  # ISO 8601 (what to_yaml writes); pydantic parses it
            return text
        raise ValueError(
            f"'{value}' is not a duration; write seconds (300) or e.g. '90s', '5m', '1h30m', '2d'"
        )
    return value


def _check_positive(value: timedelta) -> timedelta:
    if value.total_seconds() <= 0:
        raise ValueError("a duration must be longer than zero")
    return value


def _check_schedule(value: str) -> str:
    if value.startswith("@"):
        if value not in SCHEDULE_PRESETS:
            raise ValueError(f"'{value}' is not an Airflow schedule preset ({', '.join(SCHEDULE_PRESETS)})")
        return value
    from croniter import croniter  # only specs with a cron schedule pay for the import

    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(
            f"'{value}' is not a valid cron expression; use five fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 3 * * *', or a preset like @daily"
        )
    return value


def _check_semver(value: str) -> str:
    if not re.match(SEMVER_PATTERN, value):
        hint = " (drop the leading 'v')" if re.match(SEMVER_PATTERN, value.lstrip("vV")) else ""
        raise ValueError(f"'{value}' is not a semantic version like 1.4.0{hint}")
    return value


def _require_string(value: Any) -> Any:
    # YAML reads `version: 1.0` as a float; say so instead of silently turning it into "1.0".
    if not isinstance(value, str):
        raise ValueError(
            f'expected a quoted string, got {type(value).__name__} {value!r}; quote it: "{value}"'
        )
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    AfterValidator(_check_positive),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
                {
                    "type": "string",
                    "pattern": r"^(\s*\d+(\.\d+)?\s*[dhms])+\s*$",
                    "examples": ["5m", "1h30m"],
                },
            ]
        }
    ),
]
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="lowercase letters, digits and underscores")]
SemVer = Annotated[
    str,
    BeforeValidator(_require_string),
    AfterValidator(_check_semver),
    WithJsonSchema({"type": "string", "pattern": SEMVER_PATTERN, "examples": ["1.0.0"]}),
]
Schedule = Annotated[
    str,
    AfterValidator(_check_schedule),
    Field(description="a cron expression ('0 3 * * *') or an Airflow preset (@daily)"),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_unique(values: list[str]) -> list[str]:
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {', '.join(repeated)}")
    return values


def _check_asset_uri(value: str) -> str:
    # Airflow's own rules for an Asset URI (airflow.sdk.definitions.asset), checked here so that a
    # bad URI is a located spec error instead of a failed DAG parse.
    if not value.strip():
        raise ValueError("an asset URI cannot be empty")
    if len(value) > 1500:
        raise ValueError("an asset URI cannot exceed 1500 characters")
    scheme, separator, rest = value.partition("://")
    if separator and scheme.lower() == "airflow":
        raise ValueError("the asset scheme 'airflow' is reserved by Airflow")
    if separator and ":" in rest.split("/", 1)[0].rpartition("@")[0]:
        raise ValueError("an asset URI must not contain a password")
    return value


AssetUri = Annotated[
    str,
    AfterValidator(_check_asset_uri),
    Field(description="an Airflow Asset URI, e.g. s3://bucket/path", examples=["s3://bucket/path"]),
]


class AssetSchedule(_Model):
    """A schedule on data: run when other pipelines succeed, or when Airflow Assets are updated.

    ``after`` names pipelines of the same folder: each pipeline's ``execution_record`` task emits
    the Asset ``x-mlpipe://pipelines/<name>`` when a run of it succeeds.
    """

    after: Annotated[list[Name], AfterValidator(_check_unique)] = Field(
        default_factory=list, description="pipelines whose successful runs start this one"
    )
    assets: Annotated[list[AssetUri], AfterValidator(_check_unique)] = Field(
        default_factory=list, description="Airflow Asset URIs whose updates start this one"
    )
    any: bool = Field(
        False, description="run when any of them is updated; default: once all of them have been"
    )

    @model_validator(mode="after")
    def _something_to_wait_for(self) -> AssetSchedule:
        if not self.after and not self.assets:
            raise ValueError(
                "a schedule mapping needs 'after' (pipeline names) or 'assets' (asset URIs), "
                "e.g. {after: [user_engagement_features]}"
            )
        return self


def _schedule_value(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # A mapping is validated as an AssetSchedule on its own, so that its errors point at its keys
    # (a plain union would add an error of the string member for every mistake in the mapping).
    if isinstance(value, dict):
        return AssetSchedule.model_validate(value)
    if value is not None and not isinstance(value, str):
        raise ValueError(
            "a schedule is a cron string, an Airflow preset, null, or a mapping with 'after' or 'assets'"
        )
    return handler(value)


class StageSettings(_Model):
    """Task settings a stage may set, and ``defaults`` may set for all stages.

    Left out, Airflow's own defaults apply (``[core] default_task_retries``, 5 minutes delay).
    """

    retries: int | None = Field(None, ge=0, description="how often Airflow retries the stage")
    retry_delay: Duration | None = Field(None, description="wait between retries, e.g. '5m'")
    execution_timeout: Duration | None = Field(None, description="fail the stage after this long")
    pool: str | None = Field(None, description="Airflow pool the stage runs in")
    queue: str | None = Field(None, description="executor queue (Celery) the stage runs on")
    cache: bool | None = Field(
        None,
        description="reuse the outputs of an identical earlier stage run (same component code, "
        "config and input contents); default: the component's choice",
    )
    cache_ttl: Duration | None = Field(None, description="how old a cached output may be, e.g. '30d'")


#: The StageSettings that are Airflow task arguments (``cache`` and ``cache_ttl`` are ours).
TASK_SETTINGS = ("retries", "retry_delay", "execution_timeout", "pool", "queue")


class Metadata(_Model):
    """Who owns the pipeline, when it runs and whom to tell when it fails."""

    owner: str = Field(min_length=1, description="team or person; shown as the DAG owner")
    description: str = Field("", description="one line on what the pipeline does")
    tags: list[str] = Field(default_factory=list, description="extra tags for the Airflow UI")
    schedule: Annotated[Schedule | AssetSchedule | None, WrapValidator(_schedule_value)] = Field(
        None,
        description="cron, an Airflow preset, null for manual runs, or {after: [pipelines]} / "
        "{assets: [URIs], any: false} to run on data",
    )
    notify_on_failure: list[EmailStr] = Field(
        default_factory=list, description="addresses that get one e-mail per failed run"
    )
    start_date: date | datetime | None = Field(
        None, description="first date the schedule covers (UTC); defaults to 2024-01-01"
    )
    catchup: bool = Field(False, description="create runs for missed intervals since start_date")


class StageApproval(_Model):
    """A human approval gate before a stage (Airflow's human-in-the-loop ApprovalOperator)."""

    required: bool = Field(True, description="false turns the gate off (e.g. in a dev overlay)")
    timeout: Duration | None = Field(
        None, description="how long to wait for an answer, e.g. '3d'; no answer in time rejects"
    )


class PipelineStage(StageSettings):
    """One step of the pipeline: a component, its config and the stages it waits for."""

    name: Name
    component: str = Field(pattern=COMPONENT_PATTERN, description="e.g. data.extract.database")
    config: dict[str, Any] = Field(default_factory=dict, description="checked by the component's Config")
    dependencies: list[str] = Field(default_factory=list, description="names of stages this one waits for")
    overridable: list[str] | None = Field(
        None,
        description="config fields a trigger may override for this stage; replaces the component's "
        "own choice (its Config fields marked overridable); [] allows none",
    )
    sweep: Sweep | None = Field(
        None,
        description="run the stage once per variant of its config (a mapped task each) and pass on "
        "the outputs of the variant with the best value of a metric",
    )
    approval: StageApproval | None = Field(
        None, description="wait for a person to approve the stage before it runs"
    )
    runtime: StageRuntime | None = Field(
        None, description="where the component runs: a Kubernetes pod, another Python interpreter"
    )


class Pipeline(_Model):
    """A whole pipeline spec, as written in ``NAME.yaml`` with its overlay applied."""

    name: Name = Field(description="becomes the dag_id; the file must be called NAME.yaml")
    version: SemVer = Field(description="semantic version of the pipeline definition")
    metadata: Metadata
    defaults: StageSettings = Field(StageSettings(), description="settings for every stage")
    stages: list[PipelineStage] = Field(
        min_length=1, description="the pipeline's stages, at least one, each with a name and a component"
    )

    _environment: str = PrivateAttr(default="dev")
    _sources: tuple[str, ...] = PrivateAttr(default=())
    _warnings: tuple[Problem, ...] = PrivateAttr(default=())

    @property
    def environment(self) -> str:
        """The environment whose overlay was applied."""
        return self._environment

    @property
    def sources(self) -> tuple[str, ...]:
        """The files the spec was read from: the base, then the overlay if there was one."""
        return self._sources

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """What validation warned about (never an error: the pipeline loaded)."""
        return self._warnings

    @cached_property  # the model is frozen; the factory asks twice per pipeline, at every parse
    def config_version(self) -> str:
        """Short hash of the fully resolved spec: same values, same hash, whatever the formatting."""
        data = self.model_dump(mode="json")
        for stage in data["stages"]:
            for optional in ("overridable", "sweep", "approval", "runtime"):
                if stage[optional] is None:
                    # Left out, as before the field existed: a spec that does not use it keeps its hash.
                    del stage[optional]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def bind(
        self, environment: str, sources: tuple[str, ...] = (), warnings: tuple[Problem, ...] = ()
    ) -> Pipeline:
        """A copy that knows its environment, source files and warnings (set by the loader)."""
        pipeline = self.model_copy()
        pipeline._environment = environment
        pipeline._sources = sources
        pipeline._warnings = warnings
        return pipeline

    def stage(self, name: str) -> PipelineStage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def to_execution_format(self) -> dict[str, Any]:
        """The execution format (what the seed called ``render()``, plus what execution needs).

        JSON-safe; config values are as written, their Jinja templates not rendered.
        """
        data = self.model_dump(mode="json", include={"metadata", "stages"})
        return {
            "pipeline": self.name,
            "version": self.version,
            "environment": self.environment,
            "config_version": self.config_version,
            "metadata": data["metadata"],
            "stages": [
                {
                    "name": stage["name"],
                    "component": stage["component"],
                    "config": stage["config"],
                    "upstream": stage["dependencies"],
                    **({"sweep": stage["sweep"]} if stage["sweep"] is not None else {}),
                }
                for stage in data["stages"]
            ],
        }

    def to_yaml(self) -> str:
        """The spec as YAML, without values left at their defaults; reads back to an equal model."""
        # Python mode keeps dates and datetimes (in start_date and in stage configs) YAML
        # timestamps; JSON mode would turn them into strings, and a midnight datetime would read
        # back as a date. Only durations need a text form.
        data = self.model_dump(mode="python", exclude_defaults=True)
        return yaml.dump(data, Dumper=_SpecDumper, sort_keys=False, allow_unicode=True)


class _SpecDumper(_SafeDumper):
    """Safe YAML, plus durations as ISO 8601 (which :data:`Duration` reads back).

    libyaml's emitter (like the reader's parser): PyYAML's own emitter writes a NEL (U+0085)
    unescaped inside quotes, where it reads back as a line break.
    """


_SpecDumper.add_representer(
    timedelta,
    lambda dumper, value: dumper.represent_str(TypeAdapter(timedelta).dump_python(value, mode="json")),
)
