"""Pipelines triggered by data: a spec's ``schedule`` as Airflow schedules on Assets.

Every pipeline's ``execution_record`` task has the pipeline's own Asset,
``x-mlpipe://pipelines/<name>``, as its outlet. That task succeeds only when every stage completed,
so the Asset is updated once per successful run, and a spec with ``schedule: {after: [name]}`` is
an Airflow DAG scheduled on it. ``schedule: {assets: [...]}`` schedules on any Airflow Assets (an
upstream DAG's outlets, an S3 object another system announces through the REST API). Both wait
for all of them by default (``AssetAll``, Airflow's ``&``), or for any (``AssetAny``, ``|``) with
``any: true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.spec import AssetSchedule

if TYPE_CHECKING:
    from airflow.sdk import Asset
    from airflow.sdk.definitions.asset import BaseAsset

#: The URI scheme of the Assets that pipelines' successful runs update. Airflow's convention for a
#: scheme no provider defines is the ``x-`` prefix: Airflow then skips URI normalisation, which
#: for any other unknown scheme loads every provider's metadata (a second or two per parse).
PIPELINE_ASSET_SCHEME = "x-mlpipe"


class ScheduleError(ValueError):
    """Airflow refused an asset of a spec's schedule (its URI normaliser, e.g. ``s3://`` without a bucket)."""


def pipeline_asset_uri(pipeline: str) -> str:
    """``x-mlpipe://pipelines/<name>``: the Asset a successful run of ``pipeline`` updates."""
    return f"{PIPELINE_ASSET_SCHEME}://pipelines/{pipeline}"


def pipeline_asset(pipeline: str) -> Asset:
    from airflow.sdk import Asset

    # Name and URI alike, as ``Asset("x-mlpipe://pipelines/x")`` in a hand-written DAG would be.
    return Asset(pipeline_asset_uri(pipeline))


def dag_schedule(schedule: str | AssetSchedule | None) -> str | BaseAsset | None:
    """What ``DAG(schedule=...)`` takes for a spec's ``metadata.schedule``."""
    if not isinstance(schedule, AssetSchedule):
        return schedule  # cron, a preset, or None: Airflow reads them as they are
    from airflow.sdk import Asset, AssetAll, AssetAny

    assets: list[Asset] = [pipeline_asset(name) for name in schedule.after]
    for uri in schedule.assets:
        try:
            assets.append(Asset(uri))
        except ValueError as exc:
            raise ScheduleError(f"Airflow refuses the asset '{uri}': {exc}") from None
    return AssetAny(*assets) if schedule.any else AssetAll(*assets)


def triggering_asset_events(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The asset events that started this run, as the Task SDK gives them to the task.

    Empty for a run not started by assets. Each event: the asset's ``uri`` and ``name``, the
    ``source_dag_id``, ``source_run_id`` and ``source_task_id`` that emitted it (``None`` for an
    event posted through the REST API), and its ``timestamp``.
    """
    from airflow.sdk import Asset

    accessor = context.get("triggering_asset_events") or {}
    events: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key in accessor:
        if not isinstance(key, Asset):
            continue  # an asset alias: its events are listed under their assets too
        for event in accessor[key]:
            entry = {
                "uri": event.asset.uri,
                "name": event.asset.name,
                "source_dag_id": event.source_dag_id,
                "source_run_id": event.source_run_id,
                "source_task_id": event.source_task_id,
                "timestamp": event.timestamp.isoformat(),
            }
            events.setdefault(tuple(entry.values()), entry)
    return sorted(events.values(), key=lambda entry: (entry["timestamp"], entry["uri"]))
