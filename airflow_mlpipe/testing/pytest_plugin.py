"""pytest fixtures for teams testing their own pipeline specs (registered as the ``mlpipe`` plugin).

* ``mlpipe_check_dags(dags_folder)``: parse a dags folder with Airflow's ``DagBag`` and fail on
  import errors or invalid specs (listing each problem with file and line).
* ``mlpipe_sandbox``: a session-wide temporary Airflow home on SQLite; its
  ``run(spec_folder, dag_id, conf=None, env=None)`` runs a pipeline end to end with
  ``airflow dags test`` and returns the run's state, task states and execution record.

Loading this plugin imports nothing from Airflow; the fixtures do, when used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_mlpipe.testing.sandbox import AirflowSandbox


@pytest.fixture(scope="session")
def mlpipe_sandbox(tmp_path_factory: pytest.TempPathFactory) -> AirflowSandbox:
    """A temporary Airflow home with a migrated SQLite database, shared by the session."""
    return AirflowSandbox(tmp_path_factory.mktemp("mlpipe-airflow")).setup()


@pytest.fixture
def mlpipe_check_dags() -> Callable[[Path], Any]:
    """Parse a dags folder with ``DagBag``; fail the test on import errors or invalid specs."""

    def check(dags_folder: Path) -> Any:
        from airflow.dag_processing.dagbag import DagBag

        from airflow_mlpipe.factory import INVALID_TAG

        bag = DagBag(dag_folder=str(dags_folder))
        problems = [f"{path}: {error}" for path, error in bag.import_errors.items()]
        problems += [
            f"{dag_id}: {dag.doc_md}" for dag_id, dag in bag.dags.items() if INVALID_TAG in (dag.tags or ())
        ]
        if problems:
            pytest.fail("DAG integrity check failed:\n" + "\n".join(problems), pytrace=False)
        return bag

    return check
