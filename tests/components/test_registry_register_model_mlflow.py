"""registry.register_model with ``registry: "mlflow://NAME"``: which model, which hook, which Asset.

Registering for real against an MLflow server is tested in ``tests/hooks/test_mlflow.py`` and,
as a pipeline stage, in ``tests/factory/test_mlflow_runs.py``.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from airflow_mlpipe.components.registry import register_model as registry
from airflow_mlpipe.hooks.model_registry import ModelRegistryHook


def test_the_model_name_comes_from_the_uri_else_model_name_else_the_pipeline():
    assert (
        registry.registered_model_name(registry.Config(registry="mlflow://recommender"), "p") == "recommender"
    )
    assert registry.registered_model_name(registry.Config(registry="mlflow://", model_name="m"), "p") == "m"
    assert registry.registered_model_name(registry.Config(registry="mlflow://"), "pipe") == "pipe"
    # The same name given twice is fine; two names are not.
    assert registry.Config(registry="mlflow://recommender", model_name="recommender")
    with pytest.raises(ValidationError, match="give the name once"):
        registry.Config(registry="mlflow://recommender", model_name="other")


def test_an_mlflow_registry_refuses_a_connection_and_names_that_cannot_be_models():
    with pytest.raises(ValidationError, match="conn_id is not used"):
        registry.Config(registry="mlflow://recommender", conn_id="aws_default")
    with pytest.raises(ValidationError, match="MLflow model name"):
        registry.Config(registry="mlflow://rec/ommender")


def test_the_asset_of_an_mlflow_model_is_its_registered_name():
    (asset,) = registry.assets(registry.Config(registry="mlflow://recommender"), "recommender_training")

    assert asset.uri == "mlflow://recommender/"  # Airflow normalises an empty path to '/'
    assert registry.model_uri(registry.Config(registry="mlflow://"), "p") == "mlflow://p"
    assert registry.model_uri(registry.Config(registry="file:///srv/models"), "p") == "file:///srv/models/p"


def test_the_hook_is_chosen_by_the_registrys_scheme(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLPIPE__MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")

    assert isinstance(registry.hook(registry.Config(registry="file:///srv/models")), ModelRegistryHook)
    from airflow_mlpipe.hooks.mlflow import MlflowRegistryHook  # imports no MLflow until it is used

    mlflow_hook = registry.hook(registry.Config(registry="mlflow://recommender"))
    assert isinstance(mlflow_hook, MlflowRegistryHook)
    assert mlflow_hook.tracking_uri == "http://127.0.0.1:5999"
    assert mlflow_hook.model_uri("recommender") == "mlflow://recommender"
