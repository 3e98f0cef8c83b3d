"""Pipelines run for real with ``airflow dags test`` on SQLite: records, overrides, failure e-mails."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from airflow_mlpipe import __version__
from airflow_mlpipe.testing.smtp import SmtpSink, html_body, text_body

pytestmark = pytest.mark.airflow

TINY = """\
name: tiny
version: 2.0.1
metadata:
  owner: team-tiny
  schedule: null
  notify_on_failure: ["owner@example.com", "oncall@example.com"]
stages:
  - name: first
    component: mlpipe_test_steps.steps
    config: {{value: 3, label: "{{{{ ds }}}}"}}
  - name: second
    component: mlpipe_test_steps.steps
    config: {{value: 5}}
    dependencies: [first]
  - name: third
    component: mlpipe_test_steps.steps
    config: {{fail: {fail}}}
    dependencies: [first]
    retries: 1
    retry_delay: 1
  - name: fourth
    component: mlpipe_test_steps.steps
    dependencies: [third]
"""


@pytest.fixture
def smtp_sink():
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def git_spec_repo(tmp_path: Path) -> Path:
    """A git repository holding the specs, committed, as a team's repo would be."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def commit_all(repo: Path) -> str:
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "specs"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_failed_stage_gives_failed_run_full_record_and_exactly_one_email(
    mlpipe_sandbox, git_spec_repo, smtp_sink, subprocess_env
):
    (git_spec_repo / "tiny.yaml").write_text(TINY.format(fail="true"))
    head = commit_all(git_spec_repo)

    run = mlpipe_sandbox.run(git_spec_repo, "tiny", env={**subprocess_env, **smtp_sink.connection_env()})

    assert run.state == "failed", run.output[-3000:]
    assert run.task_states == {
        "first": "success",
        "second": "success",
        "third": "failed",
        "fourth": "upstream_failed",
        "execution_record": "failed",
    }
    record = run.record
    assert record is not None, "the record must be written even though the run failed"
    assert record["pipeline"] == "tiny"
    assert record["pipeline_version"] == "2.0.1"
    assert record["environment"] == "dev"
    assert len(record["config_version"]) == 12
    assert record["execution_id"] == run.run_id
    assert record["git_commit"] == head
    assert record["triggered_by"] == "manual"
    assert record["stages_completed"] == ["first", "second"]
    assert record["stages_failed"] == ["third"]
    assert record["stages_skipped"] == ["fourth"]
    assert "RuntimeError: boom in stage third" in record["errors"]["third"]
    assert record["outputs"]["second"]["metrics"] == {"value": 5.0}
    assert set(record["stage_durations"]) >= {"first", "second", "third"}
    assert record["mlpipe_version"] == __version__
    assert record["airflow_version"].startswith("3.")

    # One e-mail for the run, although 'third' failed twice (it had a retry).
    assert run.output.count("boom in stage third") >= 2
    assert len(smtp_sink.messages) == 1
    recipients, message = smtp_sink.messages[0]
    assert sorted(recipients) == ["oncall@example.com", "owner@example.com"]
    subject = message["Subject"]
    assert "tiny" in subject and "2.0.1" in subject and "dev" in subject and run.run_id in subject
    for body in (text_body(message), html_body(message)):
        assert "third" in body and "boom in stage third" in body
        assert f"/dags/tiny/runs/{quote(run.run_id)}/tasks/third" in body


TWO_FAILURES = """\
name: twofold
version: 1.4.0
metadata:
  owner: team-twofold
  schedule: null
  notify_on_failure: ["owner@example.com"]
stages:
  - name: first
    component: mlpipe_test_steps.steps
  - name: left
    component: mlpipe_test_steps.steps
    config: {fail: true}
    dependencies: [first]
  - name: right
    component: mlpipe_test_steps.steps
    config: {fail: true}
    dependencies: [first]
  - name: joined
    component: mlpipe_test_steps.steps
    dependencies: [left, right]
"""


def test_two_failed_stages_give_one_email_listing_both(
    mlpipe_sandbox, git_spec_repo, smtp_sink, subprocess_env
):
    (git_spec_repo / "twofold.yaml").write_text(TWO_FAILURES)
    commit_all(git_spec_repo)

    run = mlpipe_sandbox.run(git_spec_repo, "twofold", env={**subprocess_env, **smtp_sink.connection_env()})

    assert run.state == "failed", run.output[-3000:]
    assert run.record["stages_failed"] == ["left", "right"]
    assert run.record["stages_skipped"] == ["joined"]
    # One e-mail for the run, not one per failed stage.
    assert len(smtp_sink.messages) == 1, [message["Subject"] for _, message in smtp_sink.messages]
    assert smtp_sink.messages[0][0] == ["owner@example.com"]
    message = email.message_from_bytes(smtp_sink.raw[0], policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert "twofold" in message["Subject"] and run.run_id in message["Subject"]
    for body in (text_body(message), html_body(message)):
        for stage in ("left", "right"):
            assert f"RuntimeError: boom in stage {stage}" in body
            assert f"/dags/twofold/runs/{quote(run.run_id)}/tasks/{stage}" in body


def test_successful_run_records_outputs_and_trigger_time_overrides(
    mlpipe_sandbox, git_spec_repo, subprocess_env
):
    (git_spec_repo / "tiny.yaml").write_text(TINY.format(fail="false"))
    commit_all(git_spec_repo)

    run = mlpipe_sandbox.run(
        git_spec_repo, "tiny", conf={"overrides": {"second": {"value": 42}}}, env=subprocess_env
    )

    assert run.state == "success", run.output[-3000:]
    record = run.record
    assert record["stages_completed"] == ["first", "second", "third", "fourth"]
    assert record["stages_failed"] == [] and record["stages_skipped"] == []
    assert record["overrides"] == {"second": {"value": 42}}
    assert record["outputs"]["second"]["metrics"] == {"value": 42.0}
    # The templated config was rendered, and upstream outputs reached the downstream stage.
    first_artifact = Path(record["outputs"]["first"]["artifacts"]["out"].removeprefix("file://"))
    assert first_artifact.read_text().split("|")[1] == run.run_id.split("__")[1][:10]
    second_artifact = Path(record["outputs"]["second"]["artifacts"]["out"].removeprefix("file://"))
    assert second_artifact.read_text() == "42||['first']"
    # Task logs show the component, the config and the component's own progress lines.
    assert "Component: mlpipe_test_steps.steps" in run.output
    assert '"value": 42' in run.output
    assert "steps progress: stage second starting" in run.output


def test_invalid_override_fails_the_stage_without_running_it(mlpipe_sandbox, git_spec_repo, subprocess_env):
    (git_spec_repo / "tiny.yaml").write_text(TINY.format(fail="false"))
    commit_all(git_spec_repo)

    run = mlpipe_sandbox.run(
        git_spec_repo, "tiny", conf={"overrides": {"first": {"value": "lots"}}}, env=subprocess_env
    )

    assert run.state == "failed"
    assert run.task_states["first"] == "failed"
    assert "invalid config for stage 'first'" in run.record["errors"]["first"]
    assert "steps progress: stage first" not in run.output
    assert run.record["stages_skipped"] == ["second", "third", "fourth"]


def test_mail_server_down_leaves_the_run_and_record_intact(mlpipe_sandbox, git_spec_repo, subprocess_env):
    (git_spec_repo / "tiny.yaml").write_text(TINY.format(fail="true"))
    commit_all(git_spec_repo)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    connection = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": closed_port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "x@example.com", "retry_limit": 0},
    }

    run = mlpipe_sandbox.run(
        git_spec_repo, "tiny", env={**subprocess_env, "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(connection)}
    )

    assert run.state == "failed"
    assert run.record["stages_failed"] == ["third"]
    assert run.record["stages_completed"] == ["first", "second"]
    assert "Could not send the failure e-mail to ['owner@example.com', 'oncall@example.com']" in run.output


def test_config_that_fails_to_render_fails_the_stage_once_and_the_record_says_why(
    mlpipe_sandbox, git_spec_repo, subprocess_env
):
    # 'params' exists, so the spec loads; this run has no 'label' param, so rendering fails.
    spec = TINY.format(fail="false").replace("{{ ds }}", "{{ params.label }}").replace(
        "config: {value: 3,", "retries: 2\n    retry_delay: 1\n    config: {value: 3,", 1
    )
    (git_spec_repo / "tiny.yaml").write_text(spec)
    commit_all(git_spec_repo)

    run = mlpipe_sandbox.run(git_spec_repo, "tiny", env=subprocess_env)

    assert run.state == "failed", run.output[-3000:]
    assert run.task_states["first"] == "failed"
    with sqlite3.connect(mlpipe_sandbox.database) as db:
        (tries,) = db.execute(
            "SELECT try_number FROM task_instance WHERE dag_id = 'tiny' AND run_id = ? AND task_id = 'first'",
            (run.run_id,),
        ).fetchone()
    assert tries == 1  # of the 3 allowed: a retry would render the same template in the same context
    error = run.record["errors"]["first"]
    assert error.startswith("the config of stage 'first' failed to render: UndefinedError:")
    assert "label" in error
    assert run.record["stages_failed"] == ["first"]
    assert run.record["stages_skipped"] == ["second", "third", "fourth"]
    assert "steps progress: stage first" not in run.output


SECRET = "s3cr3t-Pa55word-9931"

SECRET_SPEC = """\
name: secretive
version: 1.0.0
metadata:
  owner: team-secret
stages:
  - name: uses_secret
    component: mlpipe_test_steps.steps
    config: {label: "{{ conn.warehouse.password }}"}
"""


def test_secrets_from_connections_never_reach_logs_xcom_rendered_fields_or_record(
    mlpipe_sandbox, git_spec_repo, subprocess_env
):
    import sqlite3

    (git_spec_repo / "secretive.yaml").write_text(SECRET_SPEC)
    commit_all(git_spec_repo)
    connection = {"conn_type": "postgres", "host": "db.example.com", "login": "etl", "password": SECRET}

    run = mlpipe_sandbox.run(
        git_spec_repo, "secretive", env={**subprocess_env, "AIRFLOW_CONN_WAREHOUSE": json.dumps(connection)}
    )

    assert run.state == "success", run.output[-3000:]
    # The component did get the real value (it wrote it into its own artifact)...
    artifact = Path(run.record["outputs"]["uses_secret"]["artifacts"]["out"].removeprefix("file://"))
    assert SECRET in artifact.read_text()
    # ...but Airflow's task log shows the config masked, and nothing stored holds the secret.
    assert "Config: " in run.output
    assert SECRET not in run.output
    assert SECRET not in json.dumps(run.record)
    with sqlite3.connect(mlpipe_sandbox.database) as db:
        stored = db.execute("SELECT value FROM xcom WHERE dag_id = 'secretive'").fetchall()
        rendered = db.execute(
            "SELECT rendered_fields FROM rendered_task_instance_fields WHERE dag_id = 'secretive'"
        ).fetchall()
        doc = db.execute("SELECT data FROM serialized_dag WHERE dag_id = 'secretive'").fetchall()
    assert stored and rendered and doc
    for rows in (stored, rendered, doc):
        assert all(SECRET not in str(value) for row in rows for value in row)
