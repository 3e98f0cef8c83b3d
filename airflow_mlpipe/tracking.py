"""What a pipeline run sends to an experiment tracker, built from its execution record.

With ``[mlpipe] mlflow_tracking_uri`` set (or ``MLFLOW_TRACKING_URI``), the ``execution_record``
task logs the run to MLflow: one MLflow run per pipeline run, in an experiment named after the
pipeline, named after the Airflow run id. This module turns the record into MLflow's vocabulary
(params, metrics, tags, status) with pure functions, and :func:`track_run` hands them to
:class:`airflow_mlpipe.hooks.mlflow.MlflowHook`. Nothing here imports MLflow: the hook does, and
only when tracking is on.

Tracking must never change a run's outcome: any error (an unreachable server, a refused value)
is a warning in the task log and ``tracking.mlflow.status = "skipped"`` in the record.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from airflow_mlpipe.record import ExecutionRecord

#: MLflow refuses longer param values (``MAX_PARAM_VAL_LENGTH``); a longer value is cut, marked.
MAX_PARAM_VALUE = 6000
#: MLflow refuses longer tag values on runs (``MAX_TAG_VAL_LENGTH``).
MAX_TAG_VALUE = 8000
#: Characters MLflow allows in param, metric and tag names; anything else becomes ``_``
#: (``recall@10`` is logged as ``recall_at_10``, ``@`` being common in ranking metrics).
_INVALID_KEY_CHARS = re.compile(r"[^\w.\- :/]")

Status = Literal["FINISHED", "FAILED"]
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


class TrackingOutcome(BaseModel):
    """What became of logging the run to one tracker (the record's ``tracking.<tracker>``)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["logged", "skipped"]
    reason: str | None = Field(None, description="why it was skipped")
    tracking_uri: str | None = Field(None, description="the tracking server (credentials removed)")
    experiment_id: str | None = None
    run_id: str | None = Field(None, description="the tracker's run id")
    run_url: str | None = Field(None, description="the run's page in the tracker's UI, where there is one")


def metric_key(name: str) -> str:
    """``name`` as MLflow accepts it: ``@`` as ``_at_``, other characters it refuses as ``_``."""
    return _INVALID_KEY_CHARS.sub("_", name.replace("@", "_at_"))


def flatten(config: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """``(prefix.key, value)`` for every leaf of ``config``, nested keys joined with dots.

    Lists stay one value (a sweep grid or a metric list is one setting, not many).
    """
    for key, value in config.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, name)
        else:
            yield name, value


def params(record: ExecutionRecord) -> dict[str, str]:
    """Each completed stage's resolved config as ``<stage>.<key>`` params, secrets masked.

    The stages already masked their configs when they pushed them (sensitive key names and the
    secrets their process knew); masking each flattened value again by its dotted name covers a
    key that is only sensitive with its prefix (``db.password`` under a ``db`` mapping).
    """
    from airflow.sdk.log import redact

    values: dict[str, str] = {}
    for stage, config in record.configs.items():
        for name, value in flatten(config, stage):
            # By its name inside the config: a stage called ``token_counts`` hides nothing.
            masked = redact(value, name=name.split(".", 1)[1])
            text = masked if isinstance(masked, str) else json.dumps(masked, sort_keys=True, default=str)
            if len(text) > MAX_PARAM_VALUE:
                text = text[: MAX_PARAM_VALUE - 3] + "..."
            values[metric_key(name)] = text
    return values


def metrics(record: ExecutionRecord) -> dict[str, float]:
    """Every stage's metrics as ``<stage>.<metric>``."""
    return {
        metric_key(f"{stage}.{name}"): float(value)
        for stage, outputs in record.outputs.items()
        for name, value in outputs.metrics.items()
    }


def tags(record: ExecutionRecord) -> dict[str, str]:
    """Provenance tags, and the URI of every artifact as ``mlpipe.artifact.<stage>.<name>``."""
    values = {
        "mlpipe.pipeline": record.pipeline,
        "mlpipe.pipeline_version": record.pipeline_version,
        "mlpipe.config_version": record.config_version,
        "mlpipe.git_commit": record.git_commit,
        "mlpipe.run_id": record.execution_id,
        "mlpipe.environment": record.environment,
        "mlpipe.triggered_by": record.triggered_by,
        "mlpipe.stages_completed": ",".join(record.stages_completed),
        "mlpipe.stages_failed": ",".join(record.stages_failed),
        "mlpipe.stages_skipped": ",".join(record.stages_skipped),
    }
    if record.triggered_by_user:
        values["mlpipe.triggered_by_user"] = record.triggered_by_user
    for stage, outputs in record.outputs.items():
        for name, uri in outputs.artifacts.items():
            values[metric_key(f"mlpipe.artifact.{stage}.{name}")] = uri[:MAX_TAG_VALUE]
    return values


def run_key(pipeline: str, environment: str, run_id: str) -> dict[str, str]:
    """The tags that find a pipeline run's MLflow run again (run ids are unique per DAG only,
    and one experiment may hold the same pipeline's runs from several environments)."""
    return {"mlpipe.pipeline": pipeline, "mlpipe.environment": environment, "mlpipe.run_id": run_id}


def public_uri(uri: str) -> str:
    """``uri`` without user and password, as the record may show it."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def track_run(
    record: ExecutionRecord,
    tracking_uri: str,
    status: Status,
    log: logging.Logger | Any,
    start_time_ms: int | None = None,
) -> TrackingOutcome:
    """Log ``record`` as one MLflow run ending ``status``; never raises.

    Everything goes in a few ``log_batch`` calls (one HTTP request each) after the run is
    found or created, then the run is ended with ``status``.
    """
    shown_uri = public_uri(tracking_uri)
    try:
        from airflow_mlpipe.hooks.mlflow import MlflowHook

        hook = MlflowHook(tracking_uri)
        experiment_id = hook.experiment_id(record.pipeline)
        run_id = hook.pipeline_run(
            experiment_id,
            record.execution_id,
            run_key(record.pipeline, record.environment, record.execution_id),
            start_time_ms=start_time_ms,
        )
        hook.log_batch(run_id, params=params(record), metrics=metrics(record), tags=tags(record))
        hook.end_run(run_id, status)
    except Exception as exc:  # tracking is best effort: the run's outcome is the pipeline's
        from airflow.sdk.log import redact

        # MLflow's errors quote the URL they called, credentials included.
        reason = _USERINFO.sub(r"\1", f"{type(exc).__name__}: {exc}")
        if isinstance(exc, ImportError):
            reason += '; install the extra where tasks run: pip install "airflow-mlpipe[mlflow]"'
        reason = str(redact(reason))[:500]
        log.warning("MLflow tracking skipped (%s): %s", shown_uri, reason)
        return TrackingOutcome(status="skipped", reason=reason, tracking_uri=shown_uri)
    outcome = TrackingOutcome(
        status="logged",
        tracking_uri=shown_uri,
        experiment_id=experiment_id,
        run_id=run_id,
        run_url=hook.run_url(experiment_id, run_id),
    )
    log.info(
        "Logged to MLflow: experiment %s, run %s (%s)", experiment_id, run_id, outcome.run_url or shown_uri
    )
    return outcome
