"""Helpers for testing pipeline specs; the pytest plugin exposes them as fixtures."""

from airflow_mlpipe.testing.components import run_component
from airflow_mlpipe.testing.sandbox import AirflowSandbox, PipelineRun

__all__ = ["AirflowSandbox", "PipelineRun", "run_component"]
