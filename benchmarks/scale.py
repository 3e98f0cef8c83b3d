"""Bigger data on one worker: time and peak memory of extract -> features -> train at 1M, 5M, 20M events.

For each size a synthetic event log is written into a SQLite file with
``airflow_mlpipe.demo_data`` (realistic skew: Zipf item popularity, Zipf user activity, taste
clusters; events/20 users and events/200 items, 30 days). Then, round after round, the three
built-in stages run as in the reference pipeline, each in a fresh process (so its ``ru_maxrss``
is that stage's alone), each reading the previous stage's artifacts:

* ``extract``: ``data.extract.database`` through an Airflow connection to the SQLite file,
  ``SELECT * FROM user_events WHERE date >= :start`` (every row), default ``batch_size``;
* ``features``: ``features.user_engagement``, a 30-day window holding every event;
* ``train``: ``model.matrix_factorization``, factors 64, a fixed number of epochs (3 by default)
  without early stopping, one thread: fewer epochs than the component's default, to keep the
  whole run near 20 minutes; the time per epoch is reported so longer runs can be estimated.

Each child imports what the stage needs and loads Airflow's plugins before its clock starts, as a
worker's task runner has done before ``execute``. Peak RSS is the whole process (Airflow imports
included), which is what a worker's memory limit sees.

    python benchmarks/scale.py                     # 1M, 5M, 20M events, 3 rounds (~20 min, quiet machine)
    python benchmarks/scale.py --sizes 1000000 --rounds 1
    python benchmarks/scale.py --quick             # 20k and 60k events, one round (smoke test)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

END = "2024-06-01"
DAYS = 30
USER_ZIPF_EXPONENT = 0.7
FACTORS = 64
MEMORY_LIMIT_MB = 2048
STAGES = ("extract", "features", "train")


def child_generate(database: str, events: int) -> None:
    from airflow_mlpipe.demo_data import generate_user_events

    started = time.perf_counter()
    generate_user_events(
        database,
        n_users=max(events // 20, 10),
        n_items=max(events // 200, 10),
        n_events=events,
        end_date=END,
        days=DAYS,
        user_zipf_exponent=USER_ZIPF_EXPONENT,
    )
    benchlib.emit({"seconds": time.perf_counter() - started})


def child_stage(stage: str, upstream_file: str, out_dir: str, epochs: int) -> None:
    """Run one stage on the previous stage's outputs (a JSON file) and report time and memory."""
    import datetime

    import pyarrow.parquet  # noqa: F401  (every stage reads or writes Parquet)

    if stage == "extract":
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook  # noqa: F401
        from sqlalchemy.dialects import sqlite  # noqa: F401

        from airflow_mlpipe.components.data.extract import database as component

        config: Any = component.Config(
            query="SELECT * FROM user_events WHERE date >= :start",
            conn_id="scale_db",
            parameters={"start": "2024-01-01"},
        )
        inputs: dict[str, Any] = {}
    elif stage == "features":
        from airflow_mlpipe.components.features import user_engagement as component

        config = component.Config(window_days=DAYS, window_end=datetime.datetime.fromisoformat(END))
        inputs = {"extract": json.loads(Path(upstream_file).read_text())}
    else:
        import implicit.cpu.als  # noqa: F401
        import scipy.sparse  # noqa: F401
        import threadpoolctl  # noqa: F401

        import airflow_mlpipe.components._ranking
        import airflow_mlpipe.components._split  # noqa: F401
        from airflow_mlpipe.components.model import matrix_factorization as component

        config = component.Config(
            factors=FACTORS, epochs=epochs, early_stopping_patience=None, seed=42, num_threads=1
        )
        inputs = {"features": json.loads(Path(upstream_file).read_text())}
    plugins = benchlib.load_airflow_plugins()
    context = benchlib.component_context(stage, out_dir, inputs, pipeline="scale")
    rss_before = benchlib.peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = component.run(config, context)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    outputs = {"artifacts": dict(result["artifacts"]), "metrics": dict(result["metrics"])}
    Path(out_dir, "outputs.json").write_text(json.dumps(outputs))
    benchlib.emit(
        {
            "seconds": seconds,
            "cpu_s": cpu,
            "rss_before_mb": rss_before,
            "plugins_s": plugins,
            "metrics": outputs["metrics"],
        }
    )


def run_chain(
    work: Path, epochs: int, env: dict[str, str], stages: tuple[str, ...] = STAGES, keep: bool = False
) -> dict[str, Any]:
    """The ``stages`` of extract -> features -> train in order, each a fresh process; results by name.

    A chain that starts after extract reads the outputs its first stage's upstream left in ``work``
    (a kept run's). With ``keep`` the stages' outputs stay in ``work`` for a later chain.
    """
    results: dict[str, Any] = {}
    first = STAGES.index(stages[0])
    upstream = str(work / STAGES[first - 1] / "outputs.json") if first else ""
    if upstream and not Path(upstream).exists():
        raise SystemExit(f"{upstream} is missing: run the stages before {stages[0]} with --keep first")
    try:
        for stage in stages:
            out_dir = work / stage
            shutil.rmtree(out_dir, ignore_errors=True)
            results[stage] = benchlib.run_child(
                [__file__, "--child", stage, upstream, str(out_dir), str(epochs)], env, timeout=3600
            )
            upstream = str(out_dir / "outputs.json")
    finally:
        if not keep:
            for stage in stages:
                shutil.rmtree(work / stage, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="20k and 60k events, one round, one epoch")
    parser.add_argument("--sizes", type=int, nargs="+", help="events per size (default 1M 5M 20M)")
    parser.add_argument("--rounds", type=int, help="chains per size (default 3)")
    parser.add_argument("--epochs", type=int, help="ALS epochs of the train stage (default 3)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=STAGES,
        help="run only these consecutive stages (after extract: on a --keep directory's outputs)",
    )
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="keep the event databases and the last chain's outputs in DIR, and reuse them if there",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "generate":
            child_generate(rest[0], int(rest[1]))
        else:
            child_stage(kind, rest[0], rest[1], int(rest[2]))
        return 0

    sizes = args.sizes or ([20_000, 60_000] if args.quick else [1_000_000, 5_000_000, 20_000_000])
    rounds = args.rounds or (1 if args.quick else 3)
    epochs = args.epochs or (1 if args.quick else 3)
    info = benchlib.machine()
    benchlib.print_header("Scale benchmark: extract -> features -> train on one worker", info)
    print(
        f"sizes {sizes} events, {rounds} rounds; users = events/20, items = events/200, {DAYS} days, "
        f"Zipf items 0.9 / users {USER_ZIPF_EXPONENT}; train: factors {FACTORS}, {epochs} epochs, 1 thread\n"
    )
    stages = tuple(stage for stage in STAGES if stage in (args.stages or STAGES))
    if args.stages and STAGES[STAGES.index(stages[0]) : STAGES.index(stages[-1]) + 1] != stages:
        parser.error("--stages must be consecutive stages of extract -> features -> train")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mlpipe-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {
        "machine": info,
        "epochs": epochs,
        "factors": FACTORS,
        "stages": list(stages),
        "sizes": {},
    }
    try:
        for events in sizes:
            database = work / f"events-{events}.db"
            size_dir = work / str(events)
            env = benchlib.airflow_env(work / "airflow-home", AIRFLOW_CONN_SCALE_DB=f"sqlite:///{database}")
            generated: dict[str, Any] = {"seconds": float("nan"), "reused": True}
            # The same arguments always give the same rows: a kept database is reused.
            if "extract" in stages and not (args.keep and database.exists()):
                generated = benchlib.run_child(
                    [__file__, "--child", "generate", str(database), str(events)], env
                )
                print(f"  {events} events generated in {generated['seconds']:.1f}s", file=sys.stderr)
            chains = []
            for round_no in range(rounds):
                chains.append(run_chain(size_dir, epochs, env, stages, keep=bool(args.keep)))
                print(f"  {events} events: round {round_no + 1}/{rounds} done", file=sys.stderr)
            raw["sizes"][str(events)] = {"generate": generated, "chains": chains}
            if not args.keep:
                database.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    report(raw, sizes, epochs, stages)
    benchlib.save(args.json, "scale", raw)
    return 0


def report(raw: dict[str, Any], sizes: list[int], epochs: int, stages: tuple[str, ...] = STAGES) -> None:
    first_chains = {events: raw["sizes"][str(events)]["chains"][0] for events in sizes}
    if {"features", "train"} <= set(stages):
        print("## Data\n")
        rows = []
        for events, chain in first_chains.items():
            features, train = chain["features"]["metrics"], chain["train"]["metrics"]
            rows.append(
                [
                    events,
                    features["users"],
                    features["items"],
                    features["interactions"],
                    train["train_interactions"],
                ]
            )
        print(benchlib.table(["events", "users", "items", "user-item pairs", "pairs trained on"], rows))
        print()

    # CPU seconds beside wall seconds: other work on a shared machine inflates the wall time.
    print("## Stages at scale: seconds and peak RSS per stage process, median (min-max)\n")
    smallest = sizes[0]

    def per_million(stage: str, events: int, key: str) -> float:
        runs = raw["sizes"][str(events)]["chains"]
        return benchlib.median(c[stage][key] for c in runs) / events * 1e6

    rows = []
    for events in sizes:
        chains = raw["sizes"][str(events)]["chains"]
        for stage in stages:
            runs = [c[stage] for c in chains]
            peak = max(r["peak_rss_mb"] for r in runs)
            rows.append(
                [
                    events,
                    stage,
                    len(runs),
                    benchlib.spread(r["seconds"] for r in runs),
                    benchlib.spread(r["cpu_s"] for r in runs),
                    benchlib.fmt(per_million(stage, events, "cpu_s")),
                    benchlib.fmt(per_million(stage, events, "cpu_s") / per_million(stage, smallest, "cpu_s")),
                    benchlib.spread(r["peak_rss_mb"] for r in runs),
                    benchlib.fmt(benchlib.median(r["rss_before_mb"] for r in runs)),
                    "yes" if peak <= MEMORY_LIMIT_MB else "**no**",
                ]
            )
    headers = [
        "events",
        "stage",
        "runs",
        "seconds",
        "CPU s",
        "CPU s per 1M events",
        f"CPU per event / at {smallest}",
        "peak RSS MiB",
        "RSS before run MiB",
        "within 2 GiB",
    ]
    print(benchlib.table(headers, rows))
    rows = []
    for events in sizes:
        chains = raw["sizes"][str(events)]["chains"]
        rows.append(
            [
                events,
                benchlib.spread(sum(c[stage]["seconds"] for stage in stages) for c in chains),
                benchlib.fmt(max(c[stage]["peak_rss_mb"] for c in chains for stage in stages)),
                benchlib.fmt(raw["sizes"][str(events)]["generate"]["seconds"]),
            ]
        )
    print()
    title = " + ".join(stages)
    print(benchlib.table(["events", f"{title} s", "largest peak RSS MiB", "generate s"], rows))
    print(f"\n(train: {epochs} epochs, factors {FACTORS}, no early stopping; Airflow's plugin load excluded)")


if __name__ == "__main__":
    sys.exit(main())
