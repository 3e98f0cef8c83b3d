"""Train and evaluate: ``model.matrix_factorization`` and ``evaluation.recommender`` vs ``implicit`` directly.

A synthetic implicit-feedback set (100k users x 20k items, ~2M user-item pairs with taste clusters
and popular items) is written once as the ``interactions`` Parquet file the training component
reads. Each measurement is a fresh process, in alternating order:

* ``train-component``: ``matrix_factorization.run`` with ``epochs`` E and no early stopping;
  ``implicit``'s ``fit`` and the per-epoch validation are timed from inside (wrappers), so an
  epoch splits into ALS itself, the validation metric the component computes for early stopping,
  and the rest (the component's own per-epoch code);
* ``train-direct``: the same training matrix (built with the component's split helpers, so the
  very same pairs and confidences) fitted by ``implicit.cpu.als.AlternatingLeastSquares`` with the
  same factors, regularisation, seed, one thread and BLAS limited to one thread, ``iterations=E``
  in one ``fit`` call: the library used the ordinary way;
* ``eval-component``: ``evaluation.recommender.run`` on the training run's artifacts (metrics
  precision@10, map@10, ndcg@10, no popularity baseline, so like for like);
* ``eval-direct``: ``implicit.evaluation.ranking_metrics_at_k`` (K=10, one thread) on the same
  factors, known and held-out matrices.

    python benchmarks/train_evaluate.py            # 100k x 20k, 5 epochs, 3 rounds (~10 min)
    python benchmarks/train_evaluate.py --quick    # 2k x 500, 2 epochs, one round (smoke test)
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

FACTORS = 64
REGULARIZATION = 0.01
SEED = 42
METRICS = ["precision@10", "map@10", "ndcg@10"]


def generate(path: Path, users: int, items: int, pairs_per_user: int, seed: int = 0) -> int:
    """Write ``user_id, item_id, weight`` pairs: 70% from the user's taste cluster, popular items favoured."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    clusters = 50
    user_cluster = rng.integers(0, clusters, users)
    item_cluster = rng.integers(0, clusters, items)
    by_cluster = [np.flatnonzero(item_cluster == c) for c in range(clusters)]
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    counts = rng.poisson(pairs_per_user, users).clip(1)
    user_of_pair = np.repeat(np.arange(users), counts)
    own = rng.random(len(user_of_pair)) < 0.7
    item_of_pair = rng.choice(items, len(user_of_pair), p=popularity)
    for c in range(clusters):
        mask = own & (user_cluster[user_of_pair] == c)
        if len(by_cluster[c]):
            item_of_pair[mask] = rng.choice(by_cluster[c], int(mask.sum()))
    keys = np.unique(user_of_pair.astype(np.int64) * items + item_of_pair)
    user_ids, item_ids = np.divmod(keys, items)
    table = pa.table(
        {
            "user_id": user_ids + 1_000_000,  # ids are not row numbers
            "item_id": item_ids + 5_000_000,
            "weight": rng.integers(1, 20, len(keys)).astype(np.float64),
        }
    )
    pq.write_table(table, path)
    return len(keys)


def _warm_imports() -> float:
    """Import every library any child uses before timing, so no child's time holds imports.

    Also loads Airflow's plugins (see ``benchlib.load_airflow_plugins``) and returns how long that took.
    """
    from airflow.sdk import ObjectStoragePath  # noqa: F401

    import airflow_mlpipe.components._ranking
    import airflow_mlpipe.components._split  # noqa: F401

    return benchlib.load_airflow_plugins()


def _timer(owner: Any, name: str, sink: list[float]) -> None:
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - started)

    setattr(owner, name, wrapper)


def child_train_component(interactions: str, epochs: int, out_dir: str) -> None:
    plugins = _warm_imports()
    from implicit.cpu.als import AlternatingLeastSquares

    from airflow_mlpipe.components import _ranking
    from airflow_mlpipe.components.model import matrix_factorization

    fits: list[float] = []
    validations: list[float] = []
    loop: list[float] = []
    _timer(AlternatingLeastSquares, "fit", fits)
    _timer(_ranking, "evaluate", validations)
    _timer(matrix_factorization, "train_als", loop)
    config = matrix_factorization.Config(
        factors=FACTORS,
        regularization=REGULARIZATION,
        epochs=epochs,
        early_stopping_patience=None,
        refit=False,  # the epochs measured here are the early-stopping loop's (recommenders.py times refits)
        seed=SEED,
        num_threads=1,
    )
    context = benchlib.component_context(
        "train", out_dir, {"features": {"artifacts": {"interactions": interactions}}}
    )
    started = time.perf_counter()
    result = matrix_factorization.run(config, context)
    seconds = time.perf_counter() - started
    Path(out_dir, "outputs.json").write_text(json.dumps(result))
    benchlib.emit(
        {
            "seconds": seconds,
            "epochs": len(fits),
            "plugins_s": plugins,
            "loop_s": loop[0],
            "fit_s": fits,
            "validation_s": validations,
            "train_pairs": result["metrics"]["train_interactions"],
        }
    )


def train_matrix(interactions: str) -> Any:
    """The component's training matrix, rebuilt with its own helpers (same pairs, same confidences)."""
    import numpy as np

    from airflow_mlpipe.components import _interactions
    from airflow_mlpipe.components.model import matrix_factorization as mf

    config = mf.Config()
    data = _interactions.read_and_split(
        interactions,
        "weight",
        config.test_split,
        config.split_seed,
        config.validation_split,
        logging.getLogger("bench"),
    )
    return data.matrix(data.train, 1.0 + config.alpha * np.log1p(data.weights))


def child_train_direct(interactions: str, epochs: int) -> None:
    _warm_imports()
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    matrix = train_matrix(interactions)
    prepared = time.perf_counter() - started
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=FACTORS,
            regularization=REGULARIZATION,
            alpha=1.0,
            iterations=epochs,
            num_threads=1,
            random_state=SEED,
        )
        started = time.perf_counter()
        model.fit(matrix, show_progress=False)
        fit = time.perf_counter() - started
    benchlib.emit({"seconds": prepared + fit, "prepare_s": prepared, "fit_s": fit, "train_pairs": matrix.nnz})


def child_eval_component(train_dir: str, out_dir: str) -> None:
    _warm_imports()
    from airflow_mlpipe.components.evaluation import recommender

    upstream = json.loads(Path(train_dir, "outputs.json").read_text())
    config = recommender.Config(metrics=METRICS, baseline=False)
    context = benchlib.component_context("evaluate", out_dir, {"train": {"artifacts": upstream["artifacts"]}})
    started = time.perf_counter()
    result = recommender.run(config, context)
    seconds = time.perf_counter() - started
    metrics = result["metrics"]
    benchlib.emit(
        {
            "seconds": seconds,
            "users": metrics["users_evaluated"],
            "metrics": {name: metrics[name] for name in METRICS},
        }
    )


def child_eval_direct(train_dir: str) -> None:
    """The same factors and hold-out, scored by ``implicit.evaluation.ranking_metrics_at_k``."""
    _warm_imports()
    import numpy as np
    import pyarrow.parquet as pq
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k
    from threadpoolctl import threadpool_limits

    from airflow_mlpipe.components import _split
    from airflow_mlpipe.components.evaluation import recommender as ev

    artifacts = json.loads(Path(train_dir, "outputs.json").read_text())["artifacts"]
    path = {name: uri.removeprefix("file://") for name, uri in artifacts.items()}
    started = time.perf_counter()
    table = pq.read_table(path["interactions"], columns=["user_id", "item_id"])
    user_index = pq.read_table(path["user_index"])
    item_index = pq.read_table(path["item_index"])
    users = ev._lookup(table.column("user_id"), user_index, "user_id")
    items = ev._lookup(table.column("item_id"), item_index, "item_id")
    split = json.loads(Path(path["split"]).read_text())
    test, _ = _split.make_test_split(
        table.column("user_id").to_numpy(),
        table.column("item_id").to_numpy(),
        split["test_split"],
        split["split_seed"],
    )
    with np.load(path["model"]) as saved:
        user_factors, item_factors = saved["user_factors"], saved["item_factors"]
    shape = (len(user_factors), len(item_factors))
    known = ev._binary_csr(users[~test], items[~test], shape)
    held_out = ev._binary_csr(users[test], items[test], shape)
    prepared = time.perf_counter() - started
    model = AlternatingLeastSquares(factors=user_factors.shape[1], num_threads=1)
    model.user_factors, model.item_factors = user_factors, item_factors
    with threadpool_limits(limits=1, user_api="blas"):
        started = time.perf_counter()
        metrics = ranking_metrics_at_k(model, known, held_out, K=10, show_progress=False, num_threads=1)
        scored = time.perf_counter() - started
    benchlib.emit(
        {
            "seconds": prepared + scored,
            "prepare_s": prepared,
            "score_s": scored,
            "metrics": {f"{name}@10": float(value) for name, value in metrics.items()},
        }
    )


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="2k users x 500 items, 2 epochs, one round")
    parser.add_argument("--users", type=int, help="default 100000")
    parser.add_argument("--items", type=int, help="default 20000")
    parser.add_argument("--pairs-per-user", type=int, default=20, help="mean pairs per user (default 20)")
    parser.add_argument("--epochs", type=int, help="default 5")
    parser.add_argument("--rounds", type=int, help="default 3")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "train-component":
            child_train_component(rest[0], int(rest[1]), rest[2])
        elif kind == "train-direct":
            child_train_direct(rest[0], int(rest[1]))
        elif kind == "eval-component":
            child_eval_component(rest[0], rest[1])
        elif kind == "eval-direct":
            child_eval_direct(rest[0])
        return 0

    users = args.users or (2_000 if args.quick else 100_000)
    items = args.items or (500 if args.quick else 20_000)
    epochs = args.epochs or (2 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 3)
    info = benchlib.machine()
    benchlib.print_header("Train and evaluate benchmark", info)
    work = Path(tempfile.mkdtemp(prefix="mlpipe-bench-train-"))
    interactions = work / "interactions.parquet"
    pairs = generate(interactions, users, items, args.pairs_per_user)
    uri = f"file://{interactions}"
    print(f"{users} users x {items} items, {pairs} pairs; factors {FACTORS}, {epochs} epochs, 1 thread\n")

    env = benchlib.airflow_env(work / "airflow-home")
    runs: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("train-component", "train-direct", "eval-component", "eval-direct")
    }
    try:
        for round_no in range(rounds):
            train_dir = str(work / f"train-{round_no}")
            order = (
                ["train-component", "train-direct"]
                if round_no % 2 == 0
                else ["train-direct", "train-component"]
            )
            for kind in order:
                if kind == "train-component":
                    runs[kind].append(
                        benchlib.run_child([__file__, "--child", kind, uri, str(epochs), train_dir], env)
                    )
                else:
                    runs[kind].append(benchlib.run_child([__file__, "--child", kind, uri, str(epochs)], env))
            order = (
                ["eval-component", "eval-direct"] if round_no % 2 == 0 else ["eval-direct", "eval-component"]
            )
            for kind in order:
                extra = [str(work / f"eval-{round_no}")] if kind == "eval-component" else []
                runs[kind].append(benchlib.run_child([__file__, "--child", kind, train_dir, *extra], env))
            print(f"  round {round_no + 1}/{rounds} done", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    component, direct = runs["train-component"], runs["train-direct"]
    if {r["train_pairs"] for r in component} != {r["train_pairs"] for r in direct}:
        raise RuntimeError("the component and the direct run trained on different matrices")
    als_component = [sum(r["fit_s"]) / r["epochs"] for r in component]
    validation = [sum(r["validation_s"]) / r["epochs"] for r in component]
    loop = [r["loop_s"] / r["epochs"] for r in component]
    rest = [(r["loop_s"] - sum(r["fit_s"]) - sum(r["validation_s"])) / r["epochs"] for r in component]
    als_direct = [r["fit_s"] / epochs for r in direct]
    print(f"## Training on {component[0]['train_pairs']} pairs: seconds per epoch, median (min-max)\n")
    rows = [
        ["model.matrix_factorization: ALS fit, inside the component", benchlib.spread(als_component)],
        ["model.matrix_factorization: validation metric (early stopping)", benchlib.spread(validation)],
        ["model.matrix_factorization: rest of the epoch (copies, logging)", benchlib.spread(rest)],
        ["model.matrix_factorization: whole epoch", benchlib.spread(loop)],
        ["implicit ALS, fit(iterations=E) / E, called directly", benchlib.spread(als_direct)],
    ]
    print(benchlib.table(["", "s / epoch"], rows))
    print(
        "\nALS fit inside the component / direct: "
        f"{benchlib.spread(a / b for a, b in zip(als_component, als_direct, strict=True))}"
    )
    print(
        "whole component epoch / direct epoch: "
        f"{benchlib.spread(a / b for a, b in zip(loop, als_direct, strict=True))}"
    )
    print("\n## Training: whole run, seconds, median (min-max)\n")
    rows = [
        ["model.matrix_factorization.run", benchlib.spread(r["seconds"] for r in component)],
        [
            "  of which outside the epochs (read, split, matrices, save)",
            benchlib.spread(r["seconds"] - r["loop_s"] for r in component),
        ],
        ["direct: read + the same matrix + fit", benchlib.spread(r["seconds"] for r in direct)],
        ["  of which outside fit (read, split, matrix)", benchlib.spread(r["prepare_s"] for r in direct)],
    ]
    print(benchlib.table(["", "s"], rows))
    plugins = benchlib.spread(r["plugins_s"] for r in component)
    print(f"(not in the times above: Airflow's one-off plugin load in each process, {plugins} s)\n")
    evaluation, library = runs["eval-component"], runs["eval-direct"]
    print(f"\n## Evaluation of {evaluation[0]['users']} users, seconds, median (min-max)\n")
    rows = [
        ["evaluation.recommender (whole run)", benchlib.spread(r["seconds"] for r in evaluation), "-"],
        [
            "implicit ranking_metrics_at_k (+ loading the same inputs)",
            benchlib.spread(r["seconds"] for r in library),
            benchlib.spread(r["score_s"] for r in library),
        ],
    ]
    print(benchlib.table(["", "total s", "scoring only s"], rows))
    ratio_eval = [a["seconds"] / b["seconds"] for a, b in zip(evaluation, library, strict=True)]
    print(f"\ncomponent / direct: {benchlib.spread(ratio_eval)}")
    print(f"metrics (component): {json.dumps({k: round(v, 4) for k, v in evaluation[0]['metrics'].items()})}")
    print(f"metrics (implicit):  {json.dumps({k: round(v, 4) for k, v in library[0]['metrics'].items()})}")
    benchlib.save(args.json, "train_evaluate", {"machine": info, "pairs": pairs, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
