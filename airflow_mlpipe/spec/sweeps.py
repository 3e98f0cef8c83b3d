"""A stage's ``sweep``: the variants of its config to try, and how to pick the best.

A swept stage runs once per variant (an Airflow mapped task instance each) and passes on the
outputs of the variant with the best value of one of its metrics::

    sweep:
      grid: {factors: [64, 128], regularization: [10, 50]}   # or: variants: [{...}, {...}]
      select: {metric: val_recall@10, mode: max}
      max_parallel: 4

A variant's config is the stage's config (templates rendered, trigger-time overrides applied)
deep-merged with the variant's values. The spec layer checks the shape here and, with the
component at hand, the values (:func:`check_sweep`); the run-time checks of a trigger's grid
(:func:`sweep_override_problems`) use the same rules. Nothing here imports Airflow.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from airflow_mlpipe.spec.errors import Location, Problem
from airflow_mlpipe.spec.pydantic_errors import validation_problems
from airflow_mlpipe.spec.reader import LocatedDict, LocatedList
from airflow_mlpipe.spec.templates import is_template
from airflow_mlpipe.suggest import did_you_mean

#: The most variants one sweep may have: each is a task instance (and a model) per run.
MAX_VARIANTS = 256
#: The key of a stage's trigger-time override that replaces its sweep's grid or variants.
SWEEP_OVERRIDE_KEY = "sweep"


class SweepSelect(BaseModel):
    """Which variant wins: the best value of one of the metrics the stage reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(min_length=1, description="a metric the stage reports, e.g. val_recall@10")
    mode: Literal["max", "min"] = Field(description="max: higher is better; min: lower is better")


class Sweep(BaseModel):
    """The variants of a stage's config to run, one mapped task instance each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid: dict[str, list[Any]] | None = Field(
        None,
        description="config field -> the values to try; every combination is a variant "
        f"(at most {MAX_VARIANTS})",
    )
    variants: list[dict[str, Any]] | None = Field(
        None,
        description=f"the variants, each a mapping merged into the stage's config (at most {MAX_VARIANTS})",
    )
    select: SweepSelect = Field(description="which variant's outputs the downstream stages receive")
    max_parallel: int | None = Field(
        None, ge=1, description="how many variants may run at once in one run; default: Airflow's limits"
    )

    @model_validator(mode="after")
    def _grid_or_variants(self) -> Sweep:
        problem = variants_shape_problem(self.grid, self.variants)
        if problem:
            raise ValueError(problem)
        return self

    def expand(self) -> list[dict[str, Any]]:
        """Every variant, in order: the grid's combinations (last key fastest), or ``variants``."""
        return expand_variants(self.grid, self.variants)

    def swept_fields(self) -> frozenset[str]:
        """The config fields (top level) the variants set."""
        return frozenset(key for variant in self.expand() for key in variant)


def variants_shape_problem(grid: Any, variants: Any) -> str:
    """What is wrong with a sweep's ``grid``/``variants`` pair as a whole ('' when nothing)."""
    if (grid is None) == (variants is None):
        return "a sweep has either a 'grid' or a list of 'variants' (exactly one of them)"
    if grid is not None:
        if not grid:
            return "'grid' names no config fields; give each field a list of values"
        empty = [key for key, values in grid.items() if not values]
        if empty:
            return f"'grid' gives no values for {', '.join(map(repr, empty))}; list at least one"
        count = math.prod(len(values) for values in grid.values())
    else:
        if not variants:
            return "'variants' is empty; list at least one variant"
        count = len(variants)
    if count > MAX_VARIANTS:
        return f"the sweep has {count} variants, more than the {MAX_VARIANTS} allowed"
    return ""


def expand_variants(
    grid: Mapping[str, Sequence[Any]] | None, variants: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """The variants a grid (every combination, last key fastest) or a variants list stands for."""
    if grid is not None:
        keys = list(grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]
    return [dict(variant) for variant in variants or ()]


def variant_label(variant: Mapping[str, Any]) -> str:
    """``factors=128, regularization=50``: how the UI names a variant (its map index)."""
    return ", ".join(f"{key}={_label_value(value)}" for key, value in variant.items()) or "(stage config)"


def _label_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + variant_label(value) + "}"
    return str(value)


def check_sweep(
    stage: LocatedDict, index: int, data: LocatedDict, config_model: type[BaseModel], cache_policy: str
) -> list[Problem]:
    """The sweep of stage ``index`` against its component: fields, values, cache policy.

    Shape problems (grid xor variants, the cap, ``select``) are the model's and reported with
    the spec's other field errors; this needs the component's ``Config``.
    """
    sweep = stage.get("sweep")
    if not isinstance(sweep, LocatedDict):
        return []
    name = stage["name"]
    path = f"stages[{name}].sweep"
    if cache_policy == "never":
        return [
            Problem(
                "this stage's component has side effects (it is never cached), so it cannot be swept: "
                "every variant would repeat them",
                stage.key_locations["sweep"],
                path,
                "remove 'sweep' from this stage, or sweep the stage before it",
            )
        ]
    grid, variants = sweep.get("grid"), sweep.get("variants")
    base = stage.get("config", {})
    if not isinstance(base, dict):
        return []
    fields = list(config_model.model_fields)
    problems: list[Problem] = []
    if isinstance(grid, LocatedDict) and variants is None:
        for key, values in grid.items():
            if key not in fields:
                problems.append(
                    Problem(
                        f"'{key}' is not a config field of this stage's component",
                        grid.key_locations[key],
                        f"{path}.grid",
                        did_you_mean(key, fields) or f"its config fields: {', '.join(fields) or 'none'}",
                    )
                )
            elif isinstance(values, LocatedList):
                problems += _templated_values(values, values.item_locations, f"{path}.grid.{key}")
        if problems or variants_shape_problem(grid, None):
            return problems
        problems += _grid_value_problems(stage, index, data, grid, base, config_model, path)
    elif isinstance(variants, LocatedList) and grid is None:
        for number, variant in enumerate(variants):
            if not isinstance(variant, LocatedDict):
                continue  # the model reports it
            location = variants.item_locations[number]
            unknown = [key for key in variant if key not in fields]
            for key in unknown:
                problems.append(
                    Problem(
                        f"'{key}' is not a config field of this stage's component",
                        variant.key_locations[key],
                        f"{path}.variants[{number}]",
                        did_you_mean(key, fields) or f"its config fields: {', '.join(fields) or 'none'}",
                    )
                )
            problems += _templated_values(
                list(variant.values()), list(variant.value_locations.values()), f"{path}.variants[{number}]"
            )
            if unknown:
                continue
            try:
                config_model.model_validate(deep_merge(base, variant))
            except ValidationError as exc:
                problems += [
                    _in_variant(problem, location, number)
                    for problem in validation_problems(
                        exc,
                        data,
                        ("stages", index, "sweep", "variants", number),
                        config_model,
                        skip_templated=True,
                    )
                    if _set_by_variant(problem, variant)
                ]
    return problems


def _templated_values(values: Sequence[Any], locations: Sequence[Location], path: str) -> list[Problem]:
    return [
        Problem(
            "sweep values are not templates: they are merged into the config after it is rendered",
            location,
            path,
            "put the templated value in the stage's config, and sweep plain values",
        )
        for value, location in zip(values, locations, strict=True)
        if is_template(value)
    ]


def _grid_value_problems(
    stage: LocatedDict,
    index: int,
    data: LocatedDict,
    grid: LocatedDict,
    base: Mapping[str, Any],
    config_model: type[BaseModel],
    path: str,
) -> list[Problem]:
    """Every combination validated; a field's error at the grid value that caused it."""
    problems: list[Problem] = []
    seen: set[tuple[str, int]] = set()
    keys = list(grid)
    for positions in itertools.product(*(range(len(grid[key])) for key in keys)):
        variant = {key: grid[key][position] for key, position in zip(keys, positions, strict=True)}
        try:
            config_model.model_validate(deep_merge(base, variant))
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = error["loc"]
                key = str(loc[0]) if loc else ""
                if key in variant:
                    position = positions[keys.index(key)]
                    if (key, position) in seen:
                        continue
                    seen.add((key, position))
                    value = grid[key][position]
                    message = str(error["msg"]).removeprefix("Value error, ")
                    problems.append(
                        Problem(
                            f"{message} (got {value!r})",
                            grid[key].item_locations[position],
                            f"{path}.grid.{key}",
                            f"every value of '{key}' must be valid for the component's config",
                        )
                    )
                elif not loc and ("", 0) not in seen:  # a check across fields, for this combination
                    seen.add(("", 0))
                    problems.append(
                        Problem(
                            f"variant {variant_label(variant)}: {error['msg']}",
                            grid.location,
                            f"{path}.grid",
                            "every combination of the grid must be a valid config; use 'variants' "
                            "to list only the valid ones",
                        )
                    )
    return problems


def _set_by_variant(problem: Problem, variant: Mapping[str, Any]) -> bool:
    """Whether a config problem concerns a field the variant sets (others are the config's own)."""
    marker = ".variants["
    rest = problem.field.split(marker, 1)[-1]
    field = rest.split("].", 1)[1] if "]." in rest else ""
    return not field or field.split(".")[0].split("[")[0] in variant


def _in_variant(problem: Problem, location: Location, number: int) -> Problem:
    return Problem(
        problem.message,
        problem.location or location,
        problem.field,
        problem.suggestion or f"variant {number} must be a valid config when merged into the stage's config",
    )


def sweep_override_problems(
    stage: str,
    value: Any,
    allowed: frozenset[str],
    spec_swept: frozenset[str],
    config_overrides: Mapping[str, Any],
) -> list[str]:
    """What is wrong with a trigger's overrides of the swept ``stage`` (run time).

    ``value`` is its ``{"sweep": {"grid": ...}}`` (``None``: the spec's sweep stays, which varies
    ``spec_swept``). A trigger may replace the grid or the variants, not ``select`` or
    ``max_parallel`` (the DAG's shape); it may sweep the fields in ``allowed`` (the stage's
    overridable fields and those its spec sweeps: a trigger is not authorship); and it may not
    override a field that is also swept, which would be ambiguous.
    """
    where = f"overrides.{stage}.{SWEEP_OVERRIDE_KEY}"
    if value is None:
        both = sorted(spec_swept & set(config_overrides))
        if both:
            return [
                f"'overrides.{stage}' overrides {', '.join(both)}, which the stage's sweep varies; "
                f'replace the sweep\'s values instead: {{"{SWEEP_OVERRIDE_KEY}": {{"grid": {{...}}}}}}'
            ]
        return []
    if not isinstance(value, Mapping):
        return [f"'{where}' must be a mapping with 'grid' or 'variants'"]
    other = sorted(set(value) - {"grid", "variants"})
    if other:
        return [
            f"'{where}' may replace 'grid' or 'variants' only, not {', '.join(other)} (the spec sets them)"
        ]
    grid, variants = value.get("grid"), value.get("variants")
    if grid is not None and not (
        isinstance(grid, Mapping) and all(isinstance(v, list) for v in grid.values())
    ):
        return [f"'{where}.grid' must map config fields to lists of values"]
    if variants is not None and not (
        isinstance(variants, list) and all(isinstance(v, Mapping) for v in variants)
    ):
        return [f"'{where}.variants' must be a list of mappings"]
    shape = variants_shape_problem(grid, variants)
    if shape:
        return [f"'{where}': {shape}"]
    swept = {key for variant in expand_variants(grid, variants) for key in variant}
    problems = []
    refused = sorted(swept - allowed)
    if refused:
        problems.append(
            f"'{where}' may not sweep {', '.join(refused)}: a trigger may sweep the stage's "
            f"overridable fields and those its spec sweeps ({', '.join(sorted(allowed)) or 'none'})"
        )
    both = sorted(swept & set(config_overrides))
    if both:
        problems.append(f"'overrides.{stage}' both overrides and sweeps {', '.join(both)}; do one of them")
    return problems


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it; nested mappings merge, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _located_variants(stage: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The variants of a stage's sweep as written, or ``[]`` when it has none (or a broken one)."""
    sweep = stage.get("sweep")
    if not isinstance(sweep, Mapping):
        return []
    grid, variants = sweep.get("grid"), sweep.get("variants")
    if isinstance(grid, Mapping) and variants is None:
        if all(isinstance(values, list) and values for values in grid.values()) and grid:
            return [{key: values[0] for key, values in grid.items()}]
        return []
    if isinstance(variants, list) and grid is None:
        return [variant for variant in variants if isinstance(variant, Mapping)]
    return []


def without_swept_fields(problems: list[Problem], stage: Mapping[str, Any]) -> list[Problem]:
    """The stage config's problems, less those of fields its sweep sets (:func:`check_sweep`'s).

    A swept stage's config may leave out a required field that every variant sets.
    """
    swept = {key for variant in _located_variants(stage) for key in variant}
    if not swept:
        return problems
    prefix = f"stages[{stage.get('name')}].config."
    return [
        problem
        for problem in problems
        if not (
            problem.field.startswith(prefix)
            and problem.field[len(prefix) :].split(".")[0].split("[")[0] in swept
        )
    ]


def sweep_metric_warning(stage: LocatedDict, produces: Any, config: BaseModel | None) -> Problem | None:
    """A warning when ``select.metric`` is not among the metrics the component declares.

    A warning only: ``produces`` lists what ``run`` always returns, and it may return more.
    """
    sweep = stage.get("sweep")
    select = sweep.get("select") if isinstance(sweep, LocatedDict) else None
    metric = select.get("metric") if isinstance(select, LocatedDict) else None
    if not isinstance(metric, str) or not metric or config is None:
        return None
    try:
        declared = produces(config)
    except Exception:  # a declaration that cannot answer for this config: no check
        return None
    if declared is None or not declared.metrics or metric in declared.metrics:
        return None
    assert isinstance(select, LocatedDict)
    return Problem(
        f"the component does not declare the metric '{metric}' (it declares "
        f"{', '.join(declared.metrics)}); a variant that does not report it cannot win",
        select.value_locations["metric"],
        f"stages[{stage['name']}].sweep.select.metric",
        did_you_mean(metric, declared.metrics) or "select on a metric the stage reports",
        severity="warning",
    )
