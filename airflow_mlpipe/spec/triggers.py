"""Checks across the specs of a folder: pipelines scheduled ``after`` other pipelines.

A spec with ``schedule: {after: [a, b]}`` runs when runs of ``a`` and ``b`` succeed. Whether those
pipelines exist, and whether the pipelines wait for each other in a circle (so that none would
ever run, or each would start the next forever), can only be told from the whole folder: these
checks run when a folder is loaded as a whole (``mlpipe validate FOLDER``, the dag-processor's
parse), not when one spec is (a worker starting a task, ``mlpipe validate FILE``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from airflow_mlpipe.spec.checks import find_cycle
from airflow_mlpipe.spec.errors import Location, Problem
from airflow_mlpipe.spec.reader import LocatedDict, LocatedList
from airflow_mlpipe.suggest import did_you_mean

FIELD = "metadata.schedule.after"


@dataclass(frozen=True)
class AfterReference:
    """One name in a spec's ``schedule.after``, where it was written."""

    pipeline: str
    location: Location


def after_references(data: object) -> list[AfterReference]:
    """The names in a spec's ``metadata.schedule.after`` with their locations (none if absent)."""
    metadata = data.get("metadata") if isinstance(data, LocatedDict) else None
    schedule = metadata.get("schedule") if isinstance(metadata, LocatedDict) else None
    after = schedule.get("after") if isinstance(schedule, LocatedDict) else None
    if not isinstance(after, LocatedList):
        return []
    return [
        AfterReference(name, location)
        for name, location in zip(after, after.item_locations, strict=True)
        if isinstance(name, str)
    ]


def check_after(
    references: Mapping[str, list[AfterReference]], known: Collection[str]
) -> dict[str, list[Problem]]:
    """Problems per pipeline: ``after`` naming a pipeline not in ``known``, and cycles.

    ``references`` maps each loaded pipeline to its ``after`` names; ``known`` is every pipeline
    name of the folder (valid or not: a broken spec's own problems say what is wrong with it).
    """
    problems: dict[str, list[Problem]] = {}
    graph: dict[str, list[str]] = {}
    for pipeline, refs in references.items():
        graph[pipeline] = []
        for ref in refs:
            if ref.pipeline in known:
                graph[pipeline].append(ref.pipeline)
                continue
            others = sorted(set(known) - {pipeline})
            problems.setdefault(pipeline, []).append(
                Problem(
                    f"pipeline '{pipeline}' runs after unknown pipeline '{ref.pipeline}'",
                    ref.location,
                    FIELD,
                    did_you_mean(ref.pipeline, others)
                    or (
                        f"pipelines in this folder: {', '.join(others)}"
                        if others
                        else "no other pipeline is in this folder; 'after' names pipelines of the same folder"
                    ),
                )
            )
    reported: set[str] = set()
    while cycle := find_cycle({name: targets for name, targets in graph.items() if name not in reported}):
        members = cycle[:-1]
        for index, pipeline in enumerate(members):
            target = cycle[index + 1]
            where = next(ref.location for ref in references[pipeline] if ref.pipeline == target)
            text = " -> ".join(cycle[index:-1] + cycle[: index + 1])
            problems.setdefault(pipeline, []).append(
                Problem(
                    f"pipeline '{pipeline}' runs after itself"
                    if target == pipeline
                    else f"pipelines run after each other in a cycle: {text}",
                    where,
                    FIELD,
                    f"remove '{target}' from the 'after' of '{pipeline}'"
                    if target == pipeline
                    else f"a pipeline cannot wait for itself through others: remove '{target}' from "
                    f"'{pipeline}' or break the cycle at another of its pipelines",
                )
            )
        reported |= set(members)
    return problems
