"""The stage cache through the operator: hits skip run(), and every doubt is a miss."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow_mlpipe.cache import StageCache

from .conftest import RunTask, TaskInstanceStub
from .test_component_operator import two_stages


def runs_of(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


def run_pipeline(run_task: RunTask, run_id: str, marker: Path, conf: dict[str, Any] | None = None, **kw: Any):
    tasks = two_stages(make={"marker": str(marker)}, overridable={"make": {"rows"}}, cache=True, **kw)
    ti = TaskInstanceStub("ops", run_id)
    return run_task(tasks["make"], ti, conf=conf), run_task(tasks["use"], ti, conf=conf)


def test_an_unchanged_rerun_reuses_the_outputs_and_run_is_not_called(
    run_task: RunTask, tmp_path: Path
) -> None:
    marker = tmp_path / "runs"
    first_make, _ = run_pipeline(run_task, "run1", marker)

    second_make, second_use = run_pipeline(run_task, "run2", marker)

    assert runs_of(marker) == ["run1"]  # make's run() ran once
    assert second_make["artifacts"] == first_make["artifacts"]  # the same URIs, of run1's try
    assert second_make["cached_from"] == "run1" and second_use["cached_from"] == "run1"
    assert second_make["fingerprint"] == first_make["fingerprint"]
    assert second_make["digests"] == first_make["digests"]


def test_an_override_recomputes_that_stage_and_what_depends_on_it(run_task: RunTask, tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    run_pipeline(run_task, "run1", marker)

    make, use = run_pipeline(run_task, "run2", marker, conf={"overrides": {"make": {"rows": 9}}})

    assert runs_of(marker) == ["run1", "run2"]
    assert "cached_from" not in make and "cached_from" not in use
    assert use["metrics"] == {"upstream_rows": 9.0}


def test_cache_false_in_the_run_conf_recomputes_everything(run_task: RunTask, tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    run_pipeline(run_task, "run1", marker)

    make, use = run_pipeline(run_task, "run2", marker, conf={"cache": False})

    assert runs_of(marker) == ["run1", "run2"]
    assert "cached_from" not in make and "cached_from" not in use


def test_a_deleted_artifact_is_a_miss_not_a_failure(run_task: RunTask, tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    first_make, _ = run_pipeline(run_task, "run1", marker)
    Path(first_make["artifacts"]["table"].removeprefix("file://")).unlink()

    make, use = run_pipeline(run_task, "run2", marker)

    assert runs_of(marker) == ["run1", "run2"]
    assert "cached_from" not in make
    # 'use' reads content-identical bytes from run2's table: its fingerprint matches run1's.
    assert use["cached_from"] == "run1"


def test_an_expired_or_corrupt_entry_is_a_miss(run_task: RunTask, tmp_path: Path, operator_env: Path) -> None:
    marker = tmp_path / "runs"
    run_pipeline(run_task, "run1", marker)
    run_pipeline(run_task, "run2", marker, cache_ttl=timedelta(0))
    assert runs_of(marker) == ["run1", "run2"]

    entries = list((operator_env / "ops" / "_cache" / "make").glob("*.json"))
    assert len(entries) == 1
    entries[0].write_text("{not json")
    run_pipeline(run_task, "run3", marker)
    assert runs_of(marker) == ["run1", "run2", "run3"]
    assert json.loads(entries[0].read_text())["run_id"] == "run3"  # rewritten whole


def test_concurrent_stores_of_one_fingerprint_leave_one_valid_entry(operator_env: Path) -> None:
    from airflow_mlpipe.contract import StageOutputs

    cache = StageCache(f"file://{operator_env}", "ops")
    outputs = StageOutputs({"table": f"file://{operator_env}/t"}, {"rows": 1.0})
    (operator_env / "t").parent.mkdir(parents=True, exist_ok=True)
    (operator_env / "t").write_text("x")
    threads = [
        threading.Thread(target=cache.store, args=("make", "f" * 64, f"run{i}", outputs)) for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    [entry] = cache.entries("make")
    assert entry.run_id in {f"run{i}" for i in range(8)}
    assert cache.lookup("make", "f" * 64) == entry
    assert list((operator_env / "ops" / "_cache" / "make").iterdir()) == [
        operator_env / "ops" / "_cache" / "make" / f"{'f' * 64}.json"
    ]
    assert cache.clear() == 1 and cache.entries() == []
