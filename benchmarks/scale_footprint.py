"""What one run of the reference pipeline leaves behind, and what that means at internet scale.

Measured here, through the real ``airflow dags test`` (SQLite) on the demo data:

* XCom per run: the bytes of every XCom row of the run (each stage's result with its
  fingerprint and resolved config, the error key when a stage fails, the execution record), by
  task, as the metadata database stores them (``length(value)``);
* the artifact store per run: objects written under the run's folder and their bytes, and the
  stage cache's index: entries (``_cache/<stage>/<fingerprint>.json``) and bytes per entry.

Then, by arithmetic on those figures (nothing is simulated beyond multiplication, and every
input is printed): XCom bytes, cache index growth and task instances per day at a number of
pipelines, stages and runs a day (default 10,000 pipelines of 20 stages, 1,000,000 runs a day).

    python benchmarks/scale_footprint.py            # 3 runs at the demo size
    python benchmarks/scale_footprint.py --quick    # 1 run on a small table
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import benchlib

REPO = benchlib.REPO
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DAG_ID = "recommender_training"


def measure_runs(root: Path, runs: int, quick: bool) -> list[dict[str, Any]]:
    from airflow_mlpipe.demo_data import generate_user_events
    from airflow_mlpipe.testing import AirflowSandbox

    analytics = root / "analytics.db"
    if quick:
        generate_user_events(analytics, n_users=300, n_items=150, n_events=10_000)
    else:
        generate_user_events(analytics)
    specs = root / "pipelines"
    specs.mkdir()
    for spec in (REPO / "dags" / "pipelines").glob("*.yaml"):
        (specs / spec.name).write_text(spec.read_text())
    (specs / f"{DAG_ID}.bench.yaml").write_text(
        f"stages: [{{name: register, config: {{registry: 'file://{root / 'registry'}'}}}}]\n"
    )
    artifacts = root / "artifacts"
    sandbox = AirflowSandbox(root / "sandbox").setup()
    env = {
        "AIRFLOW_CONN_ANALYTICS_DB": f"sqlite:///{analytics}",
        "AIRFLOW__MLPIPE__ARTIFACT_ROOT": f"file://{artifacts}",
        "AIRFLOW__MLPIPE__ENVIRONMENT": "bench",
    }
    results = []
    for index in range(runs):
        before = _files(artifacts)
        # Each run recomputes (the cache is off for the run) and still refreshes the index.
        run = sandbox.run(specs, DAG_ID, conf={"cache": False}, env=env)
        if run.state != "success":
            raise RuntimeError(f"run {index + 1} failed:\n{run.output[-3000:]}")
        written = {path: size for path, size in _files(artifacts).items() if path not in before}
        cache = {path: size for path, size in _files(artifacts).items() if "/_cache/" in path}
        results.append(
            {
                "xcom": _xcom_bytes(sandbox.database, run.run_id),
                "record_bytes": len(json.dumps(run.record, separators=(",", ":"))),
                "objects_written": sum(1 for path in written if "/_cache/" not in path),
                "bytes_written": sum(size for path, size in written.items() if "/_cache/" not in path),
                "cache_entries": len(cache),
                "cache_bytes": sum(cache.values()),
            }
        )
    return results


def _files(root: Path) -> dict[str, int]:
    if not root.exists():
        return {}
    return {str(path): path.stat().st_size for path in root.rglob("*") if path.is_file()}


def _xcom_bytes(database: Path, run_id: str) -> dict[str, int]:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT task_id, SUM(LENGTH(value)) FROM xcom WHERE dag_id = ? AND run_id = ? GROUP BY task_id",
            (DAG_ID, run_id),
        ).fetchall()
    return {task: int(size or 0) for task, size in rows}


def project(measured: dict[str, float], pipelines: int, stages: int, runs_per_day: int) -> list[list[Any]]:
    """What the measured per-run figures become at scale (stage figures scale with the stage count)."""
    per_stage_xcom = measured["stage_xcom_bytes"] / measured["stages"]
    run_xcom = per_stage_xcom * stages + measured["record_bytes"] * stages / measured["stages"]
    cache_entry = measured["cache_bytes_per_entry"]
    cacheable = stages * measured["cacheable_share"]
    day = runs_per_day
    return [
        ["task instances a day", f"{day * (stages + 1):,.0f}", f"{day * (stages + 1) / 86400:,.0f} a second"],
        ["XCom a run", f"{run_xcom / 1024:,.1f} KiB", f"{per_stage_xcom:,.0f} B a stage + the record"],
        ["XCom a day", f"{day * run_xcom / 1024**3:,.1f} GiB", "in the metadata database unless offloaded"],
        [
            "cache index, worst case a day",
            f"{day * cacheable * cache_entry / 1024**3:,.1f} GiB",
            f"{day * cacheable:,.0f} entries of {cache_entry:,.0f} B (every run new inputs)",
        ],
        ["specs to parse", f"{pipelines:,}", "see BENCHMARKS.md section 1.3 for the time per spec"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run on a small table (smoke test)")
    parser.add_argument("--json", help="write raw results here")
    parser.add_argument("--pipelines", type=int, default=10_000)
    parser.add_argument("--stages", type=int, default=20)
    parser.add_argument("--runs-per-day", type=int, default=1_000_000)
    args = parser.parse_args()
    info = benchlib.machine()
    benchlib.print_header("Footprint of a run, and at scale", info)
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-footprint-") as tmp:
        runs = measure_runs(Path(tmp), 1 if args.quick else 3, args.quick)

    stages = [task for task in runs[0]["xcom"] if task != "execution_record"]
    print(f"\n## XCom per run, bytes as stored (median of {len(runs)} runs)\n")
    rows = [
        [task, f"{statistics.median(run['xcom'].get(task, 0) for run in runs):,.0f}"]
        for task in runs[0]["xcom"]
    ]
    total = statistics.median(sum(run["xcom"].values()) for run in runs)
    rows.append(["total", f"{total:,.0f}"])
    print(benchlib.table(["task", "bytes"], rows))
    entries = statistics.median(run["cache_entries"] for run in runs)
    per_entry = statistics.median(run["cache_bytes"] / max(run["cache_entries"], 1) for run in runs)
    print("\n## Artifact store per run\n")
    print(
        benchlib.table(
            ["what", "median"],
            [
                [
                    "objects written (artifacts)",
                    f"{statistics.median(r['objects_written'] for r in runs):,.0f}",
                ],
                ["bytes written (artifacts)", f"{statistics.median(r['bytes_written'] for r in runs):,.0f}"],
                ["cache index entries after the runs", f"{entries:,.0f}"],
                ["bytes per cache index entry", f"{per_entry:,.0f}"],
            ],
        )
    )
    measured = {
        "stages": len(stages),
        "stage_xcom_bytes": statistics.median(sum(r["xcom"].get(t, 0) for t in stages) for r in runs),
        "record_bytes": statistics.median(r["xcom"].get("execution_record", 0) for r in runs),
        "cache_bytes_per_entry": per_entry,
        # transform_features, train and evaluate of the five stages are cached by default.
        "cacheable_share": 3 / 5,
    }
    print(
        f"\n## At {args.pipelines:,} pipelines of {args.stages} stages, {args.runs_per_day:,} runs a day"
        " (arithmetic on the figures above)\n"
    )
    projection = project(measured, args.pipelines, args.stages, args.runs_per_day)
    print(benchlib.table(["what", "amount", "how"], projection))
    benchlib.save(
        args.json,
        "scale_footprint",
        {"machine": info, "runs": runs, "measured": measured, "projection": projection, "args": vars(args)},
    )


if __name__ == "__main__":
    main()
