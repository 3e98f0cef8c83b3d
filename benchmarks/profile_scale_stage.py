"""Where a scale stage's memory and time go: peak RSS and CPU seconds per phase of one stage.

``tracemalloc`` does not see numpy's, scipy's or ``implicit``'s C allocations, so this samples the
process's resident set (``/proc/self/statm``) every millisecond from a thread while the stage runs,
and labels each sample with the phase the stage is in (the component's helpers are wrapped, the
stage's code is not changed). ``ru_maxrss`` at the end of each phase gives the exact peak so far,
which a sample can miss by a millisecond's allocations.

    python benchmarks/profile_scale_stage.py train DIR/20000000/features/outputs.json [--epochs 3]
    python benchmarks/profile_scale_stage.py features DIR/20000000/extract/outputs.json
    python benchmarks/profile_scale_stage.py train --quick      # a tiny generated input (smoke test)

The ``outputs.json`` is the one the upstream stage of ``scale.py --keep DIR`` left in
``DIR/<events>/<stage>/``. The stage runs with ``scale.py``'s settings (train: factors 64, no early
stopping, one thread). CPU seconds are the process's (``process_time``, the sampling thread's
few per cent included), so compare them between runs of this script, not with ``scale.py``'s.
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
        # phase, seconds, CPU seconds, RSS after, maxrss after
        self.ends: list[tuple[str, float, float, float, float]] = []
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
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.stack.pop()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            self.ends.append((label, seconds, cpu, _rss_mib(), _maxrss_mib()))

    def wrap(self, owner: Any, attribute: str, name: str | None = None) -> None:
        original: Callable[..., Any] = getattr(owner, attribute)

        @functools.wraps(original)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name or attribute):
                return original(*args, **kwargs)

        setattr(owner, attribute, wrapped)


def _wrap_train(sampler: PhaseSampler) -> tuple[Any, Any]:
    import implicit.cpu.als
    import scipy.sparse  # noqa: F401

    from airflow_mlpipe.components import _interactions, _model_artifact, _ranking, _split
    from airflow_mlpipe.components.model import matrix_factorization as component

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
    return component, lambda epochs: component.Config(
        factors=scale.FACTORS, epochs=epochs, early_stopping_patience=None, seed=42, num_threads=1
    )


def _wrap_features(sampler: PhaseSampler) -> tuple[Any, Any]:
    import datetime

    import pyarrow.compute as pc

    from airflow_mlpipe.components.features import user_engagement as component

    for attribute in (
        "_window_end",
        "_distinct_ids",
        "_window_events",
        "user_features",
        "write_interactions",
    ):
        sampler.wrap(component, attribute)
    sampler.wrap(component, "_pair_slices")
    sampler.wrap(component._Distinct, "sorted", "_Distinct.sorted")
    sampler.wrap(pc, "sort_indices")  # the pairs' sort (features' only call of it)
    end = datetime.datetime.fromisoformat(scale.END)
    return component, lambda epochs: component.Config(window_days=scale.DAYS, window_end=end)


def profile(stage: str, upstream_file: str, epochs: int, out_dir: str) -> dict[str, Any]:
    sampler = PhaseSampler()
    component, make_config = (_wrap_train if stage == "train" else _wrap_features)(sampler)
    config = make_config(epochs)
    upstream = "features" if stage == "train" else "extract"
    inputs = {upstream: json.loads(Path(upstream_file).read_text())}
    benchlib.load_airflow_plugins()
    context = benchlib.component_context(stage, out_dir, inputs, pipeline="scale")
    rss_before = _rss_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    with sampler, sampler.phase("run"):
        result = component.run(config, context)
    return {
        "stage": stage,
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu_started,
        "rss_before_mb": rss_before,
        "metrics": dict(result["metrics"]),
        "phases": [
            {"phase": label, "peak_sampled_mb": sampler.peaks.get(label, 0.0)} for label in sampler.order
        ],
        "ends": [
            {"phase": label, "seconds": seconds, "cpu_s": cpu, "rss_after_mb": rss, "maxrss_after_mb": maxrss}
            for label, seconds, cpu, rss, maxrss in sampler.ends
        ],
    }


def report(result: dict[str, Any]) -> None:
    print(f"RSS before the stage: {result['rss_before_mb']:.0f} MiB\n")
    print("## Phases (innermost label; a phase called several times is summed)\n")
    rows = []
    for phase in result["phases"]:
        ends = [end for end in result["ends"] if end["phase"] == phase["phase"]]
        peak = phase["peak_sampled_mb"]
        rows.append(
            [
                phase["phase"],
                len(ends),
                benchlib.fmt(sum(end["seconds"] for end in ends)),
                benchlib.fmt(sum(end["cpu_s"] for end in ends)),
                benchlib.fmt(peak) if peak else "-",
                benchlib.fmt(max(end["maxrss_after_mb"] for end in ends)),
            ]
        )
    headers = ["phase", "calls", "seconds", "CPU s", "peak sampled RSS MiB", "ru_maxrss after MiB"]
    print(benchlib.table(headers, rows))
    print(
        f"\npeak RSS of the process: {result['peak_rss_mb']:.0f} MiB; "
        f"stage {result['seconds']:.1f} s, {result['cpu_s']:.1f} CPU s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage", choices=("train", "features"))
    parser.add_argument("upstream", nargs="?", help="the upstream stage's outputs.json")
    parser.add_argument("--epochs", type=int, default=3, help="train: ALS epochs (default 3)")
    parser.add_argument("--quick", action="store_true", help="generate 20k events, profile one epoch")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        upstream, epochs, out_dir = args.child
        benchlib.emit(profile(args.stage, upstream, int(epochs), out_dir))
        return 0
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-profile-") as work:
        upstream, epochs = args.upstream, args.epochs
        env = benchlib.airflow_env(Path(work) / "airflow-home")
        if args.quick:
            database = Path(work) / "events.db"
            env["AIRFLOW_CONN_SCALE_DB"] = f"sqlite:///{database}"
            benchlib.run_child([scale.__file__, "--child", "generate", str(database), "20000"], env)
            upstream_stages = ("extract", "features") if args.stage == "train" else ("extract",)
            scale.run_chain(Path(work), 1, env, upstream_stages, keep=True)
            upstream, epochs = str(Path(work) / upstream_stages[-1] / "outputs.json"), 1
        if not upstream:
            parser.error("give the upstream stage's outputs.json, or --quick")
        child = [__file__, args.stage, "--child", upstream, str(epochs), str(Path(work) / args.stage)]
        result = benchlib.run_child(child, env, timeout=3600)
    print(f"# {args.stage}: peak RSS and CPU per phase\n")
    print("load average at the end: " + ", ".join(f"{load:.2f}" for load in os.getloadavg()) + "\n")
    report(result)
    benchlib.save(args.json, f"profile_{args.stage}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
