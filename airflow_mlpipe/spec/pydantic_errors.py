"""Pydantic's validation errors as located :class:`Problem`\\ s: file, line, field and a hint.

Pydantic reports a path (``('stages', 1, 'config', 'epochs')``) and a message; the located data
from :mod:`airflow_mlpipe.spec.reader` turns the path into the line and column that caused it,
and the model into a did-you-mean for an unknown key or the description of a missing one.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_mlpipe.spec.errors import Location, Problem
from airflow_mlpipe.spec.reader import LocatedDict, LocatedList
from airflow_mlpipe.spec.templates import is_template
from airflow_mlpipe.suggest import did_you_mean


def validation_problems(
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
        found, location, key_location, parent_location = locate(data, loc)
        field_path = field_path_of(data, loc, found, kind)
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


def locate(data: Any, loc: tuple[Any, ...]) -> tuple[int, Location, Location, Location]:
    """How many parts of ``loc`` exist in ``data``, and the locations of the deepest one found.

    The locations are the value's, its key's (the item's, in a list) and its parent's.
    """
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


def field_path_of(data: Any, loc: tuple[Any, ...], found: int, kind: str = "") -> str:
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
