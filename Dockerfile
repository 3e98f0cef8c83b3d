# The Airflow image with airflow-mlpipe installed: what docker-compose.yaml runs.
#
#   docker compose build        (or: docker build -t airflow-mlpipe:local .)
#
# The package is installed like any provider, together with the providers the compose stack
# uses (Celery executor, S3 through MinIO, PostgreSQL), its [recommender] extra (the ML stack the
# reference pipeline trains with) and its [mlflow] extra (tracking to the mlflow service), pinned to the image's Airflow version so
# that pip never changes Airflow itself. See https://airflow.apache.org/docs/docker-stack/build.html
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION

# pip builds the package in place: the airflow user must own the folder.
USER root
RUN mkdir -p /opt/mlpipe && chown airflow:root /opt/mlpipe
USER airflow

# Only what the package needs to build (.dockerignore keeps everything else out of the context).
COPY --chown=airflow:root setup.cfg pyproject.toml README.md /opt/mlpipe/
COPY --chown=airflow:root airflow_mlpipe /opt/mlpipe/airflow_mlpipe

RUN pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        "/opt/mlpipe[postgres,recommender,mlflow]" \
        "apache-airflow-providers-celery>=3.8" \
        "apache-airflow-providers-amazon[s3fs]>=9.0"
