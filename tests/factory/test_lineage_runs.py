"""OpenLineage events of real runs (``airflow dags test``), through the provider's file transport.

The provider's listener fires in the in-process runner as in a worker: each stage's COMPLETE
event is read back from the transport's file and checked against the run's execution record.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

SPEC = """\
name: lineage_demo
version: 1.4.0
metadata:
  owner: team-lineage
  schedule: null
stages:
  - name: extract
    component: data.extract.database
    config:
      query: "SELECT user_id, item_id, ts FROM user_events WHERE ts > :cutoff"
      conn_id: lineage_db
      parameters: {cutoff: 0}
  - name: second
    component: mlpipe_test_steps.steps
    config: {value: 2}
    dependencies: [extract]
    cache: true
  - name: third
    component: mlpipe_test_steps.steps
    config: {value: 3}
    dependencies: [second]
    cache: true
"""

STAGES = ("extract", "second", "third")


@pytest.fixture
def lineage_env(tmp_path: Path, subprocess_env: dict[str, str], openlineage_provider: None) -> dict[str, str]:
    """A run's environment: the test components, a SQLite source table, events into a file."""
    database = tmp_path / "events.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE user_events (user_id INTEGER, item_id INTEGER, ts INTEGER)")
        db.executemany("INSERT INTO user_events VALUES (?, ?, ?)", [(1, 10, 5), (2, 11, 6), (2, 12, 7)])
    transport = {"type": "file", "log_file_path": str(tmp_path / "events.jsonl"), "append": True}
    return {
        **subprocess_env,
        "AIRFLOW_CONN_LINEAGE_DB": f"sqlite:///{database}",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "mlpipe-tests",
    }


def complete_events(events_file: Path, run_id: str) -> dict[str, dict]:
    """Each stage's COMPLETE event of the Airflow run ``run_id``, by task id."""
    found = {}
    for line in events_file.read_text().splitlines():
        event = json.loads(line)
        facets = event.get("run", {}).get("facets", {})
        if event.get("eventType") != "COMPLETE" or "mlpipe" not in facets:
            continue
        if facets["airflow"]["dagRun"]["run_id"] == run_id:
            found[facets["mlpipe"]["stage"]] = event
    return found


def datasets(items: list[dict]) -> dict[tuple[str, str], str | None]:
    """(namespace, name) -> the dataset's version (its digest), for every dataset."""
    return {
        (item["namespace"], item["name"]): item.get("facets", {}).get("version", {}).get("datasetVersion")
        for item in items
    }


def artifact_key(uri: str) -> tuple[str, str]:
    assert uri.startswith("file:///"), uri
    return "file", uri.removeprefix("file://")


def test_each_stage_emits_what_it_read_and_wrote_with_digests_and_the_pipeline(
    mlpipe_sandbox, tmp_path, write_spec, lineage_env
):
    specs = write_spec("lineage_demo", SPEC)
    events_file = tmp_path / "events.jsonl"

    first = mlpipe_sandbox.run(specs, "lineage_demo", env=lineage_env)
    assert first.state == "success", first.output[-3000:]
    events = complete_events(events_file, first.run_id)
    assert set(events) == set(STAGES), first.output[-3000:]
    outputs = first.record["outputs"]

    # extract: the table its query reads, in its connection's namespace; its Parquet file out
    extract = events["extract"]
    assert datasets(extract["inputs"]) == {(f"sqlite://{tmp_path}/events.db", "main.user_events"): None}
    data_uri = outputs["extract"]["artifacts"]["data"]
    data_digest = outputs["extract"]["digests"]["data"]
    assert data_digest.startswith("sha256:")
    assert datasets(extract["outputs"]) == {artifact_key(data_uri): data_digest}
    assert "WHERE ts > :cutoff" in extract["job"]["facets"]["sql"]["query"]

    # second reads extract's artifact (with its digest) and writes its own; third reads second's
    for stage, upstream in (("second", "extract"), ("third", "second")):
        upstream_artifacts = outputs[upstream]["artifacts"]
        assert datasets(events[stage]["inputs"]) == {
            artifact_key(uri): outputs[upstream]["digests"][name] for name, uri in upstream_artifacts.items()
        }
        assert datasets(events[stage]["outputs"]) == {
            artifact_key(outputs[stage]["artifacts"]["out"]): outputs[stage]["digests"]["out"]
        }
        [read] = events[stage]["inputs"]
        assert read["facets"]["mlpipe_artifact"]["stage"] == upstream

    for stage in STAGES:
        facet = events[stage]["run"]["facets"]["mlpipe"]
        assert (facet["pipeline"], facet["pipelineVersion"], facet["configVersion"]) == (
            "lineage_demo",
            "1.4.0",
            first.record["config_version"],
        )
        assert facet["fingerprint"] == first.record["fingerprints"][stage]
        assert facet["cacheHit"] is False
        assert events[stage]["job"]["namespace"] == "mlpipe-tests"
        assert events[stage]["job"]["name"] == f"lineage_demo.{stage}"

    # Again: extract reruns (its data can change), the same bytes let second and third come from
    # the cache; their events name the cached artifacts and the run that wrote them.
    again = mlpipe_sandbox.run(specs, "lineage_demo", env=lineage_env)
    assert again.state == "success", again.output[-3000:]
    assert again.record["stages_cached"] == ["second", "third"]
    cached = complete_events(events_file, again.run_id)
    for stage in ("second", "third"):
        facet = cached[stage]["run"]["facets"]["mlpipe"]
        assert (facet["cacheHit"], facet["cachedFrom"]) == (True, first.run_id)
        assert datasets(cached[stage]["outputs"]) == datasets(events[stage]["outputs"])
