"""Airflow discovers the package as a provider and documents the [mlpipe] config section."""

from __future__ import annotations

import pytest

from airflow_mlpipe.provider import get_provider_info
from airflow_mlpipe.settings import DEFAULTS

pytestmark = pytest.mark.airflow


def test_provider_info_documents_every_option():
    options = get_provider_info()["config"]["mlpipe"]["options"]

    assert (
        set(options)
        == set(DEFAULTS)
        == {
            "environment",
            "component_modules",
            "artifact_root",
            "smtp_conn_id",
            "spec_cache_dir",
            "mlflow_tracking_uri",
        }
    )
    for name, option in options.items():
        assert option["description"] and option["default"] == DEFAULTS[name]


def test_airflow_lists_the_provider_and_its_config_section(mlpipe_sandbox):
    providers = mlpipe_sandbox.airflow("providers", "list", "--output", "plain")
    config = mlpipe_sandbox.airflow("config", "list", "--section", "mlpipe", "--include-descriptions")

    assert providers.returncode == 0, providers.stderr
    assert "airflow-mlpipe" in providers.stdout
    assert config.returncode == 0, config.stderr
    for option in DEFAULTS:
        assert f"{option} =" in config.stdout
    assert "Which environment overlay applies" in config.stdout


def test_environment_option_is_read_from_airflow_config(mlpipe_sandbox):
    result = mlpipe_sandbox.airflow(
        "config",
        "get-value",
        "mlpipe",
        "environment",
        env=mlpipe_sandbox.environment(AIRFLOW__MLPIPE__ENVIRONMENT="staging"),
    )

    assert result.stdout.strip() == "staging"
