"""A/B parse time of two versions of the package, each against the hand-written floor, in one run.

To check that a change to the factory or the spec loader makes parsing faster (or no slower),
point ``--a`` and ``--b`` at two trees holding an ``airflow_mlpipe`` package, for example a
``git worktree`` of main and one with the change; each is put first on ``PYTHONPATH`` of its
children. Every round times, in rotating order and each in a fresh process (like
``parse_dags.py``'s ``dagbag`` section: Airflow imported before the clock starts, the package
not): the hand-written folder, the mlpipe folder with A, and the mlpipe folder with B, each tree
with a spec cache of its own (filled by the warm-up round; ignored by a tree without one).
Ratios to hand-written are taken within a round.

    python benchmarks/parse_ab.py --a /tmp/main-tree --b /tmp/patched-tree      # N=1000, M=20, 7 rounds
    python benchmarks/parse_ab.py --b /tmp/patched-tree --n 1000 --m 5
    python benchmarks/parse_ab.py --quick                                        # A = B = installed
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import benchlib
from parse_dags import generate


def run(folder: Path, n: int, m: int, tree: str | None, cache: Path | str) -> dict[str, Any]:
    env = benchlib.airflow_env(AIRFLOW__MLPIPE__SPEC_CACHE_DIR=str(cache))
    if tree:
        env["PYTHONPATH"] = os.pathsep.join([str(benchlib.BENCH_DIR), tree, env.get("PYTHONPATH", "")])
    script = str(benchlib.BENCH_DIR / "parse_dags.py")
    return benchlib.run_child([script, "--child", "dagbag", str(folder), str(n), str(m)], env)


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--a", help="tree with the A version of airflow_mlpipe (default: the installed one)")
    parser.add_argument("--b", help="tree with the B version of airflow_mlpipe (default: the installed one)")
    parser.add_argument("--quick", action="store_true", help="N=3, M=2, one round (smoke test)")
    parser.add_argument("--n", type=int, help="pipelines (default 1000)")
    parser.add_argument("--m", type=int, help="stages per pipeline (default 20)")
    parser.add_argument("--rounds", type=int, help="default 7")
    parser.add_argument("--workdir", help="where to generate the folders (default: a temporary dir)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="time A and B without the validated-spec cache: the first parse after every spec changed",
    )
    args = parser.parse_args(argv)
    n = args.n or (3 if args.quick else 1000)
    m = args.m or (2 if args.quick else 20)
    rounds = args.rounds or (1 if args.quick else 7)
    for tree in (args.a, args.b):
        if tree and not (Path(tree) / "airflow_mlpipe" / "__init__.py").is_file():
            parser.error(f"{tree} holds no airflow_mlpipe package")

    info = benchlib.machine()
    benchlib.print_header("Parse A/B benchmark", info)
    print(f"A: {benchlib.shown(args.a or 'installed')}")
    print(f"B: {benchlib.shown(args.b or 'installed')}\nN={n} M={m}, {rounds} rounds", end="")
    print(", no spec cache (every spec validated)\n" if args.no_cache else "\n")
    root = Path(args.workdir or tempfile.mkdtemp(prefix="mlpipe-bench-ab-"))
    folders = generate(root, n, m, ("mlpipe", "handwritten"))
    contestants = {
        "handwritten": (folders["handwritten"], None),
        "mlpipe A": (folders["mlpipe"], args.a),
        "mlpipe B": (folders["mlpipe"], args.b),
    }
    names = list(contestants)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    caches: dict[str, Path | str] = {
        name: "off" if args.no_cache else root / f"spec-cache-{index}" for index, name in enumerate(names)
    }
    if rounds > 1:  # warm-up: bytecode cache of the hand-written files, OS file cache, spec caches
        for name, (folder, tree) in contestants.items():
            run(folder, n, m, tree, caches[name])
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            folder, tree = contestants[name]
            results[name].append(run(folder, n, m, tree, caches[name]))
        print(f"  round {round_no + 1}/{rounds} done", file=sys.stderr)

    hand = results["handwritten"]
    rows = []
    for name in names:
        runs = results[name]
        rows.append(
            [
                name,
                len(runs),
                benchlib.spread(r["seconds"] for r in runs),
                benchlib.spread(r["cpu_s"] for r in runs),
                benchlib.spread(r["cpu_s"] / h["cpu_s"] for r, h in zip(runs, hand, strict=True)),
                benchlib.spread(r["seconds"] / h["seconds"] for r, h in zip(runs, hand, strict=True)),
                benchlib.spread(r["peak_rss_mb"] for r in runs),
            ]
        )
    print(f"## DagBag load in a fresh process, N={n} M={m}, median (min-max)\n")
    headers = ["contestant", "runs", "wall s", "CPU s", "CPU / hand", "wall / hand", "peak RSS MB"]
    print(benchlib.table(headers, rows))
    pairs = list(zip(results["mlpipe A"], results["mlpipe B"], strict=True))
    print(
        f"\nB / A within a round: CPU {benchlib.spread(b['cpu_s'] / a['cpu_s'] for a, b in pairs)}, ", end=""
    )
    print(f"wall {benchlib.spread(b['seconds'] / a['seconds'] for a, b in pairs)}")
    benchlib.save(args.json, "parse_ab", {"machine": info, "a": args.a, "b": args.b, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
