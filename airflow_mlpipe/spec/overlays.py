"""Environment overlays: ``NAME.ENV.yaml`` beside ``NAME.yaml`` overrides it.

Mappings merge deeply; ``stages`` merge by stage ``name`` (an overlay may change a stage, add one,
or remove one with ``remove: true``); every other list is replaced. Locations travel with the
values, so an error in the merged spec points into the file that supplied the value.
"""

from __future__ import annotations

from typing import Any

from airflow_mlpipe.spec.errors import Location, Problem, SpecError
from airflow_mlpipe.spec.reader import LocatedDict, LocatedList
from airflow_mlpipe.suggest import did_you_mean

REMOVE_KEY = "remove"


def merge_overlay(base: Any, overlay: Any, overlay_file: str = "<overlay>") -> Any:
    """The spec ``base`` with ``overlay`` applied, or :class:`SpecError` for overlay mistakes.

    ``overlay_file`` locates the error when the overlay is a bare scalar (which has no location).
    """
    if not isinstance(overlay, LocatedDict):
        location = getattr(overlay, "location", None) or Location(overlay_file, 1, 1)
        raise SpecError(
            [
                Problem(
                    "an overlay must be a mapping of fields to override",
                    location,
                    suggestion="write the fields to change as they appear in the base spec",
                )
            ]
        )
    if not isinstance(base, LocatedDict):
        return base  # the base's own shape error is reported when it is validated
    problems: list[Problem] = []
    if "name" in overlay and overlay["name"] != base.get("name"):
        problems.append(
            Problem(
                f"an overlay cannot rename the pipeline ('{base.get('name')}' -> '{overlay['name']}')",
                overlay.value_locations["name"],
                "name",
                "remove 'name' from the overlay",
            )
        )
    merged = _merge_mappings(base, overlay, (), problems)
    if problems:
        raise SpecError(problems)
    return merged


def _merge_mappings(
    base: LocatedDict, overlay: LocatedDict, path: tuple[str, ...], problems: list[Problem]
) -> LocatedDict:
    merged = LocatedDict(base.location)
    for key, value in base.items():
        merged.set(key, value, base.key_locations[key], base.value_locations[key])
    for key, value in overlay.items():
        current = merged.get(key)
        if (
            path == ()
            and key == "stages"
            and isinstance(current, LocatedList)
            and isinstance(value, LocatedList)
        ):
            value = _merge_stages(current, value, problems)
        elif isinstance(current, LocatedDict) and isinstance(value, LocatedDict):
            value = _merge_mappings(current, value, (*path, str(key)), problems)
        merged.set(key, value, overlay.key_locations[key], overlay.value_locations[key])
    return merged


def _merge_stages(base: LocatedList, overlay: LocatedList, problems: list[Problem]) -> LocatedList:
    by_name = {stage.get("name"): i for i, stage in enumerate(base) if isinstance(stage, LocatedDict)}
    stages: list[tuple[Any, Location] | None] = list(zip(base, base.item_locations, strict=True))
    for item, item_location in zip(overlay, overlay.item_locations, strict=True):
        if not isinstance(item, LocatedDict) or not isinstance(item.get("name"), str):
            problems.append(
                Problem(
                    "each overlay stage must be a mapping with the 'name' of the stage it changes",
                    item_location,
                    "stages",
                )
            )
            continue
        name = item["name"]
        removing = item.get(REMOVE_KEY) is True
        index = by_name.get(name)
        if index is None:
            if removing or "component" not in item:
                problems.append(
                    Problem(
                        f"the overlay names stage '{name}', which the base spec does not have",
                        item.value_locations["name"],
                        f"stages[{name}]",
                        did_you_mean(name, [n for n in by_name if isinstance(n, str)])
                        or "to add a new stage, give it a 'component'",
                    )
                )
                continue
            stages.append((_without(item, REMOVE_KEY) if REMOVE_KEY in item else item, item_location))
            by_name[name] = len(stages) - 1
        elif stages[index] is None:
            problems.append(
                Problem(
                    f"the overlay names stage '{name}' after removing it",
                    item.value_locations["name"],
                    f"stages[{name}]",
                    "name each stage once in an overlay",
                )
            )
        elif removing:
            extra = set(item) - {"name", REMOVE_KEY}
            if extra:
                problems.append(
                    Problem(
                        f"a stage marked 'remove: true' cannot also set {sorted(extra)}",
                        item.location,
                        f"stages[{name}]",
                    )
                )
            stages[index] = None
        else:
            if REMOVE_KEY in item:
                item = _without(item, REMOVE_KEY)
            base_stage, base_location = stages[index]  # type: ignore[misc]
            stages[index] = (_merge_mappings(base_stage, item, ("stages", name), problems), base_location)
    merged = LocatedList(base.location)
    for entry in stages:
        if entry is not None:
            merged.add(*entry)
    return merged


def _without(mapping: LocatedDict, key: str) -> LocatedDict:
    copy = LocatedDict(mapping.location)
    for k, v in mapping.items():
        if k != key:
            copy.set(k, v, mapping.key_locations[k], mapping.value_locations[k])
    return copy
