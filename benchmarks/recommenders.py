"""Recommenders on the 100k-rating movie data set: the built-in models against the standard baselines.

Every contestant sees the same pairs: the pipeline's own split (``components/_split.py``: 20% of
the user-item pairs held out for the test, 10% of the rest for validation) and is scored with the
pipeline's metric definitions (``components/_ranking.py``) on the test pairs, with everything
else as the known history. Hyperparameters are chosen on the validation pairs only, then the
chosen configuration is refitted on training + validation pairs and scored once on the test.

* ``popularity``: the most popular unseen items (``evaluation.recommender``'s baseline);
* ``item-kNN``: cosine item-item similarity, each item's k nearest neighbours (k on validation);
* ``implicit ALS, directly``: ``implicit.cpu.als.AlternatingLeastSquares`` the ordinary way
  (confidence ``alpha * X``, 15 iterations), a grid on validation;
* ``model.matrix_factorization``, defaults and the reference spec's sweep grid (select:
  ``val_recall@10``, max), run as the pipeline runs them: the component, then
  ``evaluation.recommender`` on its artifacts;
* ``model.ease``, default ``l2`` and a grid on ``val_recall@10``, likewise.

The data is MovieLens 100K (943 users, 1682 movies, 100,000 ratings; each rating is one
interaction of weight 1, as ``features.user_engagement`` would count one event). It is read from
the RecBole wheel, which ships it as ``recbole/dataset_example/ml-100k/ml-100k.inter``; the
script never downloads anything. Get the wheel once (``--no-deps``: only its data is read; its
pinned dependencies conflict with Airflow's, so it is not an extra)::

    pip download --no-deps --dest benchmarks/data "recbole==1.2.1"
    python benchmarks/recommenders.py                 # ~3 min; times are medians of 3 rounds
    python benchmarks/recommenders.py --quick         # synthetic 300 x 200, one round (smoke test)

``--data`` takes another path: the wheel, or an extracted ``ml-100k.inter`` or ``u.data``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import logging
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import benchlib

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "recbole-1.2.1-py3-none-any.whl"
WHEEL_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
METRICS = ["recall@10", "ndcg@10", "coverage"]
SELECT = "recall@10"
GOAL = {"recall@10": 0.235, "ndcg@10": 0.42}
EASE_GRID = {"l2": [100, 200, 300, 500]}
IMPLICIT_GRID = {"factors": [64, 128], "regularization": [1, 10, 30], "alpha": [1, 5, 20]}
KNN_GRID = {"neighbours": [10, 25, 50, 100, 200]}


def reference_grid() -> dict[str, list[Any]]:
    """The grid of the reference spec's ``train`` sweep, read from the spec as the factory reads it."""
    from airflow_mlpipe.spec import load_folder

    pipeline = load_folder(benchlib.REPO / "dags" / "pipelines").pipelines["recommender_training"]
    sweep = pipeline.stage("train").sweep
    assert sweep is not None and sweep.grid is not None, "the reference spec's train stage sweeps a grid"
    return sweep.grid


#: ``--defaults``: the grid the defaults of model.matrix_factorization were chosen from (validation only).
DEFAULTS_GRID = {"factors": [32, 64, 128], "regularization": [10, 20, 30, 50], "alpha": [1, 3, 5]}


def load_ml100k(path: Path) -> Any:
    """``user_id, item_id, weight`` (1 per rating) from the wheel, an ``ml-100k.inter`` or a ``u.data``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            raw = wheel.read(WHEEL_MEMBER)
    else:
        raw = path.read_bytes()
    header = raw.startswith(b"user_id")
    table = pcsv.read_csv(
        io.BytesIO(raw),
        read_options=pcsv.ReadOptions(
            skip_rows=1 if header else 0, column_names=["user", "item", "rating", "timestamp"]
        ),
        parse_options=pcsv.ParseOptions(delimiter="\t"),
    )
    return pa.table(
        {
            "user_id": table.column("user").cast(pa.int64()),
            "item_id": table.column("item").cast(pa.int64()),
            "weight": pa.array(np.ones(table.num_rows)),
        }
    )


def synthetic(users: int = 300, items: int = 200, per_user: int = 30, seed: int = 0) -> Any:
    """Pairs with taste clusters and popular items, for ``--quick``."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(0, 8, users)
    item_cluster = rng.integers(0, 8, items)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    pairs = set()
    for user in range(users):
        own = np.flatnonzero(item_cluster == user_cluster[user])
        for _ in range(per_user):
            if rng.random() < 0.7 and len(own):
                pairs.add((user, int(rng.choice(own))))
            else:
                pairs.add((user, int(rng.choice(items, p=popularity / popularity.sum()))))
    user_ids, item_ids = map(np.array, zip(*sorted(pairs), strict=True))
    return pa.table(
        {
            "user_id": pa.array(user_ids + 1000),  # ids are not row numbers
            "item_id": pa.array(item_ids + 5000),
            "weight": pa.array(np.ones(len(user_ids))),
        }
    )


class Split:
    """The pipeline's split of the pairs, as matrices (rebuilt with the components' own helpers)."""

    def __init__(self, interactions_uri: str) -> None:
        import numpy as np

        from airflow_mlpipe.components import _interactions

        data = _interactions.read_and_split(
            interactions_uri, "weight", 0.2, 0, 0.1, logging.getLogger("bench")
        )
        self.train = data.matrix(data.train)
        self.validation = data.matrix(data.validation)
        self.known = data.matrix(~data.test)  # training + validation: what the test is scored against
        self.test = data.matrix(data.test)

        def users(relevant: Any, known: Any) -> Any:
            return np.flatnonzero((np.diff(relevant.indptr) > 0) & (np.diff(known.indptr) > 0))

        self.validation_users = users(self.validation, self.train)
        self.test_users = users(self.test, self.known)

    def score(self, recommender: Callable[[Any], Any], on: str) -> dict[str, float]:
        """Metrics of ``recommender(history)`` on the validation (history: train) or test pairs."""
        from airflow_mlpipe.components import _ranking

        if on == "validation":
            history, relevant, users = self.train, self.validation, self.validation_users
        else:
            history, relevant, users = self.known, self.test, self.test_users
        return _ranking.evaluate(recommender(history), users, history, relevant, METRICS)


# -- the baselines, written here ---------------------------------------------------------------


def popularity(history: Any) -> Any:
    import numpy as np

    from airflow_mlpipe.components import _ranking

    return _ranking.popularity_recommender(np.diff(history.tocsc().indptr).astype(np.float64))


def item_knn(neighbours: int) -> Callable[[Any], Any]:
    def fit(history: Any) -> Any:
        import numpy as np

        from airflow_mlpipe.components import _ranking

        binary = history.copy()
        binary.data[:] = 1.0
        gram = (binary.T @ binary).toarray().astype(np.float64)
        norms = np.sqrt(np.diag(gram))
        norms[norms == 0] = 1.0
        similarity = gram / norms[:, None] / norms[None, :]
        np.fill_diagonal(similarity, 0.0)
        if neighbours < similarity.shape[0]:  # keep each item's k most similar items
            cut = np.argpartition(-similarity, neighbours, axis=1)[:, neighbours:]
            np.put_along_axis(similarity, cut, 0.0, axis=1)
        return _ranking.item_item_recommender(similarity.astype(np.float32), binary)

    return fit


def implicit_als(factors: int, regularization: float, alpha: float) -> Callable[[Any], Any]:
    def fit(history: Any) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        from airflow_mlpipe.components import _ranking

        binary = history.copy()
        binary.data[:] = 1.0
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=factors,
                regularization=regularization,
                alpha=alpha,
                iterations=15,
                num_threads=1,
                random_state=42,
            )
            model.fit(binary, show_progress=False)
        return _ranking.factor_recommender(model.user_factors, model.item_factors)

    return fit


# -- the built-in components, as a stage runs them ---------------------------------------------


def run_component(component: str, config: Mapping[str, Any], interactions_uri: str, work: Path) -> dict:
    """Train with ``component`` and evaluate with ``evaluation.recommender``: validation and test."""
    from airflow_mlpipe.components.evaluation import recommender
    from airflow_mlpipe.resolver import resolve_component

    module = resolve_component(component).module
    out = Path(tempfile.mkdtemp(dir=work))
    started = time.perf_counter()
    trained = module.run(
        module.Config(**config),
        benchlib.component_context(
            "train", out / "train", {"features": {"artifacts": {"interactions": interactions_uri}}}
        ),
    )
    fitted = time.perf_counter() - started
    evaluated = recommender.run(
        recommender.Config(metrics=METRICS, baseline=False),
        benchlib.component_context("evaluate", out / "evaluate", {"train": trained}),
    )
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    metrics = trained["metrics"]
    return {
        "validation": {name: metrics[f"val_{name}"] for name in ("recall@10", "ndcg@10")},
        "test": {name: evaluated["metrics"][name] for name in METRICS},
        "fit_s": fitted,
        "seconds": seconds,
    }


def grid(values: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    return [
        dict(zip(values, combination, strict=True)) for combination in itertools.product(*values.values())
    ]


def _describe(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in config.items()) or "defaults"


def contest(
    split: Split, interactions_uri: str, work: Path, rounds: int, quick: bool
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def grid_of(values: Mapping[str, list[Any]]) -> Mapping[str, list[Any]]:
        if not quick:
            return values
        first, *others = values  # --quick: two variants, to check that selection works
        return {first: values[first][:2], **{name: values[name][:1] for name in others}}

    def timed(function: Callable[[], Any]) -> tuple[Any, list[float]]:
        times, result = [], None
        for _ in range(rounds):
            started = time.perf_counter()
            result = function()
            times.append(time.perf_counter() - started)
        return result, times

    def written_here(
        name: str, make: Callable[..., Callable[[Any], Any]], values: Mapping[str, list]
    ) -> None:
        started = time.perf_counter()
        candidates = [(config, split.score(make(**config), "validation")) for config in grid(values)]
        search = time.perf_counter() - started
        best, validation = max(candidates, key=lambda pair: pair[1][SELECT])  # ties: the first
        test, times = timed(lambda: split.score(make(**best), "test"))
        rows.append(_row(name, _describe(best), validation, test, times, search, len(candidates)))

    def built_in(name: str, component: str, values: Mapping[str, list] | None) -> None:
        configs = grid(values) if values else [{}]
        started = time.perf_counter()
        results = [(config, run_component(component, config, interactions_uri, work)) for config in configs]
        search = time.perf_counter() - started if values else 0.0
        best, result = max(results, key=lambda pair: pair[1]["validation"][SELECT])  # the sweep's select
        again = [run_component(component, best, interactions_uri, work) for _ in range(rounds - 1)]
        times = [result["seconds"], *(other["seconds"] for other in again)]
        rows.append(
            _row(name, _describe(best), result["validation"], result["test"], times, search, len(configs))
        )

    started = time.perf_counter()
    test, times = timed(lambda: split.score(popularity, "test"))
    rows.append(_row("popularity", "-", split.score(popularity, "validation"), test, times, 0.0, 1))
    written_here("item-kNN (cosine)", item_knn, grid_of(KNN_GRID))
    written_here("implicit ALS, called directly", implicit_als, grid_of(IMPLICIT_GRID))
    built_in("model.matrix_factorization, defaults", "model.matrix_factorization", None)
    built_in("model.matrix_factorization, swept", "model.matrix_factorization", grid_of(reference_grid()))
    built_in("model.ease, defaults", "model.ease", None)
    built_in("model.ease, swept", "model.ease", grid_of(EASE_GRID))
    print(f"  contest done in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return rows


def defaults_grid(uri: str, work: Path, json_path: str | None, info: Mapping[str, Any], quick: bool) -> int:
    """The validation metrics of model.matrix_factorization over DEFAULTS_GRID (no test split)."""
    configs = grid(DEFAULTS_GRID)[:2] if quick else grid(DEFAULTS_GRID)
    configs.insert(0, {"factors": 64, "regularization": 0.01, "alpha": 1})  # the old defaults' values
    results = []
    for config in configs:
        result = run_component("model.matrix_factorization", config, uri, work)
        results.append({"config": config, "validation": result["validation"], "seconds": result["seconds"]})
    results.sort(key=lambda row: -row["validation"][SELECT])
    print("## model.matrix_factorization on the validation split, best first\n")
    print(
        benchlib.table(
            ["config", "val recall@10", "val ndcg@10", "s"],
            [
                [
                    _describe(row["config"]),
                    f"{row['validation']['recall@10']:.4f}",
                    f"{row['validation']['ndcg@10']:.4f}",
                    f"{row['seconds']:.1f}",
                ]
                for row in results
            ],
        )
    )
    benchlib.save(json_path, "recommenders_defaults", {"machine": info, "rows": results})
    return 0


def _row(
    name: str,
    chosen: str,
    validation: Mapping[str, float],
    test: Mapping[str, float],
    times: Iterable[float],
    search_s: float,
    variants: int,
) -> dict[str, Any]:
    times = list(times)
    return {
        "name": name,
        "chosen": chosen,
        "validation": dict(validation),
        "test": dict(test),
        "seconds": statistics.median(times),
        "seconds_all": times,
        "search_s": search_s,
        "variants": variants,
    }


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="synthetic 300 users x 200 items, one round")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"default {DEFAULT_DATA}")
    parser.add_argument("--rounds", type=int, help="timing rounds per contestant (default 3)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="instead: model.matrix_factorization over DEFAULTS_GRID, validation metrics only",
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)

    import pyarrow.parquet as pq

    # Airflow's plugins load on the first ObjectStoragePath use: once, before anything is timed.
    import airflow_mlpipe.components._ranking  # noqa: F401

    benchlib.load_airflow_plugins()
    logging.getLogger("bench").setLevel(logging.WARNING)  # the components' progress lines
    info = benchlib.machine()
    benchlib.print_header("Recommenders benchmark", info)
    if args.quick:
        table, source = synthetic(), "synthetic (--quick)"
    else:
        if not args.data.exists():
            print(
                f"{args.data} is missing. Get the 100k-rating data set once with:\n"
                '    pip download --no-deps --dest benchmarks/data "recbole==1.2.1"\n'
                "or pass --data PATH (the wheel, an ml-100k.inter or a u.data file); --quick needs none.",
                file=sys.stderr,
            )
            return 2
        table, source = load_ml100k(args.data), f"MovieLens 100K from {args.data.name}"
    work = Path(tempfile.mkdtemp(prefix="mlpipe-bench-recommenders-"))
    try:
        path = work / "interactions.parquet"
        pq.write_table(table, path)
        uri = f"file://{path}"
        split = Split(uri)
        print(
            f"{source}: {table.num_rows} pairs; {split.train.nnz} train, {split.validation.nnz} "
            f"validation, {split.test.nnz} test pairs of {len(split.test_users)} users; "
            f"selected on validation {SELECT}; {rounds} timing round(s)\n"
        )
        if args.defaults:
            return defaults_grid(uri, work, args.json, info, quick=args.quick)
        rows = contest(split, uri, work, rounds, args.quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("## Test split (chosen on validation, refitted on train + validation)\n")
    print(
        benchlib.table(
            [
                "",
                "chosen on validation",
                "val recall@10",
                "recall@10",
                "ndcg@10",
                "coverage",
                "s",
                "search s",
            ],
            [
                [
                    row["name"],
                    row["chosen"],
                    f"{row['validation']['recall@10']:.4f}",
                    f"{row['test']['recall@10']:.4f}",
                    f"{row['test']['ndcg@10']:.4f}",
                    f"{row['test']['coverage']:.4f}",
                    f"{row['seconds']:.2f}",
                    f"{row['search_s']:.1f} ({row['variants']})",
                ]
                for row in rows
            ],
        )
    )
    print("\ns: one fit (built-ins: the train stage with its validation and refit) + scoring the test split")
    if not args.quick:  # the goal is set for the 100k-rating data
        swept = next(row for row in rows if row["name"] == "model.matrix_factorization, swept")
        met = all(swept["test"][name] >= minimum for name, minimum in GOAL.items())
        goal = ", ".join(f"{name} {swept['test'][name]:.4f} >= {minimum}" for name, minimum in GOAL.items())
        print(f"Goal for the reference pipeline (swept on validation): {goal}: {'met' if met else 'NOT met'}")
    benchlib.save(args.json, "recommenders", {"machine": info, "source": source, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
