"""The e-mail sent once per failed run, through the SMTP provider's ``SmtpNotifier``."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from airflow_mlpipe.record import ExecutionRecord


def failure_subject(record: ExecutionRecord) -> str:
    return (
        f"[mlpipe] {record.pipeline} {record.pipeline_version} failed "
        f"({record.environment}, run {record.execution_id})"
    )


def failure_body(record: ExecutionRecord, log_urls: Mapping[str, str]) -> str:
    """HTML listing the failed stages with their errors and links to their task logs."""
    rows = "".join(
        f"<li><b>{html.escape(stage)}</b>: "
        f"<pre>{html.escape(record.errors.get(stage, 'no error recorded'))}</pre>"
        f'<a href="{html.escape(log_urls[stage])}">task log</a></li>'
        for stage in record.stages_failed
    )
    skipped = ", ".join(record.stages_skipped) or "none"
    completed = ", ".join(record.stages_completed) or "none"
    return (
        f"<p>Pipeline <b>{html.escape(record.pipeline)}</b> version {html.escape(record.pipeline_version)} "
        f"(config {html.escape(record.config_version)}, commit {html.escape(record.git_commit)}) failed in "
        f"environment <b>{html.escape(record.environment)}</b>, run {html.escape(record.execution_id)}, "
        f"triggered by {html.escape(record.triggered_by)}.</p>"
        f"<p>Failed stages:</p><ul>{rows}</ul>"
        f"<p>Skipped stages: {html.escape(skipped)}<br>Completed stages: {html.escape(completed)}</p>"
    )


def task_log_url(base_url: str, dag_id: str, run_id: str, task_id: str) -> str:
    """The Airflow 3 UI page of a task instance, whose Logs tab shows its log."""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}/tasks/{quote(task_id)}"


def send_failure_email(
    record: ExecutionRecord, recipients: list[str], smtp_conn_id: str, context: Mapping[str, Any]
) -> None:
    """Send the failure e-mail; raises whatever the SMTP hook raises."""
    from airflow.configuration import conf
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    base_url = conf.get("api", "base_url", fallback="http://localhost:8080/")
    log_urls = {
        stage: task_log_url(base_url, record.pipeline, record.execution_id, stage)
        for stage in record.stages_failed
    }
    notifier = SmtpNotifier(
        to=recipients,
        from_email=conf.get("email", "from_email", fallback=None) or None,
        subject=failure_subject(record),
        html_content=failure_body(record, log_urls),
        smtp_conn_id=smtp_conn_id,
    )
    # notify() directly, not notifier(context): error texts must not be rendered as Jinja.
    notifier.notify(context)  # type: ignore[arg-type]
