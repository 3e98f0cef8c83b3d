"""Airflow DAGs for every ML pipeline spec in ``pipelines/`` next to this file.

This is the only Python file a deployment needs in its dags folder. To add a pipeline, drop
``pipelines/NAME.yaml`` (and optional ``pipelines/NAME.ENV.yaml`` overlays) beside it.
"""

from pathlib import Path

from airflow_mlpipe.factory import build_dags

globals().update(build_dags(Path(__file__).parent / "pipelines"))
