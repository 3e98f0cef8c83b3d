"""The checks that need the whole spec or its components, on located data.

Field checks belong to the pydantic models; these need more: the file name, the stage graph,
each stage's component (resolved, its ``Config`` checked against the stage's config, its
declared inputs and outputs against its upstream stages, its ``overridable`` names, its extra)
and the Jinja templates. They read the located data, so every problem has a line, and run
side by side: an author sees every problem of the spec at once, not one class per attempt.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_mlpipe.contract import ConfigDeprecationWarning, overridable_fields
from airflow_mlpipe.resolver import Component, ComponentError, resolve_component
from airflow_mlpipe.spec.discovery import SpecFiles
from airflow_mlpipe.spec.errors import Location, Problem
from airflow_mlpipe.spec.models import COMPONENT_PATTERN, Pipeline, PipelineStage
from airflow_mlpipe.spec.pydantic_errors import locate, validation_problems
from airflow_mlpipe.spec.reader import LocatedDict, LocatedList
from airflow_mlpipe.spec.sweeps import (
    check_sweep,
    sweep_metric_warning,
    without_swept_fields,
)
from airflow_mlpipe.spec.templates import is_template, template_problem
from airflow_mlpipe.suggest import did_you_mean

RESERVED_STAGE_NAMES = frozenset({"execution_record"})

#: A stage of the located data, with its index in ``stages``.
IndexedStage = tuple[int, LocatedDict]


def named_stages(data: LocatedDict) -> list[IndexedStage]:
    """The stages (with their index) well-formed enough for graph and component checks."""
    stages = data.get("stages")
    if not isinstance(stages, LocatedList):
        return []
    return [
        (index, stage)
        for index, stage in enumerate(stages)
        if isinstance(stage, LocatedDict) and isinstance(stage.get("name"), str)
    ]


def check_name(pipeline: Pipeline, data: LocatedDict, files: SpecFiles) -> list[Problem]:
    if pipeline.name == files.name:
        return []
    return [
        Problem(
            f"the pipeline is named '{pipeline.name}' but its file is '{files.base.name}'",
            data.value_locations["name"],
            "name",
            f"the file name is the pipeline name: rename the file to '{pipeline.name}{files.base.suffix}' "
            f"or set 'name: {files.name}'",
        )
    ]


def check_stage_graph(stages: list[IndexedStage]) -> list[Problem]:
    problems: list[Problem] = []
    first_seen: dict[str, Location] = {}
    for _, stage in stages:
        name = stage["name"]
        if name in RESERVED_STAGE_NAMES:
            problems.append(
                Problem(
                    f"'{name}' is reserved for the task that writes the execution record",
                    stage.value_locations["name"],
                    f"stages[{name}].name",
                    "choose another stage name",
                )
            )
        if name in first_seen:
            problems.append(
                Problem(
                    f"duplicate stage name '{name}' (first at line {first_seen[name].line})",
                    stage.value_locations["name"],
                    f"stages[{name}].name",
                    "stage names become task_ids and must be unique within the pipeline",
                )
            )
        else:
            first_seen[name] = stage.value_locations["name"]
    graph: dict[str, list[str]] = {}
    for _, stage in stages:
        name = stage["name"]
        dependencies = stage.get("dependencies")
        graph.setdefault(name, [])
        if not isinstance(dependencies, LocatedList):
            continue  # absent, or a field error reported by the model
        for dependency, location in zip(dependencies, dependencies.item_locations, strict=True):
            if not isinstance(dependency, str):
                continue
            if dependency == name:
                problems.append(
                    Problem(
                        f"stage '{name}' depends on itself",
                        location,
                        f"stages[{name}].dependencies",
                        f"remove '{name}' from its own dependencies",
                    )
                )
            elif dependency not in first_seen:
                problems.append(
                    Problem(
                        f"stage '{name}' depends on unknown stage '{dependency}'",
                        location,
                        f"stages[{name}].dependencies",
                        did_you_mean(dependency, first_seen) or f"stages are: {', '.join(first_seen)}",
                    )
                )
            else:
                graph[name].append(dependency)
    cycle = find_cycle(graph)
    if cycle:
        stage = next(s for _, s in stages if s["name"] == cycle[0])
        problems.append(
            Problem(
                "the stages form a cycle: " + " -> ".join(cycle),
                stage.value_locations.get("dependencies", stage.location),
                f"stages[{cycle[0]}].dependencies",
                "a pipeline is a DAG: remove one of these dependencies",
            )
        )
    return problems


def find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """One cycle in ``graph`` as ``[a, b, ..., a]`` (a stage, what it depends on, ...), or ``[]``."""
    done: set[str] = set()
    for root in graph:
        if root in done:
            continue
        # Iterative depth-first search: `path` is the chain being explored, so meeting a stage
        # already on it closes a cycle. Iterative, so a long chain cannot hit the recursion limit.
        path = [root]
        stack = [iter(graph.get(root, ()))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                done.add(path.pop())
            elif child in path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                path.append(child)
                stack.append(iter(graph.get(child, ())))
    return []


@dataclass
class ComponentFindings:
    """What :func:`check_components` found: problems, warnings, and each stage's component."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    #: stage name -> its resolved component and its validated config (``None`` when the config
    #: does not validate yet, e.g. a templated value; first stage of a duplicated name only).
    stages: dict[str, tuple[Component, BaseModel | None]] = field(default_factory=dict)


def check_components(
    stages: list[IndexedStage], data: LocatedDict, component_modules: Sequence[str] | None
) -> ComponentFindings:
    """Resolve each stage's component; check its config, its ``overridable`` names, its extra."""
    found = ComponentFindings()
    missing_by_extra: dict[Any, list[str]] = {}  # an extra's missing modules, asked once per spec
    # One catch for the whole spec (it costs more than validating a small config): each stage
    # takes the warnings recorded while its own config validated.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigDeprecationWarning)
        for index, stage in stages:
            name, config = stage.get("component"), stage.get("config", {})
            if (
                not isinstance(name, str)
                or not re.match(COMPONENT_PATTERN, name)
                or not isinstance(config, dict)
            ):
                continue  # a field error the model reports
            try:
                component = resolve_component(name, component_modules)
            except ComponentError as exc:
                found.problems.append(
                    Problem(
                        exc.message,
                        stage.value_locations["component"],
                        f"stages[{stage['name']}].component",
                        exc.suggestion,
                    )
                )
                continue
            first = len(caught)
            validated: BaseModel | None = None
            try:
                validated = component.config_model.model_validate(config)
            except ValidationError as exc:
                found.problems += without_swept_fields(
                    validation_problems(
                        exc, data, ("stages", index, "config"), component.config_model, skip_templated=True
                    ),
                    stage,
                )
            found.warnings += [
                _deprecation_warning(w.message, data, index, stage)
                for w in caught[first:]
                if isinstance(w.message, ConfigDeprecationWarning)
            ]
            found.problems += _check_overridable(stage, component)
            found.problems += _check_cache(stage, component)
            found.problems += check_sweep(stage, index, data, component.config_model, component.cache_policy)
            metric_warning = sweep_metric_warning(stage, component.produces, validated)
            if metric_warning is not None:
                found.warnings.append(metric_warning)
            extra_warning = _extra_warning(stage, component, missing_by_extra)
            if extra_warning is not None:
                found.warnings.append(extra_warning)
            found.stages.setdefault(stage["name"], (component, validated))
    for warning in caught:
        if not isinstance(warning.message, ConfigDeprecationWarning):
            # Not ours to report: hand it back to whatever the process does with warnings.
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return found


def _deprecation_warning(
    warning: ConfigDeprecationWarning, data: LocatedDict, index: int, stage: LocatedDict
) -> Problem:
    parts = tuple(part for part in str(warning.field).split(".") if part)
    # At the field's key; when the config leaves the field out, at the deepest part it holds.
    _, _, key_location, _ = locate(data, ("stages", index, "config", *parts))
    return Problem(
        warning.message,
        key_location,
        ".".join((f"stages[{stage['name']}].config", *parts)),
        f"component '{stage['component']}' deprecates this; update the spec before the component drops it",
        severity="warning",
    )


def _check_overridable(stage: LocatedDict, component: Component) -> list[Problem]:
    listed = stage.get("overridable")
    if not isinstance(listed, LocatedList):
        return []  # absent, null, or a field error the model reports
    fields = list(component.config_model.model_fields)
    problems = []
    for value, location in zip(listed, listed.item_locations, strict=True):
        if isinstance(value, str) and value not in fields:
            problems.append(
                Problem(
                    f"'{value}' is not a config field of component '{component.name}'",
                    location,
                    f"stages[{stage['name']}].overridable",
                    did_you_mean(value, fields) or f"its config fields: {', '.join(fields) or 'none'}",
                )
            )
    return problems


def _check_cache(stage: LocatedDict, component: Component) -> list[Problem]:
    if stage.get("cache") is not True or component.cache_policy != "never":
        return []
    return [
        Problem(
            f"component '{component.name}' must never be cached (it has side effects or reads "
            "data that changes)",
            stage.value_locations["cache"],
            f"stages[{stage['name']}].cache",
            "remove 'cache: true' from this stage",
        )
    ]


def _extra_warning(
    stage: LocatedDict, component: Component, missing_by_extra: dict[Any, list[str]]
) -> Problem | None:
    extra = component.extra
    if extra is None:
        return None
    key = (extra.distribution, extra.name, tuple(extra.modules))
    if key not in missing_by_extra:
        missing_by_extra[key] = extra.missing_modules()
    missing = missing_by_extra[key]
    if not missing:
        return None
    return Problem(
        f"stage '{stage['name']}' needs the '{extra.name}' extra of component '{component.name}', "
        f"which is not installed here (missing: {', '.join(missing)})",
        stage.value_locations["component"],
        f"stages[{stage['name']}].component",
        f"install it where the stage runs: {extra.install_command} "
        "(the DAG builds without it; the stage fails when it runs)",
        severity="warning",
    )


def stage_overridable(stage: PipelineStage, component: Component) -> frozenset[str]:
    """The config fields of ``stage`` that trigger-time overrides may change.

    The stage's ``overridable`` list when the spec gives one (it replaces the component's
    choice, wider or narrower), else the fields the component's ``Config`` marks overridable.
    """
    if stage.overridable is not None:
        return frozenset(stage.overridable)
    return overridable_fields(component.config_model)


def check_declared_io(stages: list[IndexedStage], found: ComponentFindings) -> list[Problem]:
    """Each stage's required artifacts against what its direct upstream stages declare.

    Silent for a stage when it cannot know: an upstream whose component declares no
    ``produces`` (or whose config does not validate yet), or a dependency that is itself wrong.
    """
    problems: list[Problem] = []
    for _, stage in stages:
        name = stage["name"]
        component, config = found.stages.get(name, (None, None))
        if component is None or config is None:
            continue
        requires = _declaration(component.requires, config)
        if requires is None or not requires.artifacts:
            continue
        dependencies = stage.get("dependencies", [])
        if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
            continue
        produced: dict[str, list[str]] = {}
        for dependency in dependencies:
            upstream_component, upstream_config = found.stages.get(dependency, (None, None))
            if upstream_component is None or upstream_config is None:
                break
            produces = _declaration(upstream_component.produces, upstream_config)
            if produces is None:
                break
            produced[dependency] = list(produces.artifacts)
        else:
            available = {artifact for artifacts in produced.values() for artifact in artifacts}
            missing = [artifact for artifact in requires.artifacts if artifact not in available]
            if missing:
                problems.append(_missing_input_problem(stage, missing, produced, stages, found))
    return problems


def _declaration(declare: Any, config: BaseModel) -> Any:
    try:
        return declare(config)
    except Exception:  # a declaration function that cannot answer for this config: no check
        return None


def _missing_input_problem(
    stage: LocatedDict,
    missing: list[str],
    produced: dict[str, list[str]],
    stages: list[IndexedStage],
    found: ComponentFindings,
) -> Problem:
    name = stage["name"]
    quoted = ", ".join(f"'{artifact}'" for artifact in missing)
    noun = "artifact" if len(missing) == 1 else "artifacts"
    if produced:
        upstream = "; ".join(
            f"its upstream '{dependency}' produces "
            + (", ".join(f"'{a}'" for a in artifacts) if artifacts else "no artifacts")
            for dependency, artifacts in produced.items()
        )
    else:
        upstream = "it has no upstream stages"
    producers = _producers_of(missing, stages, found, exclude=_downstream_of(name, stages))
    fix = (
        "add "
        + ", ".join(f"'{p}'" for p in producers)
        + f" (which produces {'it' if len(missing) == 1 else 'them'})"
        " to dependencies"
        if producers
        else f"add the stage that produces {quoted} to dependencies"
    )
    return Problem(
        f"stage '{name}' requires {noun} {quoted}, which none of its upstream stages produces",
        stage.value_locations.get("dependencies", stage.location),
        f"stages[{name}].dependencies",
        f"stage '{name}' needs {noun} {quoted} from an upstream stage; {upstream}; {fix}",
    )


def _producers_of(
    artifacts: list[str], stages: list[IndexedStage], found: ComponentFindings, exclude: set[str]
) -> list[str]:
    """Stages of the pipeline, not in ``exclude``, that declare they produce any of ``artifacts``."""
    names = []
    for _, stage in stages:
        name = stage["name"]
        component, config = found.stages.get(name, (None, None))
        if name in exclude or component is None or config is None:
            continue
        produces = _declaration(component.produces, config)
        if produces is not None and any(a in produces.artifacts for a in artifacts) and name not in names:
            names.append(name)
    return names


def _downstream_of(name: str, stages: list[IndexedStage]) -> set[str]:
    """``name`` and every stage depending on it, directly or not (a cycle if made its upstream)."""
    dependents: dict[str, list[str]] = {}
    for _, stage in stages:
        dependencies = stage.get("dependencies")
        for dependency in dependencies if isinstance(dependencies, list) else ():
            if isinstance(dependency, str):
                dependents.setdefault(dependency, []).append(stage["name"])
    seen = {name}
    pending = [name]
    while pending:
        for child in dependents.get(pending.pop(), ()):
            if child not in seen:
                seen.add(child)
                pending.append(child)
    return seen


def check_templates(stages: list[IndexedStage]) -> list[Problem]:
    """A problem for every config value whose Jinja template would fail to render."""
    problems: list[Problem] = []
    for _, stage in stages:
        config = stage.get("config")
        if not isinstance(config, LocatedDict):
            continue
        path = f"stages[{stage['name']}].config"
        pending: list[tuple[str, Any, Location]] = [(path, config, config.location)]
        while pending:
            path, value, location = pending.pop()
            if isinstance(value, LocatedDict):
                pending += [(f"{path}.{k}", v, value.value_locations[k]) for k, v in reversed(value.items())]
            elif isinstance(value, LocatedList):
                pending += [
                    (f"{path}[{i}]", v, value.item_locations[i]) for i, v in reversed(list(enumerate(value)))
                ]
            elif is_template(value) and (problem := template_problem(value)):
                message, suggestion = problem
                problems.append(Problem(message, location, path, suggestion))
    return problems
