"""Airflow hooks of airflow-mlpipe."""

from airflow_mlpipe.hooks.model_registry import ModelRegistryHook

__all__ = ["ModelRegistryHook"]
