"""Extract: ``data.extract.database`` (PostgreSQL -> Parquet) vs ``psql \\copy`` to CSV, and its memory.

A ``user_events`` table (user_id, item_id, event_type, value, date) is generated in a scratch
schema of the local PostgreSQL with ``generate_series``. Then, in alternating order:

* the component: ``run(config, context)`` with a real ``ComponentContext`` (``file://`` artifact
  directory), connection ``bench_pg`` from ``AIRFLOW_CONN_BENCH_PG``, in a fresh process per
  run, so its peak RSS (``ru_maxrss``) is that run's alone;
* the floor: ``psql -c "\\copy (SELECT ...) TO 'file.csv' CSV"``, the server's COPY protocol
  straight to a file: no Python, no types, no compression.

Throughput is rows/s and the ratio component/psql within each round. Then the table grows (1M ->
2M -> 4M rows) and the component runs again at the same ``batch_size``: its peak RSS should stay
flat, since it streams one batch (one Parquet row group) at a time. The schema is dropped at the end.

    python benchmarks/extract_postgres.py            # 1M rows x 5 rounds, then 2M and 4M x 3
    python benchmarks/extract_postgres.py --quick    # 20k rows, growth to 80k, one round
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import benchlib

PG_URI = "postgresql://postgres@127.0.0.1:5432/test"
PSQL = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "test"]
COLUMNS = "user_id, item_id, event_type, value, date"


def psql(sql: str) -> None:
    result = subprocess.run([*PSQL, "-c", sql], capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}\n{sql}")


def fill(schema: str, start: int, stop: int) -> None:
    """Rows ``start..stop-1`` of the synthetic event log (100k users, 20k items, ~100 days)."""
    psql(
        f"INSERT INTO {schema}.user_events "
        "SELECT 1 + (i * 2654435761) % 100000, 1 + (i * 40503) % 20000, "
        "(ARRAY['view','click','purchase'])[1 + (i * 31) % 3], ((i * 17) % 1000) / 10.0, "
        "timestamp '2024-01-01' + ((i * 7919) % 8640000) * interval '1 second' "
        f"FROM generate_series({start}::bigint, {stop - 1}::bigint) AS i; ANALYZE {schema}.user_events;"
    )


def run_with_rusage(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process, via wait4."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{command[0]} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024


def child_component(schema: str, batch_size: int, out_dir: str) -> None:
    """In a fresh process: run the component once, report time, rows and memory."""
    import logging

    # What a worker has done before the component runs: load plugins; and the libraries run()
    # imports on first use, so the timed part is the extraction itself.
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401
    from airflow.sdk import ObjectStoragePath

    from airflow_mlpipe.components.data.extract import database
    from airflow_mlpipe.contract import ComponentContext

    plugins = benchlib.load_airflow_plugins()
    artifact_dir = ObjectStoragePath(f"file://{out_dir}")
    artifact_dir.mkdir(parents=True, exist_ok=True)
    context = ComponentContext(
        pipeline="bench",
        pipeline_version="1.0.0",
        config_version="bench",
        environment="bench",
        stage="extract",
        run_id="bench",
        git_commit="bench",
        inputs={},
        artifact_dir=artifact_dir,
        log=logging.getLogger("bench.extract"),
    )
    config = database.Config(
        query=f"SELECT {COLUMNS} FROM {schema}.user_events", conn_id="bench_pg", batch_size=batch_size
    )
    rss_before = benchlib.peak_rss_mb()
    started = time.perf_counter()
    result = database.run(config, context)
    seconds = time.perf_counter() - started
    size = Path(out_dir, database.FILE_NAME).stat().st_size
    benchlib.emit(
        {
            "seconds": seconds,
            "rows": result["metrics"]["rows"],
            "rss_before_mb": rss_before,
            "bytes": size,
            "plugins_s": plugins,
        }
    )


def run_component(schema: str, batch_size: int, work: Path) -> dict[str, Any]:
    out_dir = work / f"parquet-{uuid.uuid4().hex[:8]}"
    env = benchlib.airflow_env(work / "airflow-home", AIRFLOW_CONN_BENCH_PG=PG_URI)
    try:
        return benchlib.run_child([__file__, "--child", schema, str(batch_size), str(out_dir)], env)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def run_psql(schema: str, work: Path) -> dict[str, Any]:
    target = work / "copy.csv"
    sql = f"\\copy (SELECT {COLUMNS} FROM {schema}.user_events) TO '{target}' WITH (FORMAT csv)"
    wall, rss = run_with_rusage([*PSQL, "-c", sql])
    size = target.stat().st_size
    target.unlink()
    return {"seconds": wall, "peak_rss_mb": rss, "bytes": size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20k rows, growth to 80k, one round")
    parser.add_argument("--rows", type=int, help="rows for the throughput runs (default 1,000,000)")
    parser.add_argument("--growth", type=int, nargs="+", help="multiples of --rows for the memory runs (2 4)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="the component's batch_size (10000)")
    parser.add_argument("--rounds", type=int, help="throughput rounds (default 5)")
    parser.add_argument("--growth-rounds", type=int, help="runs per larger table (default 3)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_component(args.child[0], int(args.child[1]), args.child[2])
        return 0

    rows = args.rows or (20_000 if args.quick else 1_000_000)
    growth = args.growth or [2, 4]
    rounds = args.rounds or (1 if args.quick else 5)
    growth_rounds = args.growth_rounds or (1 if args.quick else 3)
    info = benchlib.machine()
    benchlib.print_header("Extract benchmark", info)
    schema = f"mlpipe_bench_{uuid.uuid4().hex[:10]}"
    work = Path(tempfile.mkdtemp(prefix="mlpipe-bench-extract-"))
    print(f"{rows} rows, batch_size {args.batch_size}, {rounds} rounds; table {schema}.user_events\n")

    raw: dict[str, Any] = {"machine": info, "rows": rows, "batch_size": args.batch_size, "runs": {}}
    try:
        psql(
            f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.user_events (user_id integer NOT NULL, "
            "item_id integer NOT NULL, event_type text NOT NULL, value double precision NOT NULL, "
            "date timestamp NOT NULL)"
        )
        fill(schema, 0, rows)
        component, floor = [], []
        for round_no in range(rounds):
            if round_no % 2 == 0:
                component.append(run_component(schema, args.batch_size, work))
                floor.append(run_psql(schema, work))
            else:
                floor.append(run_psql(schema, work))
                component.append(run_component(schema, args.batch_size, work))
            print(f"  round {round_no + 1}/{rounds} done", file=sys.stderr)
        if any(r["rows"] != rows for r in component):
            raise RuntimeError(f"the component extracted {[r['rows'] for r in component]} rows, not {rows}")
        raw["runs"]["component"], raw["runs"]["psql"] = component, floor

        memory = {rows: component}
        filled = rows
        for factor in growth:
            fill(schema, filled, rows * factor)
            filled = rows * factor
            memory[filled] = [run_component(schema, args.batch_size, work) for _ in range(growth_rounds)]
            print(f"  {filled} rows done", file=sys.stderr)
        raw["runs"]["memory"] = {str(k): v for k, v in memory.items()}
    finally:
        psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        shutil.rmtree(work, ignore_errors=True)

    print("## Throughput: the whole table, median (min-max)\n")
    throughput = [
        [
            "data.extract.database -> Parquet (zstd)",
            len(component),
            benchlib.spread(r["seconds"] for r in component),
            benchlib.spread(rows / r["seconds"] for r in component),
            benchlib.fmt(benchlib.median(r["bytes"] for r in component) / 2**20),
            benchlib.spread(r["peak_rss_mb"] for r in component),
        ],
        [
            "psql \\copy -> CSV (floor)",
            len(floor),
            benchlib.spread(r["seconds"] for r in floor),
            benchlib.spread(rows / r["seconds"] for r in floor),
            benchlib.fmt(benchlib.median(r["bytes"] for r in floor) / 2**20),
            benchlib.spread(r["peak_rss_mb"] for r in floor),
        ],
    ]
    print(benchlib.table(["extract", "runs", "seconds", "rows/s", "file MB", "peak RSS MB"], throughput))
    ratio = [c["seconds"] / f["seconds"] for c, f in zip(component, floor, strict=True)]
    print(f"\ncomponent / psql time, within a round: {benchlib.spread(ratio)}")
    print(f"\n## Memory at batch_size {args.batch_size} as the table grows, median (min-max)\n")
    base = benchlib.median(r["peak_rss_mb"] for r in memory[rows])
    memory_rows = [
        [
            n,
            len(runs),
            benchlib.spread(r["seconds"] for r in runs),
            benchlib.spread(r["peak_rss_mb"] for r in runs),
            benchlib.spread(r["peak_rss_mb"] - r["rss_before_mb"] for r in runs),
            benchlib.fmt(benchlib.median(r["peak_rss_mb"] for r in runs) / base),
        ]
        for n, runs in memory.items()
    ]
    headers = ["rows", "runs", "seconds", "peak RSS MB", "RSS growth during run MB", f"peak / at {rows}"]
    print(benchlib.table(headers, memory_rows))
    benchlib.save(args.json, "extract_postgres", raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
