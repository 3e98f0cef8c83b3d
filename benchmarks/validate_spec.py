"""Validation time of one pipeline spec: read, merge the overlay, check fields, graph and configs.

Generates a 20-stage spec (five built-in components with realistic configs, a chain with fan-in,
stage settings, a templated value) plus a production overlay, then times ``load_pipeline`` in this
process after a warm-up (component modules imported, caches filled) and reports the median and
spread per spec, in milliseconds. Also timed: the same spec with its overlay, and a broken copy
(the error path, with located problems and suggestions). The first, cold load is reported too.

Nothing here needs Airflow: ``environment`` and ``component_modules`` are passed explicitly, so
the script also checks that Airflow was never imported.

    python benchmarks/validate_spec.py            # 20 stages, 500 timed runs per case
    python benchmarks/validate_spec.py --quick    # 50 timed runs per case (smoke test, make bench)
    python benchmarks/validate_spec.py --stages 100 --runs 1000
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from airflow_mlpipe.spec import SpecError, load_pipeline  # noqa: E402

NAME = "bench_validation"

# (component, config lines) per built-in component, cycled through the stages.
STAGE_KINDS: list[tuple[str, str]] = [
    (
        "data.extract.database",
        """\
        query: "SELECT * FROM user_events WHERE date > :cutoff AND region = :region"
        conn_id: analytics_db
        batch_size: 10000
        parameters: {cutoff: "{{ macros.ds_add(ds, -90) }}", region: emea}
        """,
    ),
    (
        "features.user_engagement",
        """\
        window_days: 30
        aggregation: [mean, std, count]
        """,
    ),
    (
        "model.matrix_factorization",
        """\
        factors: 64
        regularization: 0.01
        epochs: 50
        early_stopping_patience: 5
        """,
    ),
    (
        "evaluation.recommender",
        """\
        metrics: ["recall@10", "ndcg@10", "coverage"]
        test_split: 0.2
        thresholds: {recall@10: 0.15, ndcg@10: 0.12}
        """,
    ),
    (
        "registry.register_model",
        """\
        registry: "file:///tmp/mlpipe/models/acme/"
        promote_if: all_metrics_passed
        """,
    ),
]


def spec_text(stages: int) -> str:
    """A valid spec of ``stages`` stages: a chain where every fifth stage also waits for two back."""
    lines = [
        f"name: {NAME}",
        "version: 3.2.1",
        "metadata:",
        "  owner: recommendations-team",
        "  description: Benchmark spec for validation time",
        "  tags: [recommender, benchmark]",
        '  schedule: "0 3 * * *"',
        '  notify_on_failure: ["recsys-alerts@example.com", "ml-oncall@example.com"]',
        "  start_date: 2024-01-01",
        "defaults: {retries: 1, retry_delay: 5m}",
        "stages:",
    ]
    for index in range(stages):
        component, config = STAGE_KINDS[index % len(STAGE_KINDS)]
        dependencies = [f"stage_{index - 1:03d}"] if index else []
        if index >= 2 and index % 5 == 0:
            dependencies.append(f"stage_{index - 2:03d}")
        lines += [
            f"  - name: stage_{index:03d}",
            f"    component: {component}",
            "    config:",
            textwrap.indent(textwrap.dedent(config).rstrip(), " " * 6),
            f"    dependencies: [{', '.join(dependencies)}]",
        ]
        if index % 4 == 3:
            lines.append("    execution_timeout: 1h")
    return "\n".join(lines) + "\n"


OVERLAY = """\
metadata:
  tags: [recommender, production]
defaults: {retries: 3}
stages:
  - name: stage_000
    config: {batch_size: 50000, parameters: {region: global}}
  - name: stage_002
    config: {epochs: 100}
"""


def broken_text(stages: int) -> str:
    """The valid spec with three mistakes: a misspelt key, an unknown dependency, a bad config value."""
    text = spec_text(stages)
    text = text.replace("defaults: {retries: 1", "defaults: {retires: 1", 1)
    text = text.replace("dependencies: [stage_000]", "dependencies: [stage_00]", 1)
    return text.replace("factors: 64", "factors: sixty-four", 1)


def time_runs(load: Callable[[], object], runs: int, warmup: int) -> list[float]:
    """Milliseconds per call of ``load``, ``runs`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        load()
    gc.collect()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        load()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def summary(label: str, times: list[float]) -> str:
    deciles = statistics.quantiles(times, n=10) if len(times) >= 10 else [min(times)] * 9
    return (
        f"{label:<34} median {statistics.median(times):7.2f} ms per spec  "
        f"(p10 {deciles[0]:.2f}, p90 {deciles[-1]:.2f}, min {min(times):.2f}; {len(times)} runs)"
    )


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs: a smoke test")
    parser.add_argument("--stages", type=int, default=20, help="stages in the generated spec (default 20)")
    parser.add_argument("--runs", type=int, help="timed runs per case (default 500, 50 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed runs first (default 50, 10 with --quick)")
    args = parser.parse_args(argv)
    runs = args.runs or (50 if args.quick else 500)
    warmup = args.warmup if args.warmup is not None else (10 if args.quick else 50)

    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-validate-") as tmp:
        folder = Path(tmp)
        spec = folder / f"{NAME}.yaml"
        spec.write_text(spec_text(args.stages))
        (folder / f"{NAME}.production.yaml").write_text(OVERLAY)
        broken_folder = folder / "broken"
        broken_folder.mkdir()
        broken = broken_folder / f"{NAME}.yaml"
        broken.write_text(broken_text(args.stages))

        def load_dev() -> object:
            return load_pipeline(spec, "dev", component_modules=())

        def load_production() -> object:
            return load_pipeline(spec, "production", component_modules=())

        def load_broken() -> object:
            try:
                load_pipeline(broken, "dev", component_modules=())
            except SpecError as exc:
                return exc.problems
            raise AssertionError("the broken spec loaded")

        start = time.perf_counter_ns()
        pipeline = load_dev()  # cold: imports the component modules, fills caches
        cold_ms = (time.perf_counter_ns() - start) / 1e6
        problems = load_broken()
        assert len(pipeline.stages) == args.stages  # type: ignore[attr-defined]
        assert len(load_production().stages) == args.stages  # type: ignore[attr-defined]
        assert len(problems) == 3, problems  # type: ignore[arg-type]

        print(
            f"validate_spec: {args.stages}-stage spec ({spec.stat().st_size} bytes), "
            f"Python {sys.version.split()[0]}, {runs} timed runs after {warmup} warm-up runs"
        )
        print(f"{'first load (cold, imports components)':<34} {cold_ms:7.2f} ms")
        results = {
            "valid spec (dev)": time_runs(load_dev, runs, warmup),
            "valid spec + overlay (production)": time_runs(load_production, runs, warmup),
            "broken spec (3 problems)": time_runs(load_broken, runs, warmup),
        }
        for label, times in results.items():
            print(summary(label, times))

    airflow = sorted(name for name in sys.modules if name == "airflow" or name.startswith("airflow."))
    print(f"airflow imported: {'yes: ' + ', '.join(airflow[:3]) if airflow else 'no'}")
    return 1 if airflow else 0


if __name__ == "__main__":
    sys.exit(main())
