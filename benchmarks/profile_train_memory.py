"""Where ``model.matrix_factorization``'s memory goes: peak RSS per phase of one train stage.

``tracemalloc`` does not see numpy's, scipy's or ``implicit``'s C allocations, so this samples the
process's resident set (``/proc/self/statm``) every millisecond from a thread while the stage runs,
and labels each sample with the phase the stage is in (the component's helpers are wrapped, the
stage's code is not changed). ``ru_maxrss`` at the end of each phase gives the exact peak so far,
which a sample can miss by a millisecond's allocations.

    python benchmarks/profile_train_memory.py INTERACTIONS_OUTPUTS_JSON [--epochs 3]
    python benchmarks/profile_train_memory.py --quick      # a tiny generated input (smoke test)

``INTERACTIONS_OUTPUTS_JSON`` is the ``outputs.json`` a features stage of ``scale.py --keep DIR``
left in ``DIR/<events>/features/``. The stage runs with ``scale.py``'s train settings (factors 64,
no early stopping, one thread) and early stopping's keep-the-best-epoch bookkeeping on.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import benchlib
import scale

_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_MIB


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PhaseSampler:
    """Peak sampled RSS per phase (the innermost running one), and ``ru_maxrss`` when each ends."""

    def __init__(self) -> None:
        self.stack: list[str] = ["before"]
        self.peaks: dict[str, float] = {}
        self.order: list[str] = []
        self.ends: list[tuple[str, float, float, float]] = []  # phase, seconds, RSS after, maxrss after
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            phase = self.stack[-1]
            rss = _rss_mib()
            if rss > self.peaks.get(phase, 0.0):
                self.peaks[phase] = rss
            time.sleep(0.001)

    def __enter__(self) -> PhaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        label = f"{self.stack[-1]} > {name}" if len(self.stack) > 1 else name
        if label not in self.order:
            self.order.append(label)
        self.stack.append(label)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stack.pop()
            self.ends.append((label, time.perf_counter() - started, _rss_mib(), _maxrss_mib()))

    def wrap(self, owner: Any, attribute: str, name: str | None = None) -> None:
        original: Callable[..., Any] = getattr(owner, attribute)

        @functools.wraps(original)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name or attribute):
                return original(*args, **kwargs)

        setattr(owner, attribute, wrapped)


def profile(upstream_file: str, epochs: int, out_dir: str) -> dict[str, Any]:
    import implicit.cpu.als
    import scipy.sparse  # noqa: F401

    from airflow_mlpipe.components import _interactions, _model_artifact, _ranking, _split
    from airflow_mlpipe.components.model import matrix_factorization as component

    config = component.Config(
        factors=scale.FACTORS, epochs=epochs, early_stopping_patience=None, seed=42, num_threads=1
    )
    inputs = {"features": json.loads(Path(upstream_file).read_text())}
    benchlib.load_airflow_plugins()
    context = scale._context("train", inputs, out_dir)
    sampler = PhaseSampler()
    for owner, attribute in [
        (_interactions, "read_and_split"),
        (_interactions, "index_ids"),
        (_interactions, "csr"),
        (_interactions, "write_index_and_split"),
        (_split, "make_test_split"),
        (_split, "held_out"),
        (_split, "fingerprint"),
        (component, "train_als"),
        (component, "fit_als"),
        (_ranking, "evaluate"),
        (_model_artifact, "dumps"),
    ]:
        sampler.wrap(owner, attribute)
    sampler.wrap(_interactions.SplitInteractions, "matrix", "SplitInteractions.matrix")
    sampler.wrap(implicit.cpu.als.AlternatingLeastSquares, "fit", "ALS fit")
    rss_before = _rss_mib()
    started = time.perf_counter()
    with sampler, sampler.phase("run"):
        result = component.run(config, context)
    return {
        "seconds": time.perf_counter() - started,
        "rss_before_mb": rss_before,
        "metrics": dict(result["metrics"]),
        "phases": [
            {"phase": label, "peak_sampled_mb": sampler.peaks.get(label, 0.0)} for label in sampler.order
        ],
        "ends": [
            {"phase": label, "seconds": seconds, "rss_after_mb": rss, "maxrss_after_mb": maxrss}
            for label, seconds, rss, maxrss in sampler.ends
        ],
    }


def report(result: dict[str, Any]) -> None:
    print(f"## Peak RSS per phase (MiB; RSS before the stage {result['rss_before_mb']:.0f})\n")
    rows = [
        [p["phase"], benchlib.fmt(p["peak_sampled_mb"]) if p["peak_sampled_mb"] else "-"]
        for p in result["phases"]
    ]
    print(benchlib.table(["phase (innermost)", "peak sampled RSS MiB"], rows))
    print("\n## Phase ends, in order\n")
    rows = [
        [
            e["phase"],
            benchlib.fmt(e["seconds"]),
            benchlib.fmt(e["rss_after_mb"]),
            benchlib.fmt(e["maxrss_after_mb"]),
        ]
        for e in result["ends"]
    ]
    print(benchlib.table(["phase", "seconds", "RSS after MiB", "ru_maxrss after MiB"], rows))
    print(f"\npeak RSS of the process: {result['peak_rss_mb']:.0f} MiB; stage {result['seconds']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("upstream", nargs="?", help="a features stage's outputs.json")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="generate 20k events, profile one epoch")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        upstream, epochs, out_dir = args.child
        result = profile(upstream, int(epochs), out_dir)
        benchlib.emit(result)
        return 0
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-trainmem-") as work:
        upstream, epochs = args.upstream, args.epochs
        env = benchlib.airflow_env(Path(work) / "airflow-home")
        if args.quick:
            database = Path(work) / "events.db"
            env["AIRFLOW_CONN_SCALE_DB"] = f"sqlite:///{database}"
            benchlib.run_child([scale.__file__, "--child", "generate", str(database), "20000"], env)
            scale.run_chain(Path(work), 1, env, ("extract", "features"), keep=True)
            upstream, epochs = str(Path(work) / "features" / "outputs.json"), 1
        if not upstream:
            parser.error("give a features stage's outputs.json, or --quick")
        result = benchlib.run_child(
            [__file__, "--child", upstream, str(epochs), str(Path(work) / "train")], env
        )
    print("load average at the end: " + ", ".join(f"{load:.2f}" for load in os.getloadavg()) + "\n")
    report(result)
    benchlib.save(args.json, "profile_train_memory", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
