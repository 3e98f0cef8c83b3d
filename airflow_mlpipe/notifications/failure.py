"""The e-mail sent once per failed run: text and HTML alternatives, through the SMTP provider's hook."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any
from urllib.parse import quote

from airflow.providers.smtp.hooks.smtp import SmtpHook

from airflow_mlpipe.record import ExecutionRecord


@dataclass(frozen=True)
class _FailedStage:
    name: str
    error: str
    log_url: str


@dataclass(frozen=True)
class _Summary:
    """What both parts of the e-mail say, so that the text and the HTML cannot drift apart."""

    pipeline: str
    version: str
    config_version: str
    git_commit: str
    environment: str
    run_id: str
    triggered_by: str
    failed: tuple[_FailedStage, ...]
    skipped: str
    completed: str


def _summary(record: ExecutionRecord, log_urls: Mapping[str, str]) -> _Summary:
    return _Summary(
        pipeline=record.pipeline,
        version=record.pipeline_version,
        config_version=record.config_version,
        git_commit=record.git_commit,
        environment=record.environment,
        run_id=record.execution_id,
        triggered_by=record.triggered_by,
        failed=tuple(
            _FailedStage(stage, record.errors.get(stage) or "no error recorded", log_urls[stage])
            for stage in record.stages_failed
        ),
        skipped=", ".join(record.stages_skipped) or "none",
        completed=", ".join(record.stages_completed) or "none",
    )


def failure_subject(record: ExecutionRecord) -> str:
    return (
        f"[mlpipe] {record.pipeline} {record.pipeline_version} failed "
        f"({record.environment}, run {record.execution_id})"
    )


def failure_body(record: ExecutionRecord, log_urls: Mapping[str, str]) -> str:
    """HTML listing the failed stages with their errors and links to their task logs."""
    s = _summary(record, log_urls)
    e = html.escape
    rows = "".join(
        f"<li><b>{e(stage.name)}</b>: <pre>{e(stage.error)}</pre>"
        f'<a href="{e(stage.log_url)}">task log</a></li>'
        for stage in s.failed
    )
    return (
        f"<p>Pipeline <b>{e(s.pipeline)}</b> version {e(s.version)} "
        f"(config {e(s.config_version)}, commit {e(s.git_commit)}) failed in "
        f"environment <b>{e(s.environment)}</b>, run {e(s.run_id)}, "
        f"triggered by {e(s.triggered_by)}.</p>"
        f"<p>Failed stages:</p><ul>{rows}</ul>"
        f"<p>Skipped stages: {e(s.skipped)}<br>Completed stages: {e(s.completed)}</p>"
    )


def failure_text(record: ExecutionRecord, log_urls: Mapping[str, str]) -> str:
    """The same content as :func:`failure_body`, as plain text (errors verbatim, indented)."""
    s = _summary(record, log_urls)
    stages = "\n".join(
        f"- {stage.name}:\n"
        + "".join(f"    {line}\n" for line in stage.error.splitlines() or [""])
        + f"  task log: {stage.log_url}\n"
        for stage in s.failed
    )
    return (
        f"Pipeline {s.pipeline} version {s.version} (config {s.config_version}, commit {s.git_commit}) "
        f"failed in environment {s.environment}, run {s.run_id}, triggered by {s.triggered_by}.\n\n"
        f"Failed stages:\n\n{stages}\n"
        f"Skipped stages: {s.skipped}\n"
        f"Completed stages: {s.completed}\n"
    )


def task_log_url(base_url: str, dag_id: str, run_id: str, task_id: str) -> str:
    """The Airflow 3 UI page of a task instance, whose Logs tab shows its log."""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}/tasks/{quote(task_id)}"


class _TextAndHtmlSmtpHook(SmtpHook):
    """``SmtpHook`` whose message is multipart/alternative: a text/plain part, then the HTML one.

    ``SmtpNotifier`` and ``SmtpHook.send_email_smtp`` take HTML only and build the message with
    one text/html part, so only that step is replaced; the connection, TLS, login, sender
    fallback, retries and headers stay the provider's.
    """

    def __init__(self, smtp_conn_id: str, text_content: str) -> None:
        super().__init__(smtp_conn_id=smtp_conn_id)
        self.text_content = text_content

    def _build_mime_message(self, *args: Any, **kwargs: Any) -> tuple[MIMEMultipart, list[str]]:
        message, recipients = super()._build_mime_message(*args, **kwargs)
        charset = kwargs.get("mime_charset", "utf-8")
        # RFC 2046 5.1.4: alternatives go from the plainest to the richest, so text comes first.
        message.set_payload([MIMEText(self.text_content, "plain", charset), *message.get_payload()])
        return message, recipients


def send_failure_email(record: ExecutionRecord, recipients: list[str], smtp_conn_id: str) -> None:
    """Send the failure e-mail; raises whatever the SMTP hook raises.

    Nothing is rendered as Jinja (the notifier would render its fields): error texts are quoted.
    """
    from airflow.configuration import conf

    base_url = conf.get("api", "base_url", fallback="http://localhost:8080/")
    log_urls = {
        stage: task_log_url(base_url, record.pipeline, record.execution_id, stage)
        for stage in record.stages_failed
    }
    with _TextAndHtmlSmtpHook(smtp_conn_id, failure_text(record, log_urls)) as hook:
        hook.send_email_smtp(
            to=recipients,
            # None: the connection's from_email extra.
            from_email=conf.get("email", "from_email", fallback=None) or None,
            subject=failure_subject(record),
            html_content=failure_body(record, log_urls),
            mime_subtype="alternative",
        )
