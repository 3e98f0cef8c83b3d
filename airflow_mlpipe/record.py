"""The execution record: what ran, from which spec and commit, who started it, what came out.

Built by the ``execution_record`` task at the end of every run (success or not) and stored as
that task's XCom (``return_value``). Pure functions here; the operator gathers the inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from airflow_mlpipe.approvals import ApprovalDecision
from airflow_mlpipe.contract import StageOutputs
from airflow_mlpipe.sweeps import SweepOutcome
from airflow_mlpipe.tracking import TrackingOutcome

RECORD_TASK_ID = "execution_record"

_COMPLETED_STATES = {"success"}
_FAILED_STATES = {"failed"}
#: How a run was started, in the record's words.
TriggeredBy = Literal["schedule", "manual", "api", "backfill", "asset"]

_TRIGGERED_BY: dict[str, TriggeredBy] = {
    "scheduled": "schedule",
    "manual": "manual",
    "backfill": "backfill",
    "asset_triggered": "asset",
    "asset_materialization": "asset",
    "operator_triggered": "manual",
}


class TriggeringAssetEvent(BaseModel):
    """An asset event that started the run (``schedule: {after: ...}`` or ``{assets: ...}``)."""

    model_config = ConfigDict(extra="forbid")

    uri: str
    name: str
    source_dag_id: str | None = Field(None, description="the DAG that emitted it; None if posted via the API")
    source_run_id: str | None = None
    source_task_id: str | None = None
    timestamp: AwareDatetime


class ExecutionRecord(BaseModel):
    """One pipeline run, for auditing (the seed's ``ExecutionRecord``, extended)."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str
    pipeline_version: str
    config_version: str
    environment: str
    execution_id: str = Field(description="the Airflow run id")
    timestamp: AwareDatetime = Field(description="when the record was written (ISO 8601, UTC)")
    git_commit: str
    triggered_by: TriggeredBy = Field(description="schedule, manual, api, backfill or asset")
    triggered_by_user: str | None = None
    triggering_asset_events: list[TriggeringAssetEvent] = Field(
        default_factory=list, description="for triggered_by asset: the asset events that started the run"
    )
    stages_completed: list[str]
    stages_failed: list[str]
    stages_skipped: list[str] = Field(description="upstream-failed, skipped or not run")
    outputs: dict[str, StageOutputs] = Field(description="stage -> artifacts and metrics")
    stage_durations: dict[str, float] = Field(description="stage -> seconds")
    errors: dict[str, str] = Field(default_factory=dict, description="failed stage -> error")
    fingerprints: dict[str, str] = Field(
        default_factory=dict, description="stage -> fingerprint of what its run depended on"
    )
    configs: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="completed stage -> its resolved config (secrets masked)"
    )
    stages_cached: list[str] = Field(default_factory=list, description="completed from the stage cache")
    cached_from: dict[str, str] = Field(
        default_factory=dict, description="cached stage -> run id of the run that computed it"
    )
    overrides: dict[str, Any] = Field(default_factory=dict, description="trigger-time config overrides")
    sweeps: dict[str, SweepOutcome] = Field(
        default_factory=dict,
        description="swept stage -> every variant (config, metrics, state, error) and the selected one",
    )
    approvals: dict[str, ApprovalDecision] = Field(
        default_factory=dict, description="gated stage -> who approved or rejected it, and when"
    )
    replay_of: str | None = Field(None, description="the run this run replays (mlpipe replay)")
    replay_matches: bool | None = Field(
        None, description="for a replay: whether every metric and artifact digest equals the original's"
    )
    replay_differences: dict[str, Any] = Field(
        default_factory=dict, description="for a replay: stage -> the metrics and artifacts that differ"
    )
    tracking: dict[str, TrackingOutcome] = Field(
        default_factory=dict,
        description="tracker (mlflow) -> logged (with its run) or skipped (with the reason); empty when off",
    )
    airflow_version: str
    mlpipe_version: str

    @property
    def succeeded(self) -> bool:
        return not self.stages_failed and not self.stages_skipped


def triggered_by(run_type: str | None) -> TriggeredBy:
    """Map Airflow's run type to the record's vocabulary.

    The Task SDK exposes the run type but not whether a manual run came from the UI, the CLI or
    the REST API, so all manual runs are ``manual``; ``triggered_by_user`` says who.
    """
    value = getattr(run_type, "value", run_type)
    return _TRIGGERED_BY.get(str(value), "manual")


# Airflow's dag_run.triggered_by column (DagRunTriggeredByType), in the record's vocabulary.
_TRIGGER_SOURCES: dict[str, TriggeredBy] = {
    "rest_api": "api",
    "ui": "manual",
    "cli": "manual",
    "operator": "manual",
    "test": "manual",
    "timetable": "schedule",
    "asset": "asset",
    "backfill": "backfill",
}


def triggered_by_source(trigger_source: str | None, run_type: str | None) -> TriggeredBy:
    """``triggered_by`` from the run's trigger source, which the metadata database knows.

    This is what the record would say if tasks could see the source: an API-triggered run is
    ``api``. Readers with database access (the ML Pipelines page's API) use it.
    """
    if trigger_source in _TRIGGER_SOURCES:
        return _TRIGGER_SOURCES[trigger_source]
    return triggered_by(run_type)


def classify_stages(
    stages: list[str], states: Mapping[str, str | None]
) -> tuple[list[str], list[str], list[str]]:
    """Split stages into completed, failed and skipped (anything else, e.g. upstream_failed)."""
    completed = [s for s in stages if states.get(s) in _COMPLETED_STATES]
    failed = [s for s in stages if states.get(s) in _FAILED_STATES]
    skipped = [s for s in stages if s not in completed and s not in failed]
    return completed, failed, skipped
