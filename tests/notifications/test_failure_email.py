"""The failure e-mail as it reaches a real SMTP server: text and HTML alternatives, same content."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime, timezone
from email.message import EmailMessage
from html.parser import HTMLParser

import pytest

from airflow_mlpipe.notifications.failure import failure_subject, send_failure_email, task_log_url
from airflow_mlpipe.record import ExecutionRecord
from airflow_mlpipe.testing.smtp import SmtpSink

BASE_URL = "http://airflow.example.com:8080/"
RUN_ID = "manual__2024-06-01T03:00:00+00:00"
# Multi-line, with characters HTML must escape and the text part must keep as they are.
TRAIN_ERROR = 'Traceback (most recent call last):\n  File "train.py", line 3\nValueError: k <= 0 & "rank" < 1'
EVALUATE_ERROR = "RuntimeError: metric <recall@10> missing"


def record(**changes: object) -> ExecutionRecord:
    fields: dict[str, object] = {
        "pipeline": "recommender_training",
        "pipeline_version": "3.2.1",
        "config_version": "a1b2c3d4e5f6",
        "environment": "production",
        "execution_id": RUN_ID,
        "timestamp": datetime(2024, 6, 1, 3, 5, tzinfo=timezone.utc),
        "git_commit": "0123456789abcdef",
        "triggered_by": "manual",
        "stages_completed": ["extract"],
        "stages_failed": ["train", "evaluate"],
        "stages_skipped": ["register"],
        "outputs": {},
        "stage_durations": {},
        "errors": {"train": TRAIN_ERROR, "evaluate": EVALUATE_ERROR},
        "airflow_version": "3.3.2",
        "mlpipe_version": "0.0.0",
    }
    fields.update(changes)
    return ExecutionRecord.model_validate(fields)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], EmailMessage]:
    """Send the failure e-mail of a run with two failed stages; the one message the server got."""
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    with SmtpSink() as sink:
        for name, value in sink.connection_env("mlpipe_test_smtp", from_email="mlpipe@example.com").items():
            monkeypatch.setenv(name, value)
        send_failure_email(record(), ["oncall@example.com", "owner@example.com"], "mlpipe_test_smtp")
    assert len(sink.raw) == 1
    message = email.message_from_bytes(sink.raw[0], policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return sink.messages[0][0], message


class _VisibleText(HTMLParser):
    """What a reader of the HTML part sees: text, list items as '- ', links as 'text: href'."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "li":
            self.chunks.append("\n- ")
        elif tag == "a":
            self._href = dict(attrs).get("href")
        elif tag in ("p", "br", "pre", "ul"):
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href:
            self.chunks.append(f": {self._href}")
            self._href = None
        elif tag in ("p", "pre", "li", "ul"):  # blocks: what follows starts a new line
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def words(text: str) -> list[str]:
    return re.split(r"\s+", text.strip())


def test_failure_email_is_multipart_alternative_with_text_first(sent):
    recipients, message = sent

    assert sorted(recipients) == ["oncall@example.com", "owner@example.com"]
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Subject"] == failure_subject(record())
    assert message["From"] == "mlpipe@example.com"
    # A reader preferring plain text gets the text part, one preferring HTML the HTML part.
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert plain is not None and plain.get_content_type() == "text/plain"
    assert rich is not None and rich.get_content_type() == "text/html"


def test_text_and_html_parts_say_the_same(sent):
    _, message = sent
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    visible = _VisibleText()
    visible.feed(html)
    html_text = "".join(visible.chunks)

    # Word for word the same, links included.
    assert words(text) == words(html_text)
    # ...and what they say: the run, each failed stage with its error verbatim and its log.
    for value in ("recommender_training", "3.2.1", "production", RUN_ID, "a1b2c3d4e5f6", "0123456789abcdef"):
        assert value in text and value in html_text
    for stage, error in (("train", TRAIN_ERROR), ("evaluate", EVALUATE_ERROR)):
        log_url = task_log_url(BASE_URL, "recommender_training", RUN_ID, stage)
        assert f"- {stage}:" in text and f"- {stage}:" in html_text
        assert f"task log: {log_url}" in text and f'href="{log_url}"' in html
        for line in error.splitlines():
            assert f"    {line}\n" in text  # each line kept, indented under its stage
        assert error in html_text
    assert "&lt;recall@10&gt;" in html and "<recall@10>" not in html
    assert "Skipped stages: register" in text and "Completed stages: extract" in text
    assert text.index("- train:") < text.index("- evaluate:")  # the record's order


def test_stage_without_an_error_text_says_so_in_both_parts(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    with SmtpSink() as sink:
        for name, value in sink.connection_env("mlpipe_test_smtp").items():
            monkeypatch.setenv(name, value)
        send_failure_email(
            record(stages_failed=["train"], errors={"train": ""}), ["oncall@example.com"], "mlpipe_test_smtp"
        )
    message = email.message_from_bytes(sink.raw[0], policy=email.policy.default)
    assert "no error recorded" in message.get_body(preferencelist=("plain",)).get_content()
    assert "no error recorded" in message.get_body(preferencelist=("html",)).get_content()
