"""Loading specs: files and folders, overlays, and validation with precise locations.

This is the one loader: the CLI, the DAG factory, the pytest plugin and the UI plugin all call
:func:`load_pipeline` or :func:`load_folder`. It reads files and imports component modules (to
check configs against their ``Config``), and nothing else: no database, Variables or network.
Finding files is :mod:`~airflow_mlpipe.spec.discovery`'s job, the checks are
:mod:`~airflow_mlpipe.spec.checks`' and :mod:`~airflow_mlpipe.spec.pydantic_errors`'; this
module puts them together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from airflow_mlpipe.spec import checks, triggers
from airflow_mlpipe.spec.discovery import DEFAULT_IGNORE_FILE_SYNTAX, SpecFiles, discover_specs, overlay_path
from airflow_mlpipe.spec.errors import Location, Problem, SpecError
from airflow_mlpipe.spec.models import AssetSchedule, Pipeline
from airflow_mlpipe.spec.overlays import merge_overlay
from airflow_mlpipe.spec.pydantic_errors import validation_problems
from airflow_mlpipe.spec.reader import LocatedDict, parse_yaml, read_yaml_file
from airflow_mlpipe.spec.runtime import check_runtimes
from airflow_mlpipe.spec.spec_cache import SpecCache


@dataclass
class FolderResult:
    """Every spec of a folder: the valid pipelines and, separately, the broken ones.

    ``warnings`` holds what validation warned about, by pipeline name (valid or not), and by the
    path of an ``.airflowignore`` file with a pattern that does not compile. Warnings never make
    a spec invalid, and the DAG factory ignores them.
    """

    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    errors: dict[str, SpecError] = field(default_factory=dict)
    files: dict[str, SpecFiles] = field(default_factory=dict)
    warnings: dict[str, list[Problem]] = field(default_factory=dict)


def load_pipeline(
    path: str | os.PathLike[str],
    environment: str | None = None,
    *,
    component_modules: Sequence[str] | None = None,
) -> Pipeline:
    """Load, merge and validate one spec for ``environment`` (default ``[mlpipe] environment``).

    The file named is loaded even if an ``.airflowignore`` excludes it (as Airflow parses a DAG
    file it is given); its warnings are the returned pipeline's ``warnings``.
    """
    path = Path(path)
    environment = _environment(environment)
    return _load(_files_of(path, environment), environment, component_modules)


def load_folder(
    folder: str | os.PathLike[str],
    environment: str | None = None,
    *,
    only: str | None = None,
    component_modules: Sequence[str] | None = None,
    ignore_file_syntax: str | Callable[[], str] = DEFAULT_IGNORE_FILE_SYNTAX,
    cache: SpecCache | None = None,
) -> FolderResult:
    """Load every spec under ``folder``; one broken spec never stops the others.

    ``only`` loads just the spec of that name (what a worker needs to start one task); the checks
    across specs (:mod:`~airflow_mlpipe.spec.triggers`) run only when the whole folder is loaded.
    ``ignore_file_syntax`` is Airflow's ``[core] dag_ignore_file_syntax`` (``glob`` or
    ``regexp``, or a function returning it) for the ``.airflowignore`` files under ``folder``;
    ignored specs are not read. ``cache`` keeps validated specs between parses (see
    :mod:`~airflow_mlpipe.spec.spec_cache`); a spec read from it is the one validation would give.
    """
    environment = _environment(environment)
    result = FolderResult()
    after: dict[str, list[triggers.AfterReference]] = {}
    found = discover_specs(Path(folder), only=only, ignore_file_syntax=ignore_file_syntax)
    for warning in found.warnings:
        result.warnings.setdefault(warning.location.file if warning.location else "", []).append(warning)
    for name, problems in found.problems.items():
        result.errors[name] = SpecError(problems)
    for name, candidates in found.specs.items():
        # A name with a stray overlay is reported once, with every problem, and is not loaded.
        earlier = found.problems.get(name, [])
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
            pipeline = _load(candidates[0], environment, component_modules, cache)
        except SpecError as exc:
            result.errors[name] = SpecError(earlier + exc.problems, exc.warnings) if earlier else exc
            if exc.warnings:
                result.warnings[name] = list(exc.warnings)
        else:
            if pipeline.warnings:
                result.warnings[name] = list(pipeline.warnings)
            if not earlier:
                result.pipelines[name] = pipeline
                schedule = pipeline.metadata.schedule
                if isinstance(schedule, AssetSchedule) and schedule.after:
                    # Located again (a cached spec keeps no YAML), only for the few that need it.
                    after[name] = triggers.after_references(read_spec(candidates[0], environment))
    if only is None and after:
        _check_after(result, after, known=set(found.specs) | set(found.problems))
    return result


def _check_after(
    result: FolderResult, after: dict[str, list[triggers.AfterReference]], known: set[str]
) -> None:
    """Move the pipelines whose ``after`` is wrong from the valid ones to the broken ones."""
    for name, problems in triggers.check_after(after, known).items():
        pipeline = result.pipelines.pop(name)
        result.errors[name] = SpecError(problems, pipeline.warnings)


def read_spec(files: SpecFiles, environment: str) -> Any:
    """The located data of a spec with its ``environment`` overlay merged in."""
    data = read_yaml_file(files.base)
    overlay = files.overlays.get(environment)
    if overlay is not None:
        data = merge_overlay(data, read_yaml_file(overlay), str(overlay))
    return data


def read_spec_file(path: str | os.PathLike[str], environment: str) -> Any:
    """The located data of the spec ``path`` with the ``environment`` overlay beside it merged in."""
    return read_spec(_files_of(Path(path), environment), environment)


def _files_of(path: Path, environment: str) -> SpecFiles:
    overlay = overlay_path(path, environment)
    return SpecFiles(path.stem, path, {environment: overlay} if overlay else {})


def _environment(environment: str | None) -> str:
    if environment is not None:
        return environment
    from airflow_mlpipe import settings

    return settings.environment()


def _load(
    files: SpecFiles,
    environment: str,
    component_modules: Sequence[str] | None,
    cache: SpecCache | None = None,
) -> Pipeline:
    if cache is None or component_modules is None:
        return _validate(files, environment, read_spec(files, environment), component_modules)
    try:
        sources = {path: path.read_bytes() for path in files.files_for(environment)}
        key = cache.key(sources, environment, component_modules)
    except OSError:  # an unreadable spec is reported, with its location, by the uncached path
        return _validate(files, environment, read_spec(files, environment), component_modules)
    cached = cache.get(files.base, environment, key, component_modules)
    if cached is not None:
        return cached
    # Parsed from the very bytes the key was made of, so an entry never holds another version.
    data = parse_yaml(sources[files.base], str(files.base))
    overlay = files.overlays.get(environment)
    if overlay is not None:
        data = merge_overlay(data, parse_yaml(sources[overlay], str(overlay)), str(overlay))
    pipeline = _validate(files, environment, data, component_modules)
    pipeline.config_version  # noqa: B018 - computed once and stored with the entry
    cache.put(files.base, environment, key, pipeline, component_modules)
    return pipeline


def _validate(
    files: SpecFiles, environment: str, data: Any, component_modules: Sequence[str] | None
) -> Pipeline:
    pipeline = validate_spec(data, files, component_modules)
    sources = tuple(str(f) for f in files.files_for(environment))
    return pipeline.bind(environment, sources, pipeline.warnings)


def validate_spec(data: Any, files: SpecFiles, component_modules: Sequence[str] | None = None) -> Pipeline:
    """Turn located data into a :class:`Pipeline`, or raise :class:`SpecError` with every problem.

    The pipeline returned (or the error raised) carries the spec's warnings.
    """
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
        problems += validation_problems(exc, data, (), Pipeline)
    else:
        problems += checks.check_name(pipeline, data, files)
    # The stage checks read the located data, so they report alongside field errors elsewhere:
    # an author sees every problem of the spec at once, not one class per attempt.
    stages = checks.named_stages(data)
    problems += checks.check_stage_graph(stages)
    components = checks.check_components(stages, data, component_modules)
    problems += components.problems
    problems += checks.check_templates(stages)
    problems += checks.check_declared_io(stages, components)
    problems += check_runtimes(stages)
    if problems or pipeline is None:
        raise SpecError(problems, components.warnings)
    return pipeline.bind(pipeline.environment, pipeline.sources, tuple(components.warnings))
