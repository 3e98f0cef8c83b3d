"""Airflow hooks of airflow-mlpipe."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_mlpipe.hooks.model_registry import ModelRegistryHook

if TYPE_CHECKING:
    from airflow_mlpipe.hooks.mlflow import MlflowRegistryHook


def registry_hook(registry: str, conn_id: str | None = None) -> ModelRegistryHook | MlflowRegistryHook:
    """The hook of the registry ``registry`` names: ``mlflow://`` is the MLflow Model Registry,
    anything else a file or object-store registry. MLflow is imported only for the former."""
    if registry.strip().lower().startswith("mlflow://"):
        from airflow_mlpipe.hooks.mlflow import MlflowRegistryHook

        return MlflowRegistryHook(registry, conn_id=conn_id)
    return ModelRegistryHook(registry, conn_id=conn_id)


__all__ = ["ModelRegistryHook", "registry_hook"]
