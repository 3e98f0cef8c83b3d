#!/usr/bin/env bash
# The airflow-init service of docker-compose.yaml (runs as root, once per `docker compose up`,
# before every other Airflow service): the metadata database, the UI login, the demo data behind
# the analytics_db connection, and a check of the pipeline specs. Safe to run again.
set -euo pipefail

uid="${AIRFLOW_UID:-50000}"
user="${_AIRFLOW_WWW_USER_USERNAME:-airflow}"
password="${_AIRFLOW_WWW_USER_PASSWORD:-airflow}"
data_dir=/opt/airflow/data
passwords_file="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-/opt/airflow/auth/passwords.json}"

echo "==> Airflow $(airflow version), airflow-mlpipe $(python -c 'import airflow_mlpipe; print(airflow_mlpipe.__version__)')"
mkdir -p /opt/airflow/logs "${data_dir}" "$(dirname "${passwords_file}")"

echo "==> Metadata database: airflow db migrate"
airflow db migrate

echo "==> UI login '${user}' (SimpleAuthManager, role admin)"
USER_NAME="${user}" USER_PASSWORD="${password}" PASSWORDS_FILE="${passwords_file}" python - <<'PY'
import json
import os

with open(os.environ["PASSWORDS_FILE"], "w") as handle:
    json.dump({os.environ["USER_NAME"]: os.environ["USER_PASSWORD"]}, handle)
PY

echo "==> Demo data: synthetic user_events in ${data_dir}/analytics.db (the analytics_db connection)"
python -m airflow_mlpipe.demo_data "${data_dir}/analytics.db"

echo "==> Pipeline specs in /opt/airflow/dags/pipelines (environment ${AIRFLOW__MLPIPE__ENVIRONMENT:-dev})"
mlpipe validate /opt/airflow/dags/pipelines --env "${AIRFLOW__MLPIPE__ENVIRONMENT:-dev}" \
    || echo "Invalid specs become paused placeholder DAGs that show their problems in the UI."

chown -R "${uid}:0" /opt/airflow/logs "${data_dir}" "$(dirname "${passwords_file}")"
echo "==> Ready: open http://localhost:8080 and log in as '${user}'."
