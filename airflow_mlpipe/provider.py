"""Provider registration: ``airflow providers list`` shows the package and
``airflow config list`` shows the ``[mlpipe]`` section with every option documented."""

from __future__ import annotations

from typing import Any

from airflow_mlpipe import __version__
from airflow_mlpipe.settings import DEFAULTS, SECTION

_OPTIONS: dict[str, tuple[str, str]] = {
    "environment": (
        "Which environment overlay applies: NAME.ENV.yaml next to NAME.yaml overrides it.",
        "production",
    ),
    "component_modules": (
        "Comma-separated module prefixes that components may be imported from, besides the built-ins "
        "and the 'airflow_mlpipe.components' entry points. A stage's component string is then a full "
        "module path under one of them. Nothing else is ever imported.",
        "acme_ml.components,shared_ml.steps",
    ),
    "artifact_root": (
        "Where stages write artifacts, as <root>/<pipeline>/<run_id>/<stage>/. A local path or any "
        "URI Airflow's ObjectStoragePath supports; s3://CONN_ID@bucket/prefix uses that connection.",
        "s3://aws_default@ml-artifacts/mlpipe",
    ),
    "smtp_conn_id": (
        "The Airflow SMTP connection that failure e-mails are sent through.",
        "smtp_default",
    ),
    "spec_cache_dir": (
        "Where the DAG factory keeps validated specs between parses, so an unchanged spec is not "
        "validated again. Empty: $XDG_CACHE_HOME/airflow-mlpipe/specs (~/.cache/airflow-mlpipe/specs). "
        "'off': no cache. The directory must be private to the user running Airflow.",
        "/var/cache/airflow/mlpipe-specs",
    ),
    "mlflow_tracking_uri": (
        "The MLflow tracking server every pipeline run is logged to (one MLflow run per pipeline "
        'run, in an experiment named after the pipeline), and that registry: "mlflow://NAME" '
        "registers models in. Empty: off, unless the MLFLOW_TRACKING_URI environment variable is "
        'set. Needs pip install "airflow-mlpipe[mlflow]". An unreachable server never fails a run.',
        "http://mlflow:5000",
    ),
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-mlpipe",
        "name": "ML Pipelines (airflow-mlpipe)",
        "description": "Declarative ML pipeline specs that become Airflow DAGs, with built-in ML components.",
        "versions": [__version__],
        "operators": [
            {
                "integration-name": "ML Pipelines",
                "python-modules": ["airflow_mlpipe.operators.component", "airflow_mlpipe.operators.record"],
            }
        ],
        "hooks": [
            {
                "integration-name": "ML Pipelines",
                "python-modules": ["airflow_mlpipe.hooks.model_registry", "airflow_mlpipe.hooks.mlflow"],
            }
        ],
        "config": {
            SECTION: {
                "description": "Settings of airflow-mlpipe's DAG factory and components.",
                "options": {
                    option: {
                        "description": description,
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": example,
                        "default": DEFAULTS[option],
                    }
                    for option, (description, example) in _OPTIONS.items()
                },
            }
        },
    }
