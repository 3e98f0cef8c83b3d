"""The component contract, and how a component string resolves to a module.

A component is a module with

* ``Config``: a pydantic model for the stage's ``config``;
* ``run(config, context)``: does the work and returns a mapping with optional ``artifacts``
  (name -> URI string) and ``metrics`` (name -> number);
* optionally ``assets(config, pipeline)``: the Airflow Assets the stage updates, declared at parse
  time (cheap, no I/O); ``run`` then sets their event extras through ``context.outlet_events``.

Component modules are imported while validating specs (to read ``Config``), so they keep heavy
imports (numpy, pandas, ML libraries) inside ``run``.

Resolution order for a component string such as ``data.extract.database``:

1. the built-in module ``airflow_mlpipe.components.data.extract.database``;
2. an entry point of that name in the group ``airflow_mlpipe.components``;
3. a module path starting with a prefix listed in ``[mlpipe] component_modules``.

Anything else, for example ``os.system``, is refused before anything is imported.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

BUILTIN_PACKAGE = "airflow_mlpipe.components"
ENTRY_POINT_GROUP = "airflow_mlpipe.components"


class StageOutputs(BaseModel):
    """What a stage hands to the stages after it and to the execution record (its XCom)."""

    model_config = ConfigDict(extra="forbid")

    artifacts: dict[str, str] = Field(default_factory=dict, description="artifact name -> URI")
    metrics: dict[str, float] = Field(default_factory=dict, description="metric name -> value")


@dataclass
class ComponentContext:
    """Everything ``run`` gets besides its config.

    ``artifact_dir`` is an Airflow ``ObjectStoragePath`` (local or remote) unique to this run and
    stage and emptied at the start of every try, so a retry or a cleared task replaces its outputs.
    """

    pipeline: str
    pipeline_version: str
    config_version: str
    environment: str
    stage: str
    run_id: str
    git_commit: str
    inputs: Mapping[str, StageOutputs]
    artifact_dir: Any
    airflow_context: Mapping[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("airflow_mlpipe.component"))
    outlet_events: Any = None

    def input(self, stage: str | None = None) -> StageOutputs:
        """The outputs of ``stage``, or of the only upstream stage when there is exactly one."""
        if stage is not None:
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


class ComponentError(Exception):
    """A component string that cannot be used; ``suggestion`` says how to fix it."""

    def __init__(self, message: str, suggestion: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.suggestion = suggestion


@dataclass(frozen=True)
class Component:
    """A resolved component: its name in specs, its module, and the contract's parts."""

    name: str
    module: ModuleType

    @property
    def config_model(self) -> type[BaseModel]:
        return self.module.Config

    @property
    def run(self) -> Callable[[BaseModel, ComponentContext], Mapping[str, Any]]:
        return self.module.run

    @property
    def doc(self) -> str:
        return (self.module.__doc__ or "").strip()

    def assets(self, config: BaseModel, pipeline: str) -> list[Any]:
        """The Airflow Assets the stage updates (optional ``assets(config, pipeline)`` hook)."""
        declare = getattr(self.module, "assets", None)
        return list(declare(config, pipeline)) if declare else []


def resolve_component(name: str, allowed_prefixes: Sequence[str] | None = None) -> Component:
    """Import and check the component ``name``; raise :class:`ComponentError` if it is not usable.

    ``allowed_prefixes`` defaults to ``[mlpipe] component_modules``.
    """
    if allowed_prefixes is None:
        from airflow_mlpipe import settings

        allowed_prefixes = settings.component_modules()
    return _resolve(name, tuple(allowed_prefixes))


@functools.lru_cache(maxsize=1024)
def _resolve(name: str, allowed_prefixes: tuple[str, ...]) -> Component:
    module_path = _module_path(name, allowed_prefixes)
    try:
        module = importlib.import_module(module_path)
    except Exception as exc:
        raise ComponentError(
            f"component '{name}' failed to import from {module_path}: {type(exc).__name__}: {exc}",
            "component modules must import without side effects; keep heavy imports inside run()",
        ) from exc
    config_model = getattr(module, "Config", None)
    if not (isinstance(config_model, type) and issubclass(config_model, BaseModel)):
        raise ComponentError(
            f"component '{name}' ({module_path}) has no pydantic 'Config' model",
            "define `class Config(pydantic.BaseModel)` for the stage's config",
        )
    if not callable(getattr(module, "run", None)):
        raise ComponentError(
            f"component '{name}' ({module_path}) has no 'run(config, context)' function",
            "define `def run(config, context)` returning {'artifacts': ..., 'metrics': ...}",
        )
    return Component(name, module)


def _module_path(name: str, allowed_prefixes: tuple[str, ...]) -> str:
    builtin = f"{BUILTIN_PACKAGE}.{name}"
    if not _is_private(name) and _module_exists(builtin):
        return builtin
    entry_points = _entry_points()
    if name in entry_points:
        return entry_points[name]
    in_prefix = any(name == prefix or name.startswith(prefix + ".") for prefix in allowed_prefixes)
    if in_prefix and _module_exists(name):
        return name
    from airflow_mlpipe.spec.errors import did_you_mean  # the spec package imports this module

    candidates = available_components() + (_modules_under(allowed_prefixes) if in_prefix else [])
    suggestion = did_you_mean(name, candidates)
    if in_prefix or name.split(".")[0] in _builtin_namespaces():
        raise ComponentError(
            f"unknown component '{name}'", suggestion or "run 'mlpipe components' to list them"
        )
    allowed = ", ".join(allowed_prefixes) or "none"
    raise ComponentError(
        f"component '{name}' is not allowed: components come from airflow_mlpipe's built-ins, the "
        f"'{ENTRY_POINT_GROUP}' entry points, or modules under [mlpipe] component_modules (now: {allowed})",
        suggestion or "add the module's package to [mlpipe] component_modules if it is a component",
    )


def _module_exists(module_path: str) -> bool:
    try:
        return importlib.util.find_spec(module_path) is not None
    except (ImportError, ValueError):  # a missing parent package, or an empty name part
        return False


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


@functools.lru_cache(maxsize=1)
def _builtin_names() -> tuple[str, ...]:
    package = importlib.import_module(BUILTIN_PACKAGE)
    names = []
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{BUILTIN_PACKAGE}."):
        if not info.ispkg and not _is_private(info.name):
            names.append(info.name.removeprefix(f"{BUILTIN_PACKAGE}."))
    return tuple(sorted(names))


def _modules_under(prefixes: tuple[str, ...]) -> list[str]:
    """Module paths under the allowed prefixes (imports only those packages), for suggestions."""
    names: list[str] = []
    for prefix in prefixes:
        try:
            package = importlib.import_module(prefix)
        except ImportError:
            continue
        if not hasattr(package, "__path__"):
            names.append(prefix)
            continue
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{prefix}.", onerror=lambda _: None):
            if not info.ispkg:
                names.append(info.name)
    return names


def _is_private(module_path: str) -> bool:
    """Helper modules such as ``components/_split.py`` are shared code, not components."""
    return any(part.startswith("_") for part in module_path.split("."))


def _builtin_namespaces() -> set[str]:
    return {name.split(".")[0] for name in _builtin_names()}


def available_components() -> list[str]:
    """Names of the built-in and entry-point components (modules under prefixes are not listed)."""
    return sorted(set(_builtin_names()) | set(_entry_points()))
