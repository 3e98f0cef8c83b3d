"""Loading specs: files and folders, overlays, and validation with precise locations.

This is the one loader: the CLI, the DAG factory, the pytest plugin and the UI plugin all call
:func:`load_pipeline` or :func:`load_folder`. It reads files and imports component modules (to
check configs against their ``Config``), and nothing else: no database, Variables or network.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_mlpipe.resolver import ComponentError, resolve_component
from airflow_mlpipe.spec.errors import Location, Problem, SpecError
from airflow_mlpipe.spec.models import COMPONENT_PATTERN, Pipeline
from airflow_mlpipe.spec.overlays import merge_overlay
from airflow_mlpipe.spec.reader import LocatedDict, LocatedList, read_yaml_file
from airflow_mlpipe.spec.templates import is_template, template_problem
from airflow_mlpipe.suggest import did_you_mean

SPEC_SUFFIXES = (".yaml", ".yml")
RESERVED_STAGE_NAMES = frozenset({"execution_record"})


@dataclass(frozen=True)
class SpecFiles:
    """A spec file and the overlays found beside it, by environment."""

    name: str
    base: Path
    overlays: dict[str, Path] = field(default_factory=dict)

    def files_for(self, environment: str) -> list[Path]:
        overlay = self.overlays.get(environment)
        return [self.base, overlay] if overlay else [self.base]


@dataclass
class FolderResult:
    """Every spec of a folder: the valid pipelines and, separately, the broken ones."""

    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    errors: dict[str, SpecError] = field(default_factory=dict)
    files: dict[str, SpecFiles] = field(default_factory=dict)


def load_pipeline(
    path: str | os.PathLike[str],
    environment: str | None = None,
    *,
    component_modules: Sequence[str] | None = None,
) -> Pipeline:
    """Load, merge and validate one spec for ``environment`` (default ``[mlpipe] environment``)."""
    path = Path(path)
    environment = _environment(environment)
    overlay = _overlay_path(path, environment)
    files = SpecFiles(path.stem, path, {environment: overlay} if overlay else {})
    return _load(files, environment, component_modules)


def load_folder(
    folder: str | os.PathLike[str],
    environment: str | None = None,
    *,
    only: str | None = None,
    component_modules: Sequence[str] | None = None,
) -> FolderResult:
    """Load every spec under ``folder``; one broken spec never stops the others.

    ``only`` loads just the spec of that name (what a worker needs to start one task).
    """
    environment = _environment(environment)
    result = FolderResult()
    specs, discovery_problems = discover_specs(Path(folder), only=only)
    for name, problems in discovery_problems.items():
        result.errors[name] = SpecError(problems)
    for name, candidates in specs.items():
        # A name with a stray overlay is reported once, with every problem, and is not loaded.
        earlier = discovery_problems.get(name, [])
        if len(candidates) > 1:
            duplicates = [
                Problem(
                    f"{len(candidates)} spec files define the pipeline '{name}': "
                    + ", ".join(str(c.base) for c in candidates),
                    Location(str(c.base), 1, 1),
                    "name",
                    "pipeline names are dag_ids and must be unique: rename one of the files and its 'name'",
                )
                for c in candidates
            ]
            result.errors[name] = SpecError([*earlier, *duplicates])
            continue
        result.files[name] = candidates[0]
        try:
            pipeline = _load(candidates[0], environment, component_modules)
        except SpecError as exc:
            result.errors[name] = SpecError(earlier + exc.problems) if earlier else exc
        else:
            if not earlier:
                result.pipelines[name] = pipeline
    return result


def discover_specs(
    folder: Path, only: str | None = None
) -> tuple[dict[str, list[SpecFiles]], dict[str, list[Problem]]]:
    """Find ``NAME.yaml`` files and their ``NAME.ENV.yaml`` overlays under ``folder``, recursively."""
    bases: dict[Path, SpecFiles] = {}
    overlays: list[tuple[Path, str, str]] = []
    for directory, subdirectories, filenames in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith((".", "_")))
        for filename in sorted(filenames):
            stem, suffix = os.path.splitext(filename)
            if suffix not in SPEC_SUFFIXES or filename.startswith("."):
                continue
            name, _, environment = stem.partition(".")
            if only is not None and name != only:
                continue
            path = Path(directory, filename)
            if environment:
                overlays.append((path, name, environment))
            else:
                bases[path] = SpecFiles(name, path)
    problems: dict[str, list[Problem]] = {}
    for path, name, environment in overlays:
        base = next((b for b in bases.values() if b.name == name and b.base.parent == path.parent), None)
        if base is None:
            problems.setdefault(name, []).append(
                Problem(
                    f"overlay for environment '{environment}' has no base spec "
                    f"'{name}{path.suffix}' beside it",
                    Location(str(path), 1, 1),
                    suggestion=f"create {name}.yaml next to it, or rename the overlay to NAME.ENV.yaml",
                )
            )
        else:
            base.overlays[environment] = path
    specs: dict[str, list[SpecFiles]] = {}
    for files in bases.values():
        specs.setdefault(files.name, []).append(files)
    return specs, problems


def read_spec(files: SpecFiles, environment: str) -> Any:
    """The located data of a spec with its ``environment`` overlay merged in."""
    data = read_yaml_file(files.base)
    overlay = files.overlays.get(environment)
    if overlay is not None:
        data = merge_overlay(data, read_yaml_file(overlay), str(overlay))
    return data


def _environment(environment: str | None) -> str:
    if environment is not None:
        return environment
    from airflow_mlpipe import settings

    return settings.environment()


def _overlay_path(path: Path, environment: str) -> Path | None:
    # Either suffix, as load_folder pairs them (NAME.yml with NAME.ENV.yaml); the base's first.
    for suffix in sorted(SPEC_SUFFIXES, key=lambda s: s != path.suffix):
        candidate = path.with_name(f"{path.stem}.{environment}{suffix}")
        if candidate.is_file():
            return candidate
    return None


def _load(files: SpecFiles, environment: str, component_modules: Sequence[str] | None) -> Pipeline:
    data = read_spec(files, environment)
    pipeline = validate_spec(data, files, component_modules)
    return pipeline.bind(environment, tuple(str(f) for f in files.files_for(environment)))


def validate_spec(data: Any, files: SpecFiles, component_modules: Sequence[str] | None = None) -> Pipeline:
    """Turn located data into a :class:`Pipeline`, or raise :class:`SpecError` with every problem."""
    file = str(files.base)
    if not isinstance(data, LocatedDict):
        kind = "a list" if isinstance(data, list) else f"a single {type(data).__name__} value"
        raise SpecError(
            [
                Problem(
                    "a spec must be a mapping with name, version, metadata and stages; "
                    f"this file holds {kind}",
                    getattr(data, "location", Location(file, 1, 1)),
                    suggestion="run 'mlpipe new NAME' to see the expected layout",
                )
            ]
        )
    problems: list[Problem] = []
    pipeline: Pipeline | None = None
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        problems += _validation_problems(exc, data, (), Pipeline)
    else:
        problems += _check_name(pipeline, data, files)
    # The stage checks read the located data, so they report alongside field errors elsewhere:
    # an author sees every problem of the spec at once, not one class per attempt.
    stages = _named_stages(data)
    problems += _check_stage_graph(stages)
    problems += _check_components(stages, data, component_modules)
    problems += _check_templates(stages)
    if problems or pipeline is None:
        raise SpecError(problems)
    return pipeline


def _named_stages(data: LocatedDict) -> list[tuple[int, LocatedDict]]:
    """The stages (with their index) well-formed enough for graph and component checks."""
    stages = data.get("stages")
    if not isinstance(stages, LocatedList):
        return []
    return [
        (index, stage)
        for index, stage in enumerate(stages)
        if isinstance(stage, LocatedDict) and isinstance(stage.get("name"), str)
    ]


def _check_name(pipeline: Pipeline, data: LocatedDict, files: SpecFiles) -> list[Problem]:
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


def _check_stage_graph(stages: list[tuple[int, LocatedDict]]) -> list[Problem]:
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
    cycle = _find_cycle(graph)
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


def _find_cycle(graph: dict[str, list[str]]) -> list[str]:
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


def _check_components(
    stages: list[tuple[int, LocatedDict]], data: LocatedDict, component_modules: Sequence[str] | None
) -> list[Problem]:
    problems: list[Problem] = []
    for index, stage in stages:
        name, config = stage.get("component"), stage.get("config", {})
        if not isinstance(name, str) or not re.match(COMPONENT_PATTERN, name) or not isinstance(config, dict):
            continue  # a field error the model reports
        try:
            component = resolve_component(name, component_modules)
        except ComponentError as exc:
            problems.append(
                Problem(
                    exc.message,
                    stage.value_locations["component"],
                    f"stages[{stage['name']}].component",
                    exc.suggestion,
                )
            )
            continue
        try:
            component.config_model.model_validate(config)
        except ValidationError as exc:
            problems += [
                problem
                for problem in _validation_problems(
                    exc, data, ("stages", index, "config"), component.config_model, skip_templated=True
                )
            ]
    return problems


def _check_templates(stages: list[tuple[int, LocatedDict]]) -> list[Problem]:
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


def _validation_problems(
    exc: ValidationError,
    data: LocatedDict,
    prefix: tuple[Any, ...],
    model: type[BaseModel],
    skip_templated: bool = False,
) -> list[Problem]:
    """Pydantic's errors, each pointed at the line that caused it, with a did-you-mean."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        value = error.get("input")
        kind = error["type"]
        if skip_templated and is_template(value) and kind != "extra_forbidden":
            continue  # rendered at run time, then validated again (an unknown key stays unknown)
        loc = (*prefix, *error["loc"])
        found, location, key_location, parent_location = _locate(data, loc)
        field_path = _field_path(data, loc, found, kind)
        if field_path in seen:  # a union reports once per member; the first says enough
            continue
        seen.add(field_path)
        suggestion = ""
        if kind == "extra_forbidden":
            key = str(loc[-1])
            message = f"unknown field '{key}'"
            allowed = _fields_at(model, tuple(error["loc"][:-1]))
            suggestion = did_you_mean(key, allowed) or (
                f"allowed fields: {', '.join(allowed)}" if allowed else ""
            )
            location = key_location
        elif kind == "missing":
            message = f"missing required field '{loc[-1]}'"
            location = parent_location
            suggestion = _field_description(model, tuple(error["loc"]))
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            shown = repr(value) in message or str(value) in message
            if isinstance(value, str | int | float | bool) and not shown:
                message += f" (got {value!r})"
            if kind == "too_short":
                suggestion = _field_description(model, tuple(error["loc"]))
        problems.append(Problem(message, location, field_path, suggestion))
    return problems


def _locate(data: Any, loc: tuple[Any, ...]) -> tuple[int, Location, Location, Location]:
    """How many parts of ``loc`` exist in ``data``, and the locations of the deepest one found."""
    node = data
    location = key_location = parent_location = data.location
    found = 0
    for part in loc:
        if isinstance(node, LocatedDict) and part in node:
            parent_location = node.location
            location, key_location = node.value_locations[part], node.key_locations[part]
            node = node[part]
        elif isinstance(node, LocatedList) and isinstance(part, int) and 0 <= part < len(node):
            parent_location = node.location
            location = key_location = node.item_locations[part]
            node = node[part]
        else:
            parent_location = getattr(node, "location", location)
            break
        found += 1
    return found, location, key_location, parent_location


def _field_path(data: Any, loc: tuple[Any, ...], found: int, kind: str = "") -> str:
    """``stages[train].config.epochs``: stages by name, which is what a reader looks for."""
    text = ""
    node = data
    for i, part in enumerate(loc):
        if i >= found and kind != "missing":
            # Below a value the spec holds, pydantic's own parts (union members such as 'date',
            # '[key]') follow; only a missing field's path goes on past what the spec holds.
            break
        if isinstance(part, int):
            stage = node[part] if i < found and isinstance(node, list) else None
            name = stage.get("name") if isinstance(stage, dict) else None
            text += f"[{name}]" if isinstance(name, str) and text == "stages" else f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
        if i < found:
            node = node[part]
    return text


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current = _model_at(model, loc)
    return list(current.model_fields) if current else []


def _field_description(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    parent = _model_at(model, loc[:-1])
    info = parent.model_fields.get(str(loc[-1])) if parent else None
    return f"'{loc[-1]}': {info.description}" if info and info.description else ""


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (list indexes are skipped)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        info = current.model_fields.get(str(part))
        current = _model_in(info.annotation) if info else None
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        model = _model_in(argument)
        if model is not None:
            return model
    return None
