"""``ExecutionRecordOperator``: the last task of every pipeline run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, TriggerRule

from airflow_mlpipe import __version__, settings
from airflow_mlpipe.approvals import declined_stages, recorded_decisions
from airflow_mlpipe.pipeline_run import (
    ERROR_XCOM_KEY,
    OVERRIDES_PARAM,
    REPLAY_PARAM,
    PipelineRef,
    StageResult,
    error_text,
    resolve_git_commit,
)
from airflow_mlpipe.record import RECORD_TASK_ID, ExecutionRecord, classify_stages, triggered_by
from airflow_mlpipe.schedules import triggering_asset_events
from airflow_mlpipe.sweeps import SWEEP_XCOM_KEY

if TYPE_CHECKING:
    from airflow.sdk import Context


class ExecutionRecordOperator(BaseOperator):
    """
    Write the run's :class:`~airflow_mlpipe.record.ExecutionRecord` as this task's XCom.

    Runs whatever happened upstream (trigger rule ``all_done``). When a stage failed it still
    writes the record, e-mails ``notify_on_failure`` once, and then fails itself: as the DAG's only
    leaf, a successful record task would otherwise mark a failed run successful. When the only
    stages that did not complete are those a person rejected (or let time out) at an approval
    gate, it writes the record and ends skipped: the run succeeds, but without updating the
    pipeline's Asset, so pipelines scheduled ``after`` it do not start.

    :param pipeline: the pipeline this run belongs to
    :param notify_on_failure: addresses for the failure e-mail
    """

    ui_color = "#fdf2e8"

    def __init__(
        self,
        *,
        pipeline: PipelineRef,
        notify_on_failure: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.stages = list(pipeline.stages)
        self.notify_on_failure = list(notify_on_failure)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        record = self.build_record(context)
        record = self._track(record, context)
        value = record.model_dump(mode="json")
        self.log.info(
            "Execution record: completed=%s failed=%s skipped=%s",
            record.stages_completed,
            record.stages_failed,
            record.stages_skipped,
        )
        if record.succeeded:
            return value  # Airflow pushes it as the return_value XCom
        # Failing the task below means no return value: push the record ourselves first.
        context["ti"].xcom_push(key="return_value", value=value)
        if record.stages_failed:
            self._notify(record)
        elif set(record.stages_skipped) <= declined_stages(self.dag, record.approvals):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(
                f"pipeline '{record.pipeline}': approval declined for {sorted(record.approvals)}; "
                f"skipped={record.stages_skipped}; the execution record was written"
            )
        raise AirflowFailException(
            f"pipeline '{record.pipeline}' did not complete: failed={record.stages_failed} "
            f"skipped={record.stages_skipped}; the execution record was written"
        )

    def build_record(self, context: Context) -> ExecutionRecord:
        from airflow import __version__ as airflow_version

        ti = context["ti"]
        dag_run = context["dag_run"]
        breadcrumbs = task_breadcrumbs(ti)
        states = {stage: breadcrumbs.get(stage, {}).get("state") for stage in self.stages}
        completed, failed, skipped = classify_stages(self.stages, states)
        results = {stage: StageResult.from_xcom(ti.xcom_pull(task_ids=stage)) for stage in completed}
        # Stages mask their errors when they push them; masking again here costs nothing and
        # covers an error pushed by other code.
        errors = {
            stage: error_text(str(ti.xcom_pull(task_ids=stage, key=ERROR_XCOM_KEY) or "")) for stage in failed
        }
        durations = {
            stage: round(float(breadcrumbs[stage]["duration"]), 3)
            for stage in self.stages
            if breadcrumbs.get(stage, {}).get("duration") is not None
        }
        conf = dag_run.conf or {}
        record = ExecutionRecord(
            pipeline=self.pipeline.name,
            pipeline_version=self.pipeline.version,
            config_version=self.pipeline.config_version,
            environment=self.pipeline.environment,
            execution_id=ti.run_id,
            timestamp=datetime.now(timezone.utc).replace(microsecond=0),
            git_commit=resolve_git_commit(context, self.pipeline.sources),
            triggered_by=triggered_by(dag_run.run_type),
            triggered_by_user=getattr(dag_run, "triggering_user_name", None),
            triggering_asset_events=triggering_asset_events(context),
            stages_completed=completed,
            stages_failed=failed,
            stages_skipped=skipped,
            outputs={stage: result.outputs for stage, result in results.items()},
            stage_durations=durations,
            errors=errors,
            fingerprints={
                stage: result.fingerprint for stage, result in results.items() if result.fingerprint
            },
            stages_cached=[stage for stage, result in results.items() if result.cached_from],
            cached_from={
                stage: result.cached_from for stage, result in results.items() if result.cached_from
            },
            configs={stage: result.config for stage, result in results.items()},
            overrides=dict(conf.get(OVERRIDES_PARAM) or {}),
            sweeps={
                stage: sweep
                for stage in self.pipeline.swept
                if (sweep := ti.xcom_pull(task_ids=stage, key=SWEEP_XCOM_KEY)) is not None
            },
            approvals=recorded_decisions(ti, self.stages, set(self.dag.task_ids)),
            airflow_version=airflow_version,
            mlpipe_version=__version__,
        )
        replay_of = conf.get(REPLAY_PARAM)
        if replay_of:
            record = self._with_replay_check(record, str(replay_of), ti)
        return record

    def _with_replay_check(self, record: ExecutionRecord, replay_of: str, ti: Any) -> ExecutionRecord:
        """The record of a replay, with how its outputs compare to the original run's."""
        from airflow_mlpipe.compare import output_differences

        original = ti.xcom_pull(task_ids=RECORD_TASK_ID, run_id=replay_of)
        if not original:
            self.log.warning("The replayed run %s has no execution record to compare with", replay_of)
            return record.model_copy(update={"replay_of": replay_of, "replay_matches": False})
        differences = {
            stage: difference
            for stage, difference in output_differences(original, record.model_dump(mode="json")).items()
            if stage not in self.pipeline.side_effects  # a registry's new version is not a difference
        }
        if differences:
            self.log.info("The replay differs from run %s: %s", replay_of, differences)
        return record.model_copy(
            update={
                "replay_of": replay_of,
                "replay_matches": not differences,
                "replay_differences": differences,
            }
        )

    def _track(self, record: ExecutionRecord, context: Context) -> ExecutionRecord:
        """The record with what became of logging it to MLflow (when a tracking URI is set)."""
        tracking_uri = settings.mlflow_tracking_uri()
        if not tracking_uri:
            return record  # off: MLflow is not even imported
        from airflow_mlpipe.tracking import Status, track_run

        # The MLflow run ends as the Airflow run will: a run declined at an approval gate succeeds.
        declined_only = not record.stages_failed and set(record.stages_skipped) <= declined_stages(
            self.dag, record.approvals
        )
        status: Status = "FINISHED" if record.succeeded or declined_only else "FAILED"
        started = getattr(context.get("dag_run"), "start_date", None)
        start_time_ms = int(started.timestamp() * 1000) if isinstance(started, datetime) else None
        outcome = track_run(record, tracking_uri, status, self.log, start_time_ms=start_time_ms)
        return record.model_copy(update={"tracking": {**record.tracking, "mlflow": outcome}})

    def _notify(self, record: ExecutionRecord) -> None:
        if not self.notify_on_failure:
            return
        from airflow_mlpipe.notifications.failure import send_failure_email

        try:
            send_failure_email(record, self.notify_on_failure, settings.smtp_conn_id())
        except Exception:
            # A mail outage must not cost the run its record or change its outcome.
            self.log.exception("Could not send the failure e-mail to %s", self.notify_on_failure)
        else:
            self.log.info("Sent the failure e-mail to %s", self.notify_on_failure)


def task_breadcrumbs(ti: Any) -> dict[str, dict[str, Any]]:
    """State (and, where the Task SDK reports it, duration) of each finished task of this run."""
    get_breadcrumbs = getattr(ti, "get_task_breadcrumbs", None)
    if get_breadcrumbs is not None:
        return {crumb["task_id"]: crumb for crumb in get_breadcrumbs(ti.dag_id, ti.run_id)}
    # Older Task SDKs only report states.
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    return {task_id: {"task_id": task_id, "state": state} for task_id, state in states.items()}
