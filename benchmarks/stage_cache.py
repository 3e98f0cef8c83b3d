"""Stage cache: what digests and fingerprints cost, and what a cached rerun saves.

Three measurements, each against a baseline taken in the same run:

1. Digesting: ``artifact_digest`` of a 100 MB file (and of a folder of 100 x 1 MB files) against
   reading the same bytes without hashing, in this process, file in the page cache; medians of
   several rounds.
2. Per-stage cost when nothing is cached: for artifacts of 1 and 10 MB, the digests, the
   fingerprint and a cache lookup that misses, as a stage pays them, in this process.
3. The reference pipeline at the demo size, through the real ``airflow dags test`` (SQLite): a
   first run, then a second run with only ``evaluate.thresholds`` changed (an overlay): extract
   runs again and returns the same rows, features and training must come from the cache. The
   ratio is the sum of the second run's stage times over the first's, per pair of runs, median
   over pairs; goal at most 0.30. A stage's time is its operator's ``execute`` (the task log's
   "Stage 'x' finished in N s (CPU M s)": lookup, component, digests, cache store), as wall time
   and as the process's CPU time over the same span (steadier on a shared machine: it leaves out
   waiting for a core); Airflow's own per-task start-up is shown beside it
   (``task_instance.duration``), whose first task of a ``dags test`` process also starts the
   in-process execution API, a one-off of seconds.

4. The extract alone on the demo table, in this process: the SQLite path through the ADBC driver
   against the DB-API path (taken by the same query with ``column_types`` set, which gives the
   same file), interleaved round by round after one warm-up of each; wall and CPU time of
   ``run(config, context)``, medians of the rounds and of the per-round ratios.

    python benchmarks/stage_cache.py            # 7 rounds of 1-2 and 4, 3 pairs of runs
    python benchmarks/stage_cache.py --pairs 5  # more pairs of runs
    python benchmarks/stage_cache.py --quick    # 1 round, 1 pair at a small data size
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

REPO = benchlib.REPO
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STAGES = ["extract", "transform_features", "train", "evaluate", "register"]
KEYS = (
    ("durations", 0),
    ("durations", 1),
    ("cpu", 0),
    ("cpu", 1),
    ("task_durations", 0),
    ("task_durations", 1),
)
FINISHED = re.compile(r"Stage '(\w+)' finished in ([\d.]+) s(?: \(CPU ([\d.]+) s\))?")


def _read_only(path: Path) -> None:
    with open(path, "rb") as source:
        while source.read(1 << 20):
            pass


def _timed(function: Any, *args: Any) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def digest_rounds(folder: Path, rounds: int, size_mb: int) -> dict[str, Any]:
    from airflow_mlpipe.digests import artifact_digest

    big = folder / "big.bin"
    big.write_bytes(os.urandom(size_mb << 20))
    many = folder / "many"
    many.mkdir()
    for i in range(100):
        (many / f"part-{i:03d}.bin").write_bytes(os.urandom((min(size_mb, 100) << 20) // 100))
    _read_only(big)  # into the page cache: both sides then read from memory
    rows = {"file_read": [], "file_digest": [], "folder_read": [], "folder_digest": []}
    for _ in range(rounds):
        rows["file_read"].append(_timed(_read_only, big))
        rows["file_digest"].append(_timed(artifact_digest, f"file://{big}"))
        rows["folder_read"].append(_timed(lambda: [_read_only(p) for p in sorted(many.iterdir())]))
        rows["folder_digest"].append(_timed(artifact_digest, f"file://{many}"))
    return rows


def per_stage_rounds(folder: Path, rounds: int) -> dict[str, list[float]]:
    """Digests of the stage's artifact, its fingerprint and a lookup that misses."""
    from airflow_mlpipe.cache import StageCache
    from airflow_mlpipe.contract import StageOutputs
    from airflow_mlpipe.digests import artifact_digest
    from airflow_mlpipe.fingerprints import stage_fingerprint
    from airflow_mlpipe.resolver import resolve_component

    component = resolve_component("model.matrix_factorization", ())
    config = component.config_model().model_dump(mode="json")
    upstream = {"features": StageOutputs({"interactions": "file:///x"}, {}, {"interactions": "sha256:00"})}
    cache = StageCache(f"file://{folder / 'artifacts'}", "bench")
    timings: dict[str, list[float]] = {}
    for size_mb in (1, 10):
        artifact = folder / f"artifact-{size_mb}mb.bin"
        artifact.write_bytes(os.urandom(size_mb << 20))
        samples = []
        for i in range(rounds):
            started = time.perf_counter()
            artifact_digest(f"file://{artifact}")
            fingerprint = stage_fingerprint(component, {**config, "seed": i}, upstream)
            cache.lookup("train", fingerprint)
            samples.append(time.perf_counter() - started)
        timings[f"{size_mb} MB"] = samples
    return timings


def pipeline_pairs(root: Path, pairs: int, quick: bool) -> list[dict[str, Any]]:
    from airflow_mlpipe.demo_data import generate_user_events
    from airflow_mlpipe.testing import AirflowSandbox

    analytics = root / "analytics.db"
    if quick:
        generate_user_events(analytics, n_users=300, n_items=150, n_events=10_000)
    else:
        generate_user_events(analytics)
    sandbox = AirflowSandbox(root / "sandbox").setup()
    results = []
    for pair in range(pairs):
        specs = root / f"pipelines-{pair}"
        specs.mkdir()
        for spec in (REPO / "dags" / "pipelines").glob("*.yaml"):
            (specs / spec.name).write_text(spec.read_text())
        registry = f"file://{root / f'registry-{pair}'}"
        (specs / "recommender_training.first.yaml").write_text(
            f"stages: [{{name: register, config: {{registry: '{registry}'}}}}]\n"
        )
        (specs / "recommender_training.second.yaml").write_text(
            f"stages:\n  - {{name: register, config: {{registry: '{registry}'}}}}\n"
            "  - {name: evaluate, config: {thresholds: {recall@10: 0.16}}}\n"
        )
        env = {
            "AIRFLOW_CONN_ANALYTICS_DB": f"sqlite:///{analytics}",
            "AIRFLOW__MLPIPE__ARTIFACT_ROOT": f"file://{root / f'artifacts-{pair}'}",
        }
        durations: list[dict[str, float]] = []
        cpu: list[dict[str, float]] = []
        task_durations: list[dict[str, float]] = []
        cached = []
        for environment in ("first", "second"):
            run = sandbox.run(
                specs, "recommender_training", env={**env, "AIRFLOW__MLPIPE__ENVIRONMENT": environment}
            )
            if run.state != "success":
                raise RuntimeError(f"run {environment} failed:\n{run.output[-3000:]}")
            wall, cpu_times = _stage_times(run.output)
            durations.append(wall)
            cpu.append(cpu_times)
            task_durations.append(_stage_durations(sandbox.database, run.run_id))
            cached.append(run.record["stages_cached"])
        results.append(
            {"durations": durations, "cpu": cpu, "task_durations": task_durations, "cached": cached}
        )
    return results


def extract_rounds(analytics: Path, folder: Path, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of the extract component on each path, interleaved round by round."""
    import logging

    from airflow_mlpipe.components.data.extract import database

    os.environ["AIRFLOW_CONN_BENCH_SQLITE"] = f"sqlite:///{analytics}"
    query = {"query": "SELECT * FROM user_events WHERE date > :cutoff", "conn_id": "bench_sqlite"}
    configs = {
        "ADBC": database.Config(**query, parameters={"cutoff": "2000-01-01"}),
        "DB-API": database.Config(
            **query, parameters={"cutoff": "2000-01-01"}, column_types={"value": "float64"}
        ),
    }
    # Quiet the component's per-batch progress lines (the context's logger is "bench.<stage>").
    logging.getLogger("bench.extract").setLevel(logging.WARNING)
    samples: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in configs}
    for round_number in range(rounds + 1):  # round 0 warms up imports and the page cache
        for name, config in configs.items():
            out_dir = folder / f"extract-{round_number}-{name}"
            context = benchlib.component_context("extract", out_dir, run_id=f"bench-{round_number}")
            wall, cpu = time.perf_counter(), time.process_time()
            database.run(config, context)
            if round_number:
                samples[name]["wall"].append(time.perf_counter() - wall)
                samples[name]["cpu"].append(time.process_time() - cpu)
    return samples


def _stage_times(output: str) -> tuple[dict[str, float], dict[str, float]]:
    """Each stage's wall time and CPU time, from its "finished in" lines.

    A swept stage has one line per variant (each runs the stage's component): they add up.
    """
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for match in FINISHED.finditer(output):
        stage = match.group(1)
        wall[stage] = wall.get(stage, 0.0) + float(match.group(2))
        if match.group(3) is not None:
            cpu[stage] = cpu.get(stage, 0.0) + float(match.group(3))
    missing = set(STAGES) - set(wall)
    if missing:
        raise RuntimeError(f"no 'finished in' line for {sorted(missing)} in the run's output")
    return wall, cpu


def _stage_durations(database: Path, run_id: str) -> dict[str, float]:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT task_id, duration FROM task_instance"
            " WHERE dag_id = 'recommender_training' AND run_id = ?",
            (run_id,),
        ).fetchall()
    # A swept stage's tasks (its plan, every mapped variant, the selection) count as the stage.
    durations: dict[str, float] = {}
    for task, duration in rows:
        stage = task.split(".", 1)[0]
        if stage in STAGES:
            durations[stage] = durations.get(stage, 0.0) + float(duration or 0)
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, small sizes (smoke test)")
    parser.add_argument("--json", help="write raw results here")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of pipeline runs (default 3)")
    args = parser.parse_args()
    rounds, pairs, size_mb = (1, 1, 10) if args.quick else (7, args.pairs, 100)
    info = benchlib.machine()
    benchlib.print_header("Stage cache: digests, fingerprints, cached reruns", info)
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-cache-") as tmp:
        root = Path(tmp)
        digests = digest_rounds(root, rounds, size_mb)
        per_stage = per_stage_rounds(root, rounds * 5)
        runs = pipeline_pairs(root, pairs, args.quick)
        extracts = extract_rounds(root / "analytics.db", root / "extracts", rounds)

    print(f"\n## Digesting {size_mb} MB (seconds; median (min-max) of {rounds} rounds)\n")
    print(
        benchlib.table(
            ["artifact", "read only", "sha256 digest", "digest / read"],
            [
                [
                    f"one {size_mb} MB file",
                    benchlib.spread(digests["file_read"]),
                    benchlib.spread(digests["file_digest"]),
                    benchlib.fmt(
                        statistics.median(
                            d / r for d, r in zip(digests["file_digest"], digests["file_read"], strict=True)
                        )
                    ),
                ],
                [
                    f"folder of 100 files ({min(size_mb, 100)} MB)",
                    benchlib.spread(digests["folder_read"]),
                    benchlib.spread(digests["folder_digest"]),
                    benchlib.fmt(
                        statistics.median(
                            d / r
                            for d, r in zip(digests["folder_digest"], digests["folder_read"], strict=True)
                        )
                    ),
                ],
            ],
        )
    )
    print("\n## Per-stage cost with nothing cached: digest + fingerprint + lookup (milliseconds)\n")
    print(
        benchlib.table(
            ["artifact size", "median (min-max)"],
            [[size, benchlib.spread([t * 1000 for t in samples])] for size, samples in per_stage.items()],
        )
    )
    print("\n## Reference pipeline: second run with only evaluate.thresholds changed\n")
    print(f"load average after the runs: {[round(x, 2) for x in os.getloadavg()]}\n")
    rows = []
    ratios = []
    cpu_ratios = []
    for index, pair in enumerate(runs):
        first, second = pair["durations"]
        ratio = sum(second.values()) / sum(first.values())
        ratios.append(ratio)
        first_cpu, second_cpu = pair["cpu"]
        cpu_ratio = sum(second_cpu.values()) / sum(first_cpu.values()) if first_cpu else float("nan")
        cpu_ratios.append(cpu_ratio)
        rows.append(
            [
                index + 1,
                benchlib.fmt(sum(first.values())),
                benchlib.fmt(sum(second.values())),
                benchlib.fmt(ratio),
                benchlib.fmt(sum(first_cpu.values())),
                benchlib.fmt(sum(second_cpu.values())),
                benchlib.fmt(cpu_ratio),
                ", ".join(pair["cached"][1]) or "-",
            ]
        )
    print(
        benchlib.table(
            [
                "pair",
                "first: stage s",
                "second: stage s",
                "second / first",
                "first: CPU s",
                "second: CPU s",
                "CPU second / first",
                "cached",
            ],
            rows,
        )
    )
    print(
        f"\nmedian second / first: {benchlib.fmt(statistics.median(ratios))} wall, "
        f"{benchlib.fmt(statistics.median(cpu_ratios))} CPU (goal <= 0.30)\n"
    )
    print(
        benchlib.table(
            [
                "stage",
                "first: execute s",
                "second: execute s",
                "first: CPU s",
                "second: CPU s",
                "first: task s",
                "second: task s",
            ],
            [
                [stage]
                + [benchlib.fmt(statistics.median(p[key][i].get(stage, 0) for p in runs)) for key, i in KEYS]
                for stage in STAGES
            ],
        )
    )
    print(f"\n## The extract alone: ADBC vs DB-API (seconds; median (min-max) of {rounds} rounds)\n")
    adbc, dbapi = extracts["ADBC"], extracts["DB-API"]
    print(
        benchlib.table(
            ["time", "ADBC path", "DB-API path", "ADBC / DB-API"],
            [
                [
                    kind,
                    benchlib.spread(adbc[kind]),
                    benchlib.spread(dbapi[kind]),
                    benchlib.fmt(
                        statistics.median(a / d for a, d in zip(adbc[kind], dbapi[kind], strict=True))
                    ),
                ]
                for kind in ("wall", "cpu")
            ],
        )
    )
    print(f"\nload average at the end: {[round(x, 2) for x in os.getloadavg()]}")
    benchlib.save(
        args.json,
        "stage_cache",
        {
            "machine": info,
            "digests": digests,
            "per_stage": per_stage,
            "runs": runs,
            "extracts": extracts,
        },
    )


if __name__ == "__main__":
    main()
