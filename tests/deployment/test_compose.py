"""docker-compose.yaml, Dockerfile and .dockerignore, checked without a Docker engine.

The file is validated against the Compose Specification's JSON schema (``compose_spec.json``, see
README.md here for its source), then for what the schema cannot know: every referenced host file
exists, services and volumes are consistent, the init service migrates the database, and the
connections and ``[mlpipe]`` settings point at the services that provide them. The same topology
runs for real, as processes, in ``test_e2e_celery.py``.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml
from airflow_processes import REPO

from airflow_mlpipe.spec import load_folder

HERE = Path(__file__).parent
COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker",
    "airflow-triggerer": "triggerer",
}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with every variable unset (``$$`` is a literal ``$``)."""
    return _VARIABLE.sub(lambda m: m["default"] or "", value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def command(service: dict[str, Any]) -> str:
    value = service.get("command", "")
    return " ".join(value) if isinstance(value, list) else str(value)


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume: a host path (``./x``) or a named volume."""
    result = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            result.append((interpolate(str(volume.get("source", ""))), str(volume["target"])))
        else:
            source, target = interpolate(volume).split(":")[:2]
            result.append((source, target))
    return result


def is_host_path(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def test_compose_file_is_valid_against_the_compose_spec_schema(compose):
    schema = json.loads((HERE / "compose_spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema does catch mistakes: a misspelt key, an unknown depends_on condition.
    broken = copy.deepcopy(compose)
    broken["services"]["postgres"]["imagee"] = "postgres:16"
    broken["services"]["airflow-apiserver"]["depends_on"]["airflow-init"]["condition"] = "service_ready"
    assert len(list(validator.iter_errors(broken))) == 2


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
def test_docker_compose_config_accepts_the_file_where_the_plugin_is_installed():
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed (the JSON schema check above still ran)")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_topology_is_the_official_celery_stack_with_mail_and_object_store(services):
    assert set(services) >= {
        "postgres",
        "redis",
        "airflow-init",
        "mailpit",
        "minio",
        "mlflow",
        *AIRFLOW_SERVICES,
    }
    for name, airflow_command in AIRFLOW_SERVICES.items():
        assert command(services[name]) == airflow_command, name
    assert "8080:8080" in services["airflow-apiserver"]["ports"]
    assert "8025:8025" in services["mailpit"]["ports"]  # the web UI for failure e-mails
    assert "9001:9001" in services["minio"]["ports"]  # the object store's console
    for name in (*AIRFLOW_SERVICES, "postgres", "redis", "minio", "mlflow"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_airflow_runs_the_image_built_from_the_dockerfile(services):
    text = COMPOSE.read_text()
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in text  # a custom image, not pip at start-up
    for name, service in services.items():
        if not name.startswith("airflow-"):
            continue
        build = service["build"]
        assert (REPO / build["context"] / build["dockerfile"]).is_file(), name
        assert service["image"] == services["airflow-apiserver"]["image"], name


def test_dockerfile_installs_this_package_on_a_matching_airflow_image():
    from packaging.requirements import Requirement

    dockerfile = (REPO / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.MULTILINE))
    assert re.search(
        r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$", dockerfile, re.M
    )
    requirement = next(
        Requirement(line.strip())
        for line in (REPO / "setup.cfg").read_text().splitlines()
        if line.strip().startswith("apache-airflow>=")
    )
    assert requirement.specifier.contains(args["AIRFLOW_VERSION"]), (args, requirement)
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in dockerfile  # pip may not change Airflow
    # The reference pipeline trains; every run is tracked to the mlflow service.
    assert '"/opt/mlpipe[postgres,recommender,mlflow]"' in dockerfile
    assert (
        "apache-airflow-providers-celery" in dockerfile
        and "apache-airflow-providers-amazon[s3fs]" in dockerfile
    )

    ignore = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    copied = [
        src for line in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, re.M) for src in line.split()
    ]
    assert copied == ["setup.cfg", "pyproject.toml", "README.md", "airflow_mlpipe"]
    for source in copied:
        assert (REPO / source).exists(), source
        assert not dockerignored(source, ignore), f"{source} is excluded from the build context"
    assert not dockerignored("airflow_mlpipe/plugin/static/mlpipe.js", ignore)
    assert dockerignored(".venv", ignore) and dockerignored("tests/conftest.py", ignore)
    assert dockerignored("airflow_mlpipe/__pycache__/x.pyc", ignore)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or a parent folder decides; ``!`` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _docker_pattern(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    """``**`` spans folders, ``*`` and ``?`` stay within one (Go's filepath.Match, as Docker uses it)."""
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] in "*?":
            regex, i = regex + ("[^/]*" if pattern[i] == "*" else "[^/]"), i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


def test_every_referenced_host_file_exists(services):
    for name, service in services.items():
        for source, target in mounts(service):
            if is_host_path(source):
                assert (REPO / source).resolve().exists(), f"{name}: {source} -> {target}"
    init = services["airflow-init"]
    script = next(part for part in init["command"] if part.endswith(".sh"))
    host = next(
        (REPO / source / Path(script).relative_to(target))
        for source, target in mounts(init)
        if is_host_path(source) and script.startswith(target + "/")
    )
    assert host.is_file(), host
    airflow_mounts = dict((target, source) for source, target in mounts(services["airflow-apiserver"]))
    assert (REPO / airflow_mounts["/opt/airflow/dags"] / "mlpipe_loader.py").is_file()
    assert (REPO / airflow_mounts["/opt/airflow/plugins"] / "mlpipe_plugin.py").is_file()


def test_services_dependencies_and_volumes_are_consistent(compose, services):
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dependency in depends:
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert dependency != name
        for source, _ in mounts(service):
            if not is_host_path(source):
                assert source in declared, f"{name} mounts undeclared volume {source}"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"

    # No cycles: every service can start once its dependencies have.
    started: set[str] = set()
    pending = dict(services)
    while pending:
        ready = [n for n, s in pending.items() if set(s.get("depends_on") or {}) <= started]
        assert ready, f"dependency cycle among {sorted(pending)}"
        for name in ready:
            started.add(name)
            del pending[name]

    published = [port.split(":")[0] for s in services.values() for port in s.get("ports", [])]
    assert len(published) == len(set(published)), published


def test_init_service_migrates_the_database_and_prepares_the_demo(services):
    init = services["airflow-init"]
    script = (REPO / "deploy" / "airflow-init.sh").read_text()
    assert re.search(r"^airflow db migrate$", script, re.M)
    assert "python -m airflow_mlpipe.demo_data" in script
    assert "mlpipe validate /opt/airflow/dags/pipelines" in script
    assert init["user"] == "0:0"  # to hand the shared volumes to AIRFLOW_UID
    assert (
        subprocess.run(["bash", "-n", str(REPO / "deploy" / "airflow-init.sh")], check=False).returncode == 0
    )
    for name in AIRFLOW_SERVICES:
        condition = services[name]["depends_on"]["airflow-init"]["condition"]
        assert condition == "service_completed_successfully", name
    # The UI login it writes is the one the auth manager reads.
    env = environment(init)
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "airflow:admin"
    assert env["_AIRFLOW_WWW_USER_USERNAME"] == "airflow"
    auth_file = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert any(auth_file.startswith(target + "/") for _, target in mounts(services["airflow-apiserver"]))


def test_connections_and_mlpipe_settings_point_at_the_services(services):
    env = environment(services["airflow-apiserver"])
    worker_env = environment(services["airflow-worker"])
    assert {k: v for k, v in worker_env.items() if k != "DUMB_INIT_SETSID"} == env  # one configuration

    postgres = environment(services["postgres"])
    database = urlparse(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (database.hostname, database.username, database.password, database.path) == (
        "postgres",
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        f"/{postgres['POSTGRES_DB']}",
    )
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert urlparse(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    assert urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).netloc == "airflow-apiserver:8080"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] and env["AIRFLOW__API__SECRET_KEY"]

    # Demo data: a SQLite file on the volume that airflow-init writes and the workers read.
    analytics = env["AIRFLOW_CONN_ANALYTICS_DB"].removeprefix("sqlite:///")
    data_volume = next(t for s, t in mounts(services["airflow-init"]) if s == "mlpipe-data")
    assert analytics.startswith(data_volume + "/")
    assert data_volume in [t for _, t in mounts(services["airflow-worker"])]

    # Failure e-mails go to Mailpit.
    smtp = json.loads(env["AIRFLOW_CONN_SMTP_DEFAULT"])
    assert env.get("AIRFLOW__MLPIPE__SMTP_CONN_ID", "smtp_default") == "smtp_default"
    assert smtp["host"] == "mailpit" and smtp["port"] == 1025 and 1025 in services["mailpit"]["expose"]
    assert smtp["extra"]["from_email"]

    # The registry of the production overlay, and the artifacts, go to MinIO through aws_default.
    assert env["AIRFLOW__MLPIPE__ENVIRONMENT"] == "production"
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    minio = environment(services["minio"])
    assert urlparse(aws["extra"]["endpoint_url"]).netloc == "minio:9000"
    assert (aws["login"], aws["password"]) == (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    specs = load_folder(REPO / "dags" / "pipelines", "production")
    assert specs.errors == {}
    register = specs.pipelines["recommender_training"].stage("register").config
    assert register["conn_id"] == "aws_default"
    buckets = {urlparse(register["registry"]).netloc}
    artifact_root = urlparse(env["AIRFLOW__MLPIPE__ARTIFACT_ROOT"])
    assert artifact_root.scheme == "s3" and artifact_root.username == "aws_default"
    buckets.add(artifact_root.hostname)
    created = command(services["minio-init"])
    for bucket in buckets:
        assert f"local/{bucket}" in created, f"minio-init does not create bucket {bucket}"


def test_an_mlflow_server_is_wired_in_as_every_airflow_services_tracking_server(compose, services):
    mlflow = services["mlflow"]
    image, _, tag = mlflow["image"].rpartition(":")
    assert image == "ghcr.io/mlflow/mlflow" and re.fullmatch(r"v\d+\.\d+\.\d+", tag), mlflow["image"]
    arguments = mlflow["command"]
    assert arguments[:2] == ["mlflow", "server"]
    options = {  # --name value pairs (flags such as --serve-artifacts take no value)
        name: value
        for name, value in zip(arguments, [*arguments[1:], ""], strict=True)
        if name.startswith("--") and not value.startswith("--")
    }
    # The backend store and the artifacts live on a named volume, and the server serves the artifacts.
    store = options["--backend-store-uri"]
    assert store.startswith(("sqlite:////", "postgresql")), store
    volume_targets = {target: source for source, target in mounts(mlflow)}
    mlflow_root = next(target for target, source in volume_targets.items() if source in compose["volumes"])
    assert store.removeprefix("sqlite:///").startswith(mlflow_root + "/")
    assert options["--artifacts-destination"].startswith(mlflow_root + "/")
    assert "--serve-artifacts" in arguments and "--no-serve-artifacts" not in arguments
    assert "healthcheck" in mlflow
    assert f"{options['--port']}:{options['--port']}" in mlflow["ports"]  # the MLflow UI

    for name, service in services.items():
        if not name.startswith("airflow-") or name == "airflow-cli":
            continue
        uri = urlparse(environment(service)["AIRFLOW__MLPIPE__MLFLOW_TRACKING_URI"])
        assert (uri.scheme, uri.hostname, str(uri.port)) == ("http", "mlflow", options["--port"]), name
        assert service["depends_on"]["mlflow"]["condition"] == "service_healthy", name
    # MLflow refuses Host headers it does not know (DNS rebinding protection): the Airflow
    # containers call it as mlflow:PORT.
    allowed = options["--allowed-hosts"].split(",")
    assert f"mlflow:{options['--port']}" in allowed


def test_a_second_worker_takes_the_gpu_queue_and_shares_no_disk_with_the_first(services):
    gpu, default = services["airflow-worker-gpu"], services["airflow-worker"]
    assert command(gpu) == "celery worker --queues gpu"
    assert command(default) == "celery worker"  # [operators] default_queue: every other stage
    assert "healthcheck" in gpu
    assert gpu["environment"]["AIRFLOW__MLPIPE__ARTIFACT_ROOT"].startswith("s3://")
    # The only volumes are the deployment's own (dags, plugins, logs, auth, demo data), none for artifacts.
    assert not any("artifacts" in source or "registry" in source for source, _ in mounts(gpu))
