"""Run by ``test_lean_install.py`` in a fresh interpreter where the ML stack cannot be imported.

A ``sys.meta_path`` finder refuses numpy, scipy, implicit and threadpoolctl (as if the
``recommender`` extra were not installed) before anything else is imported. Then this script
imports every built-in component, validates a spec folder and builds its DAGs, runs the
extract, features and registry components on a SQLite table, tries training, and prints what
happened as JSON.

    AIRFLOW_CONN_LEAN_DB=sqlite:///events.db python without_ml_stack.py SPEC_FOLDER WORK_DIR
"""

from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path
from typing import Any

BLOCKED = ("numpy", "scipy", "implicit", "threadpoolctl")


class RefuseMLStack(importlib.abc.MetaPathFinder):
    """Raise ImportError for the ML stack and anything under it; everything else imports as usual."""

    def __init__(self) -> None:
        self.refused: set[str] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.split(".")[0] in BLOCKED:
            self.refused.add(fullname)
            raise ImportError(f"{fullname} is blocked: the recommender extra is not installed")
        return None


def main() -> None:
    blocker = RefuseMLStack()
    sys.meta_path.insert(0, blocker)
    spec_folder, work_dir = (Path(arg) for arg in sys.argv[1:3])
    report: dict[str, Any] = {}

    from airflow_mlpipe.resolver import available_components, resolve_component

    # Resolving imports each module and checks it keeps the contract.
    report["imported_components"] = [resolve_component(name, ()).name for name in available_components()]

    import contextlib
    import io

    from airflow_mlpipe.cli import main as mlpipe

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        report["validate_exit_code"] = mlpipe(["validate", str(spec_folder)])
    report["validate_output"] = printed.getvalue()

    from airflow_mlpipe.factory import build_dags

    dags = build_dags(spec_folder)
    report["dags"] = {
        dag_id: {"tags": sorted(dag.tags), "tasks": sorted(dag.task_dict)} for dag_id, dag in dags.items()
    }

    from airflow_mlpipe.contract import ContractError
    from airflow_mlpipe.testing import run_component

    extracted = run_component(
        "data.extract.database",
        {
            "query": "SELECT * FROM user_events WHERE date >= :since",
            "conn_id": "lean_db",
            "parameters": {"since": "2024-05-01"},
            "batch_size": 2,
        },
        artifact_dir=work_dir / "extract",
        stage="extract",
    )
    report["extract"] = extracted.to_dict()
    featured = run_component(
        "features.user_engagement",
        {"window_days": 7, "window_end": "2024-06-01T00:00:00"},
        inputs={"extract": extracted.to_dict()},
        artifact_dir=work_dir / "features",
        stage="features",
    )
    report["features"] = featured.to_dict()
    registered = run_component(
        "registry.register_model",
        {"registry": (work_dir / "registry").as_uri(), "model_name": "lean", "promote_if": "always"},
        inputs={"features": featured.to_dict()},
        artifact_dir=work_dir / "register",
        stage="register",
    )
    report["register"] = registered.to_dict()

    training = resolve_component("model.matrix_factorization", ())
    assert training.extra is not None
    report["training_missing_modules"] = training.extra.missing_modules()
    report["training_install_command"] = training.extra.install_command
    try:
        run_component(
            "model.matrix_factorization", {}, inputs={"features": featured.to_dict()}, stage="train"
        )
    except ContractError as exc:
        report["training_error"] = str(exc)

    report["refused_imports"] = sorted(blocker.refused)
    report["ml_modules_loaded"] = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
