"""Stage overhead: a no-op component through ``ComponentOperator`` vs a bare ``@task`` doing nothing.

Three DAGs of K independent tasks run through the real ``airflow dags test`` (in-process task
runner, SQLite metadata database, a fresh process per run), in rotating order, in one Airflow home:

* ``mlpipe_noop``: a spec of K stages of ``bench_components.noop`` (returns nothing) built by the
  factory, so each task resolves the component, validates and logs its config, creates and empties
  its artifact directory, reads the git commit and pushes its (empty) outputs
  ``{"artifacts": {}, "metrics": {}}`` as XCom; the DAG also has its ``execution_record`` task;
* ``bare_noop``: K ``@task`` functions whose body is ``return None`` (the goal's reference);
* ``bare_xcom``: K ``@task`` functions returning the same empty outputs dict, so the same XCom
  push: the difference to ``mlpipe_noop`` is then the operator's own code alone.

What is compared is each task's own run time as Airflow records it (``task_instance.duration``,
from the task runner starting it to it finishing): the median over the tasks of a run, then the
median of the per-run ratios. The first task a ``dags test`` process runs is left out, as it also
starts the in-process execution API, a one-off cost of seconds that belongs to ``dags test``.
The whole ``dags test`` process time is shown too, but it also holds interpreter start-up, DAG
parsing and the record task, which are not per-stage costs.

    python benchmarks/stage_overhead.py            # K=21 tasks, 5 runs of each DAG
    python benchmarks/stage_overhead.py --quick    # K=3, one run of each (smoke test)
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

BARE_DAG = '''\
"""K bare @task functions returning {result}: the floor a stage's overhead is measured against."""

from datetime import datetime, timezone

from airflow.sdk import dag, task


@dag(dag_id="{dag_id}", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc), catchup=False)
def {dag_id}():
    for i in range({k}):

        @task(task_id=f"stage_{{i:02d}}")
        def noop():
            return {result}

        noop()


{dag_id}()
'''
DAG_IDS = ("mlpipe_noop", "bare_noop", "bare_xcom")


def write_dags(root: Path, k: int) -> Path:
    """A dags folder with the factory's loader for a K-stage no-op spec, and the bare DAGs."""
    folder = root / "bench-dags"
    specs = root / "specs"
    specs.mkdir(parents=True)
    folder.mkdir()
    stages = "".join(
        f"  - name: stage_{i:02d}\n    component: bench_components.noop\n    config: {{}}\n" for i in range(k)
    )
    (specs / "mlpipe_noop.yaml").write_text(
        "name: mlpipe_noop\nversion: 1.0.0\nmetadata:\n  owner: bench\n  schedule: null\nstages:\n" + stages
    )
    (folder / "mlpipe_loader.py").write_text(
        f"from airflow_mlpipe.factory import build_dags\n\nglobals().update(build_dags({str(specs)!r}))\n"
    )
    (folder / "bare_noop.py").write_text(BARE_DAG.format(dag_id="bare_noop", k=k, result="None"))
    empty = '{"artifacts": {}, "metrics": {}}'
    (folder / "bare_xcom.py").write_text(BARE_DAG.format(dag_id="bare_xcom", k=k, result=empty))
    return folder


def task_durations(database: Path, dag_id: str) -> tuple[list[tuple[str, float]], dict[str, str]]:
    """(task, duration) of every task of the DAG's latest run in the order they ran, and states."""
    with sqlite3.connect(database) as db:
        (run_id,) = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        rows = db.execute(
            "SELECT task_id, duration, state FROM task_instance WHERE dag_id = ? AND run_id = ? "
            "ORDER BY start_date",
            (dag_id, run_id),
        ).fetchall()
    return [(t, d) for t, d, _ in rows], {t: s for t, _, s in rows}


def run_once(sandbox: Any, folder: Path, dag_id: str, k: int) -> dict[str, Any]:
    started = time.perf_counter()
    result = sandbox.airflow("dags", "test", dag_id, env=sandbox.environment(folder), timeout=900)
    wall = time.perf_counter() - started
    ordered, states = task_durations(sandbox.database, dag_id)
    durations = dict(ordered)
    if result.returncode != 0 or len(ordered) < k or any(s != "success" for s in states.values()):
        raise RuntimeError(
            f"dags test {dag_id} failed (exit {result.returncode}, states {states}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    # The first task of a `dags test` process also starts its in-process execution API (seconds):
    # a once-per-process cost of `dags test`, not of the task. It is left out of the statistics.
    stages = [d for t, d in ordered[1:] if t.startswith("stage_")]
    return {
        "wall_s": wall,
        "first_task": ordered[0],
        "task_median_s": statistics.median(stages),
        "task_sum_s": sum(stages),
        "record_s": durations.get("execution_record"),
        "durations": durations,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="K=3 tasks, one run of each DAG")
    parser.add_argument("--tasks", type=int, help="K, tasks per DAG (default 21: the first is left out)")
    parser.add_argument("--runs", type=int, help="runs of each DAG (default 5)")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    k = args.tasks or (3 if args.quick else 21)
    runs = args.runs or (1 if args.quick else 5)

    from airflow_mlpipe.testing.sandbox import AirflowSandbox

    info = benchlib.machine()
    benchlib.print_header("Stage overhead benchmark", info)
    root = Path(tempfile.mkdtemp(prefix="mlpipe-bench-stage-"))
    env = benchlib.airflow_env(root / "airflow-home")
    extra = {key: env[key] for key in ("PYTHONPATH", "AIRFLOW__MLPIPE__COMPONENT_MODULES", "DO_NOT_TRACK")}
    sandbox = AirflowSandbox(root, env=extra).setup()
    folder = write_dags(root, k)
    print(f"K={k} tasks per DAG, {runs} runs of each, Airflow home {benchlib.shown(sandbox.home)}\n")

    results: dict[str, list[dict[str, Any]]] = {dag_id: [] for dag_id in DAG_IDS}
    for run in range(runs):
        shift = run % len(DAG_IDS)
        for dag_id in DAG_IDS[shift:] + DAG_IDS[:shift]:
            results[dag_id].append(run_once(sandbox, folder, dag_id, k))
        print(f"  run {run + 1}/{runs} done", file=sys.stderr)

    rows = [
        [
            dag_id,
            len(runs_),
            benchlib.spread(r["task_median_s"] * 1000 for r in runs_),
            benchlib.spread(r["task_sum_s"] for r in runs_),
            benchlib.spread(r["record_s"] * 1000 for r in runs_ if r["record_s"] is not None),
            benchlib.spread(r["wall_s"] for r in runs_),
        ]
        for dag_id, runs_ in results.items()
    ]
    print("## Per-task run time (task_instance.duration), median over runs (min-max)\n")
    headers = ["DAG", "runs", "median task ms", f"sum of {k - 1} tasks s", "execution_record ms"]
    print(benchlib.table([*headers, "dags test process s"], rows))
    ratio_rows = []
    for reference in ("bare_noop", "bare_xcom"):
        pairs = list(zip(results["mlpipe_noop"], results[reference], strict=True))
        ratio_rows.append(
            [
                f"mlpipe_noop / {reference}",
                benchlib.spread(a["task_median_s"] / b["task_median_s"] for a, b in pairs),
                benchlib.spread(a["task_sum_s"] / b["task_sum_s"] for a, b in pairs),
                benchlib.spread(a["wall_s"] / b["wall_s"] for a, b in pairs),
            ]
        )
    print("\n## Ratios within a run round, median (min-max)\n")
    headers = ["ratio", "median task", f"sum of {k - 1} tasks", "dags test process (incl. record task)"]
    print(benchlib.table(headers, ratio_rows))
    benchlib.save(args.json, "stage_overhead", {"machine": info, "k": k, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
