"""Faults on real Airflow processes: a worker lost mid-task, a task process killed, tasks cleared.

The same topology as ``test_e2e_celery.py`` (PostgreSQL, Redis, api-server, scheduler,
dag-processor, Celery worker), with specs made of the test component ``mlpipe_test_steps.faults``:
each try writes ``output-try<N>.txt`` into its artifact dir before anything else, so a try that is
killed or fails leaves a file behind, and only an artifact dir emptied at the start of every try
ends up with exactly one. The component's paths (start marker, failure flag) come in as
trigger-time overrides.

Airflow notices a lost worker by its task's missing heartbeats; the cluster's heartbeat timeout
is cut from 300 s to 20 s so that the test takes seconds, not minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from airflow_processes import REPO, CeleryCluster, celery_cluster, wait_until

from airflow_mlpipe.artifacts import run_folder, safe_segment

pytestmark = pytest.mark.postgres

HEARTBEAT_TIMEOUT = 20  # seconds; the supervisor heartbeats every 5 s ([workers] min_heartbeat_interval)
FIXTURE_PACKAGES = REPO / "tests" / "factory" / "fixture_pkg"

WORKER_LOSS = """\
name: worker_loss
version: 1.0.0
metadata:
  owner: fault-tests
  description: A stage whose first try runs long enough to be killed, with one retry
  schedule: null
stages:
  - name: slow
    component: mlpipe_test_steps.faults
    config: {hold_first_try: 120}
    retries: 1
    retry_delay: 5s
  - name: after
    component: mlpipe_test_steps.faults
    dependencies: [slow]
"""

RERUN = """\
name: rerun_pipeline
version: 1.0.0
metadata:
  owner: fault-tests
  description: Three stages in a row; the middle one fails while a flag file exists
  schedule: null
stages:
  - name: prepare
    component: mlpipe_test_steps.faults
  - name: flaky
    component: mlpipe_test_steps.faults
    dependencies: [prepare]
    retries: 0
  - name: summarize
    component: mlpipe_test_steps.faults
    dependencies: [flaky]
"""


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryCluster]:
    env = {
        "AIRFLOW__MLPIPE__COMPONENT_MODULES": "mlpipe_test_steps",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(FIXTURE_PACKAGES), os.environ.get("PYTHONPATH")])),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    }
    specs = {"worker_loss.yaml": WORKER_LOSS, "rerun_pipeline.yaml": RERUN}
    root = tmp_path_factory.mktemp("faults")
    with celery_cluster(request.config, root, specs, {"worker_loss", "rerun_pipeline"}, env) as started:
        for dag_id in ("worker_loss", "rerun_pipeline"):
            started.api.set_paused(dag_id, False)
        yield started


def artifact_dir(cluster: CeleryCluster, dag_id: str, run_id: str, stage: str, try_number: int) -> Path:
    stage_dir = cluster.root / "artifacts" / safe_segment(dag_id) / run_folder(run_id) / safe_segment(stage)
    return stage_dir / str(try_number)


def try_files(cluster: CeleryCluster, dag_id: str, run_id: str, stage: str, try_number: int) -> list[str]:
    return sorted(path.name for path in artifact_dir(cluster, dag_id, run_id, stage, try_number).iterdir())


def assert_outputs_of_last_try(
    cluster: CeleryCluster, dag_id: str, run_id: str, record: dict[str, Any], stage: str, try_number: int
) -> dict[str, Any]:
    """The stage's last try is ``try_number``; its own artifact dir and the record hold its outputs only.

    Returns what the try wrote into its output file.
    """
    assert cluster.api.task_instance(dag_id, run_id, stage)["try_number"] == try_number
    output = artifact_dir(cluster, dag_id, run_id, stage, try_number) / f"output-try{try_number}.txt"
    # Each try has a folder of its own: nothing of an earlier (maybe still running) try is in it.
    assert try_files(cluster, dag_id, run_id, stage, try_number) == [output.name]
    assert record["outputs"][stage] == {
        "artifacts": {"output": f"file://{output}"},
        "metrics": {"try_number": try_number},
        "digests": {"output": "sha256:" + hashlib.sha256(output.read_bytes()).hexdigest()},
    }
    written = json.loads(output.read_text())
    assert written["stage"] == stage and written["try_number"] == try_number
    return written


def marker_lines(marker: Path) -> list[tuple[int, int]]:
    """``(pid, try_number)`` of every try of the stage that started so far."""
    if not marker.exists():
        return []
    return [
        (int(pid), int(try_number)) for pid, try_number in map(str.split, marker.read_text().splitlines())
    ]


def wait_for_first_try(cluster: CeleryCluster, marker: Path) -> int:
    """Wait until try 1 of the stage runs on the worker; the pid of its task process."""

    def started() -> list[tuple[int, int]]:
        cluster.processes.check_alive()
        return marker_lines(marker)

    [(pid, try_number)] = wait_until(started, 120, "try 1 of stage 'slow' to start", interval=0.5)
    assert try_number == 1
    return pid


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def heartbeat_timeouts(
    cluster: CeleryCluster, dag_id: str, run_id: str, task_id: str
) -> list[dict[str, Any]]:
    logs = cluster.api.get(
        "/api/v2/eventLogs", dag_id=dag_id, run_id=run_id, task_id=task_id, event="heartbeat timeout"
    )
    return logs["event_logs"]


def finished_record(cluster: CeleryCluster, dag_id: str, run_id: str, state: str) -> dict[str, Any]:
    """Wait for the run to end in ``state``; its execution record."""
    run = cluster.api.wait_for_run(dag_id, run_id, timeout=150)
    assert run["state"] == state, cluster.explain(dag_id, run_id)
    return cluster.api.xcom(dag_id, run_id, "execution_record")


def assert_retried_once_to_success(cluster: CeleryCluster, run_id: str, marker: Path, first_pid: int) -> None:
    """The run succeeded with 'slow' on its second try, which left the only outputs."""
    record = finished_record(cluster, "worker_loss", run_id, "success")
    tries = marker_lines(marker)
    assert [try_number for _, try_number in tries] == [1, 2]
    assert tries[1][0] != first_pid  # try 2 ran in a new process, not the killed one somehow resumed
    assert record["stages_completed"] == ["slow", "after"]
    assert record["stages_failed"] == [] and record["stages_skipped"] == [] and record["errors"] == {}
    assert_outputs_of_last_try(cluster, "worker_loss", run_id, record, "slow", try_number=2)
    after = assert_outputs_of_last_try(cluster, "worker_loss", run_id, record, "after", try_number=1)
    assert after["inputs"] == {"slow": record["outputs"]["slow"]["artifacts"]}


def test_worker_killed_mid_task_is_detected_and_the_retry_succeeds(cluster: CeleryCluster, tmp_path: Path):
    marker = tmp_path / "slow.started"
    run_id = cluster.api.trigger("worker_loss", {"overrides": {"slow": {"started_marker": str(marker)}}})
    task_pid = wait_for_first_try(cluster, marker)
    worker = cluster.processes.started["celery-worker"]
    assert task_pid in {child.pid for child in psutil.Process(worker.pid).children(recursive=True)}

    # A lost node: the worker, its pool, the task's supervisor and the task process all die at once.
    cluster.processes.kill("celery-worker")
    cluster.start_worker("celery-worker-2")
    wait_until(lambda: is_gone(task_pid), 10, "the task process to die", interval=0.2)
    assert cluster.api.task_instance("worker_loss", run_id, "slow")["state"] == "running"  # nobody told

    assert_retried_once_to_success(cluster, run_id, marker, task_pid)
    # Nobody reported try 1's end: the scheduler failed it for its missing heartbeats.
    assert [log["try_number"] for log in heartbeat_timeouts(cluster, "worker_loss", run_id, "slow")] == [1]


def test_task_process_killed_is_reported_by_its_supervisor_and_the_retry_succeeds(
    cluster: CeleryCluster, tmp_path: Path
):
    marker = tmp_path / "slow.started"
    run_id = cluster.api.trigger("worker_loss", {"overrides": {"slow": {"started_marker": str(marker)}}})
    task_pid = wait_for_first_try(cluster, marker)

    os.kill(task_pid, signal.SIGKILL)  # the task process alone, as the kernel's OOM killer picks one

    assert_retried_once_to_success(cluster, run_id, marker, task_pid)
    # The supervisor saw the exit and reported it at once: no heartbeat timeout was needed.
    assert heartbeat_timeouts(cluster, "worker_loss", run_id, "slow") == []
    cluster.processes.check_alive()


def test_cleared_tasks_write_new_outputs_and_the_record_follows(cluster: CeleryCluster, tmp_path: Path):
    api, dag_id = cluster.api, "rerun_pipeline"
    flag = tmp_path / "flaky.fail"
    flag.touch()
    run_id = api.trigger(dag_id, {"overrides": {"flaky": {"fail_while_exists": str(flag)}}})

    record = finished_record(cluster, dag_id, run_id, "failed")
    assert api.task_states(dag_id, run_id) == {
        "prepare": "success",
        "flaky": "failed",
        "summarize": "upstream_failed",
        "execution_record": "failed",
    }
    assert record["stages_completed"] == ["prepare"]
    assert record["stages_failed"] == ["flaky"] and record["stages_skipped"] == ["summarize"]
    assert record["errors"] == {"flaky": f"RuntimeError: stage flaky fails while {flag} exists"}
    assert set(record["outputs"]) == {"prepare"}
    assert try_files(cluster, dag_id, run_id, "flaky", 1) == ["output-try1.txt"]  # the failed try's leftover

    # Fixed: clear the failed stage and what follows it; the run goes again.
    flag.unlink()
    cleared = api.clear_task_instances(dag_id, run_id, ["flaky"])
    assert cleared == {"flaky", "summarize", "execution_record"}
    record = finished_record(cluster, dag_id, run_id, "success")
    assert api.task_instance(dag_id, run_id, "execution_record")["try_number"] == 2
    assert record["stages_completed"] == ["prepare", "flaky", "summarize"]
    assert record["stages_failed"] == [] and record["stages_skipped"] == [] and record["errors"] == {}
    assert_outputs_of_last_try(cluster, dag_id, run_id, record, "prepare", try_number=1)
    assert_outputs_of_last_try(cluster, dag_id, run_id, record, "flaky", try_number=2)
    summarize = assert_outputs_of_last_try(cluster, dag_id, run_id, record, "summarize", try_number=1)
    assert summarize["inputs"] == {"flaky": record["outputs"]["flaky"]["artifacts"]}

    # A successful stage cleared with its downstream: each stage writes a new try folder and the
    # record moves to it; the earlier try's folder is left as it was (immutable outputs).
    first_prepare_output = artifact_dir(cluster, dag_id, run_id, "prepare", 1) / "output-try1.txt"
    cleared = api.clear_task_instances(dag_id, run_id, ["prepare"])
    assert cleared == {"prepare", "flaky", "summarize", "execution_record"}
    record = finished_record(cluster, dag_id, run_id, "success")
    assert api.task_instance(dag_id, run_id, "execution_record")["try_number"] == 3
    assert record["stages_completed"] == ["prepare", "flaky", "summarize"] and record["stages_failed"] == []
    assert json.loads(first_prepare_output.read_text())["try_number"] == 1
    assert_outputs_of_last_try(cluster, dag_id, run_id, record, "prepare", try_number=2)
    flaky = assert_outputs_of_last_try(cluster, dag_id, run_id, record, "flaky", try_number=3)
    assert flaky["inputs"] == {"prepare": record["outputs"]["prepare"]["artifacts"]}
    summarize = assert_outputs_of_last_try(cluster, dag_id, run_id, record, "summarize", try_number=2)
    assert summarize["inputs"] == {"flaky": record["outputs"]["flaky"]["artifacts"]}
