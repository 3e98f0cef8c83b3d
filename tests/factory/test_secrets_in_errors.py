"""Secrets in failing stages: masked in the error XCom, the record and the e-mail (real runs).

A connection password templated into a field that then fails validation, and a sensitive Variable
that a component's own exception quotes, each fail a stage of a real ``airflow dags test`` run.
Airflow masks task logs; the texts that leave the task (the error XCom, and through it the
execution record and the failure e-mail) must be masked too.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from airflow_mlpipe.testing.smtp import SmtpSink, html_body, text_body

pytestmark = pytest.mark.airflow

PASSWORD = "conn-Pa55-4ErrorTest-71"
API_SECRET = "var-Secret-4ErrorTest-38"

SPEC = """\
name: leaky
version: 1.0.0
metadata:
  owner: team-leaky
  notify_on_failure: ["owner@example.com"]
stages:
  - name: bad_value
    component: mlpipe_test_steps.steps
    config: {value: "{{ conn.warehouse.password }}"}
    retries: 0
  - name: raises
    component: mlpipe_test_steps.steps
    config: {fail_with: "{{ var.value.api_secret }}"}
    retries: 0
"""


def test_secrets_in_failing_stages_are_masked_in_the_error_xcom_record_and_email(
    mlpipe_sandbox, tmp_path: Path, subprocess_env
):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "leaky.yaml").write_text(SPEC)
    connection = {"conn_type": "postgres", "host": "db.example.com", "login": "etl", "password": PASSWORD}
    with SmtpSink() as sink:
        env = {
            **subprocess_env,
            **sink.connection_env(),
            "AIRFLOW_CONN_WAREHOUSE": json.dumps(connection),
            # A Variable whose name marks it sensitive: Airflow masks its value once it is read.
            "AIRFLOW_VAR_API_SECRET": API_SECRET,
        }
        run = mlpipe_sandbox.run(specs, "leaky", env=env)
    messages = [message for _, message in sink.messages]

    assert run.state == "failed"
    errors = run.record["errors"]
    # The errors still say what went wrong...
    assert "invalid config for stage 'bad_value'" in errors["bad_value"] and "value" in errors["bad_value"]
    assert errors["raises"].startswith("RuntimeError: could not log in with")
    # ...but neither secret is in the record, the stored XComs or either part of the e-mail.
    stored_record = json.dumps(run.record)
    with sqlite3.connect(mlpipe_sandbox.database) as db:
        xcoms = [str(row[0]) for row in db.execute("SELECT value FROM xcom WHERE dag_id = 'leaky'")]
    [message] = messages
    for secret in (PASSWORD, API_SECRET):
        assert secret not in stored_record
        assert all(secret not in value for value in xcoms)
        assert secret not in text_body(message) and secret not in html_body(message)
    assert "could not log in with ***" in text_body(message)
