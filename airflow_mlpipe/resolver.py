"""How a component string resolves to a module that keeps the contract (see ``contract``).

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
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from airflow_mlpipe.contract import CACHE_POLICIES, ComponentContext, Extra, Produces, Requires
from airflow_mlpipe.suggest import did_you_mean

BUILTIN_PACKAGE = "airflow_mlpipe.components"
ENTRY_POINT_GROUP = "airflow_mlpipe.components"


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

    @property
    def declares_io(self) -> bool:
        return hasattr(self.module, "produces") or hasattr(self.module, "requires")

    def produces(self, config: BaseModel) -> Produces | None:
        """What ``run`` declares it returns for ``config``; ``None`` when it declares nothing."""
        return _declared(self.module, "produces", Produces, config)

    def requires(self, config: BaseModel) -> Requires | None:
        """The upstream artifacts ``run`` reads for ``config``; ``None`` when it declares nothing."""
        return _declared(self.module, "requires", Requires, config)

    @property
    def cache_policy(self) -> str:
        """``on``, ``off`` (when the module says nothing) or ``never``: see ``contract``."""
        return str(getattr(self.module, "cache", "off"))

    @property
    def extra(self) -> Extra | None:
        """The pip extra whose packages ``run`` needs, if the module names one."""
        return getattr(self.module, "extra", None)


def _declared(module: ModuleType, attribute: str, kind: type[Any], config: BaseModel) -> Any:
    value = getattr(module, attribute, None)
    if value is None or isinstance(value, kind):
        return value
    declared = value(config)
    if not isinstance(declared, kind):
        raise TypeError(f"{module.__name__}.{attribute}(config) returned {declared!r}, not a {kind.__name__}")
    return declared


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
    return Component(name, check_module(name, module))


def check_module(name: str, module: ModuleType) -> ModuleType:
    """``module`` if it keeps the contract (:class:`~airflow_mlpipe.contract.ComponentModule`)."""
    config_model = getattr(module, "Config", None)
    if not (isinstance(config_model, type) and issubclass(config_model, BaseModel)):
        raise ComponentError(
            f"component '{name}' ({module.__name__}) has no pydantic 'Config' model",
            "define `class Config(pydantic.BaseModel)` for the stage's config",
        )
    if not callable(getattr(module, "run", None)):
        raise ComponentError(
            f"component '{name}' ({module.__name__}) has no 'run(config, context)' function",
            "define `def run(config, context)` returning {'artifacts': ..., 'metrics': ...}",
        )
    for attribute, kind in (("produces", Produces), ("requires", Requires)):
        value = getattr(module, attribute, None)
        if value is not None and not (isinstance(value, kind) or callable(value)):
            raise ComponentError(
                f"component '{name}' ({module.__name__}) has a '{attribute}' that is not a {kind.__name__}",
                f"declare `{attribute} = {kind.__name__}(...)` or a function of the config returning one",
            )
    if getattr(module, "assets", None) is not None and not callable(module.assets):
        raise ComponentError(
            f"component '{name}' ({module.__name__}) has an 'assets' that is not a function",
            "define `def assets(config, pipeline)` returning the Airflow Assets the stage updates",
        )
    cache = getattr(module, "cache", "off")
    if cache not in CACHE_POLICIES:
        raise ComponentError(
            f"component '{name}' ({module.__name__}) has cache = {cache!r}",
            f"a component's cache policy is one of {', '.join(CACHE_POLICIES)}",
        )
    extra = getattr(module, "extra", None)
    if extra is not None and not isinstance(extra, Extra):
        raise ComponentError(
            f"component '{name}' ({module.__name__}) has an 'extra' that is not an airflow_mlpipe Extra",
            'declare `extra = Extra("name", modules=("package",))`',
        )
    return module


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
