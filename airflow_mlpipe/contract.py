"""The component contract: what a component module provides and what it is given.

A component is a Python module with

* ``Config``: a pydantic model for the stage's ``config``;
* ``run(config, context)``: does the work and returns ``{"artifacts": {name: uri},
  "metrics": {name: number}}`` (both optional);
* optionally ``assets(config, pipeline)``: the Airflow Assets the stage updates, declared at parse
  time (cheap, no I/O); ``run`` then sets their event extras through ``context.outlet_events``;
* optionally ``produces`` and ``requires``: the artifacts and metrics it returns and the upstream
  artifacts it reads (:class:`Produces`, :class:`Requires`, or a function of the validated config
  returning one), so that ``mlpipe validate`` can check how stages are wired and a stage that
  returns less than it declared fails;
* optionally ``extra``: the :class:`Extra` whose packages ``run`` imports, so that ``validate``
  can say what to install when they are missing;
* optionally ``cache``: ``"on"`` (deterministic: its stages are cached unless the spec turns it
  off), ``"off"`` (the default: cached only where the spec says ``cache: true``) or ``"never"``
  (side effects or external data: never cached, whatever the spec says).

:class:`ComponentModule` states this as a ``typing.Protocol``: ``mod: ComponentModule = mod``
lets mypy check a module against it. Component modules are imported while validating specs (to
read ``Config``), so they keep heavy imports (numpy, ML libraries) inside ``run``.

Nothing here imports Airflow: the spec layer and ``mlpipe validate`` use this module too.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

_OUTPUT_KEYS = ("artifacts", "metrics")


class _OutputsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifacts: dict[str, str] = Field(default_factory=dict, description="artifact name -> URI")
    metrics: dict[str, float] = Field(default_factory=dict, description="metric name -> value")
    digests: dict[str, str] = Field(default_factory=dict, description="artifact name -> content digest")


class ReadOnlyDict(dict[str, Any]):
    """A dict that refuses changes, so it still serializes as JSON (``MappingProxyType`` does not)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("stage outputs are read-only; copy them with dict(...) to change them")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse


class StageOutputs(Mapping[str, Mapping[str, Any]]):
    """What a stage returned: ``artifacts`` (name -> URI) and ``metrics`` (name -> number).

    Read-only, and shaped like the dict ``run`` returns: ``outputs["artifacts"]["model"]`` and
    ``outputs.artifacts["model"]`` are the same value. ``digests`` (artifact name -> content
    digest) are added by the operator after ``run``; they are not a key of the mapping.
    """

    __slots__ = ("_artifacts", "_digests", "_metrics")

    def __init__(
        self,
        artifacts: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        digests: Mapping[str, str] | None = None,
    ) -> None:
        self._artifacts: Mapping[str, str] = ReadOnlyDict(artifacts or {})
        self._metrics: Mapping[str, float] = ReadOnlyDict(metrics or {})
        self._digests: Mapping[str, str] = ReadOnlyDict(digests or {})

    @classmethod
    def validate(cls, value: Any) -> StageOutputs:
        """Check ``value`` (a ``run`` result or an XCom) and wrap it; raises pydantic's error."""
        if isinstance(value, StageOutputs):
            return value
        model = _OutputsModel.model_validate(value or {})
        return cls(model.artifacts, model.metrics, model.digests)

    @property
    def artifacts(self) -> Mapping[str, str]:
        return self._artifacts

    @property
    def metrics(self) -> Mapping[str, float]:
        return self._metrics

    @property
    def digests(self) -> Mapping[str, str]:
        return self._digests

    def with_digests(self, digests: Mapping[str, str]) -> StageOutputs:
        """These outputs with their artifacts' content digests."""
        return StageOutputs(self._artifacts, self._metrics, digests)

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        if key == "artifacts":
            return self._artifacts
        if key == "metrics":
            return self._metrics
        raise KeyError(f"{key!r}: stage outputs have 'artifacts' and 'metrics'")

    def __iter__(self) -> Iterator[str]:
        return iter(_OUTPUT_KEYS)

    def __len__(self) -> int:
        return len(_OUTPUT_KEYS)

    def __repr__(self) -> str:
        return f"StageOutputs({self.to_dict()!r})"

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-safe copy (``digests`` when there are any)."""
        plain: dict[str, Any] = {"artifacts": dict(self._artifacts), "metrics": dict(self._metrics)}
        if self._digests:
            plain["digests"] = dict(self._digests)
        return plain

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        # Lets pydantic models (the execution record) hold StageOutputs and dump them as dicts.
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls.validate,
            json_schema_input_schema=handler.generate_schema(_OutputsModel),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda value: value.to_dict()),
        )


@dataclass(frozen=True)
class Produces:
    """The artifacts and metrics a component's ``run`` always returns."""

    artifacts: Sequence[str] = ()
    metrics: Sequence[str] = ()

    def missing_from(self, outputs: StageOutputs) -> list[str]:
        """What ``outputs`` lacks, as ``artifact 'x'`` / ``metric 'y'`` phrases."""
        return [f"artifact '{name}'" for name in self.artifacts if name not in outputs.artifacts] + [
            f"metric '{name}'" for name in self.metrics if name not in outputs.metrics
        ]


@dataclass(frozen=True)
class Requires:
    """The artifacts a component reads from its upstream stages (from any one of them)."""

    artifacts: Sequence[str] = ()

    def missing_from(self, inputs: Mapping[str, StageOutputs]) -> list[str]:
        available = {name for outputs in inputs.values() for name in outputs.artifacts}
        return [name for name in self.artifacts if name not in available]


@dataclass(frozen=True)
class Extra:
    """An optional dependency group (a pip extra) whose modules a component imports in ``run``."""

    name: str
    modules: Sequence[str]
    distribution: str = "airflow-mlpipe"

    def missing_modules(self) -> list[str]:
        return [module for module in self.modules if not _findable(module)]

    @property
    def install_command(self) -> str:
        return f'pip install "{self.distribution}[{self.name}]"'


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a parent package that fails
        return False


#: The values of a component module's optional ``cache`` attribute.
CACHE_POLICIES = ("on", "off", "never")


@dataclass
class ComponentContext:
    """Everything ``run`` gets besides its config.

    ``inputs`` maps each upstream stage to its :class:`StageOutputs` (read-only).
    ``artifact_dir`` is an Airflow ``ObjectStoragePath`` (local or remote), a new, empty folder
    for each try of this run's stage, so a retry or a cleared task writes its outputs afresh and
    never into a folder an earlier try (or its readers) still uses. ``outlet_events`` is
    Airflow's accessor for the stage's Asset events.
    """

    pipeline: str
    pipeline_version: str
    config_version: str
    environment: str
    stage: str
    run_id: str
    git_commit: str
    inputs: Mapping[str, StageOutputs]
    artifact_dir: ObjectStoragePath
    airflow_context: Mapping[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("airflow_mlpipe.component"))
    outlet_events: Any = None

    def __post_init__(self) -> None:
        self.inputs = MappingProxyType({stage: StageOutputs.validate(o) for stage, o in self.inputs.items()})

    def input(self, stage: str | None = None) -> StageOutputs:
        """The outputs of ``stage``, or of the only upstream stage when there is exactly one."""
        if stage is not None:
            if stage not in self.inputs:
                raise KeyError(
                    f"stage '{self.stage}' has no upstream stage '{stage}' "
                    f"(its upstream stages: {', '.join(self.inputs) or 'none'})"
                )
            return self.inputs[stage]
        if len(self.inputs) != 1:
            raise ValueError(
                f"stage '{self.stage}' has {len(self.inputs)} upstream stages; name the one to read"
            )
        return next(iter(self.inputs.values()))

    def input_artifacts(self, *names: str, hint: str = "") -> dict[str, str]:
        """URIs of the named artifacts of the only upstream stage; a clear error if one is missing."""
        upstream = self.input()
        missing = [name for name in names if name not in upstream.artifacts]
        if missing:
            raise ValueError(
                f"the upstream stage has no {', '.join(repr(m) for m in missing)} artifact "
                f"(it has: {', '.join(upstream.artifacts) or 'none'})" + (f"; {hint}" if hint else "")
            )
        return {name: upstream.artifacts[name] for name in names}


@runtime_checkable
class ComponentModule(Protocol):
    """A component module, for mypy: ``import my_component; _: ComponentModule = my_component``.

    ``assets``, ``produces``, ``requires`` and ``extra`` are optional and so not part of the
    protocol; the resolver checks their types when a module has them.
    """

    @property
    def Config(self) -> type[BaseModel]: ...

    def run(self, config: Any, context: ComponentContext) -> Mapping[str, Any] | None: ...


class ContractError(Exception):
    """A component, or a stage's wiring, broke the contract; retrying the same code would not help."""


class ConfigDeprecationWarning(DeprecationWarning):
    """Warned by a component's ``Config`` while validating a deprecated spelling of a field.

    ``mlpipe validate`` reports it with the file and line of ``field`` in the stage's config.
    """

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


#: The ``json_schema_extra`` key that marks a ``Config`` field as changeable at trigger time.
OVERRIDABLE = "overridable"


@functools.lru_cache(maxsize=1024)  # asked per stage at every parse; a class's fields are fixed
def overridable_fields(config_model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``config_model`` marked ``Field(..., json_schema_extra={"overridable": True})``."""
    names = set()
    for name, info in config_model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, Mapping) and extra.get(OVERRIDABLE) is True:
            names.add(name)
    return frozenset(names)
