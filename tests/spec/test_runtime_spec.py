"""The stage ``runtime`` in the spec layer: Kubernetes quantities, keys, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from airflow_mlpipe.spec import SpecError, load_pipeline
from airflow_mlpipe.spec import runtime as runtime_module
from airflow_mlpipe.spec.runtime import KubernetesRuntime, Resources, StageRuntime

SPEC = """\
name: churn
version: 1.0.0
metadata: {owner: ml-team}
stages:
  - name: extract
    component: data.extract.database
    config: {query: "SELECT 1", conn_id: analytics_db}
"""


def write(tmp_path: Path, runtime: str = "") -> Path:
    path = tmp_path / "churn.yaml"
    path.write_text(SPEC + runtime)
    return path


@pytest.mark.parametrize(
    "value", ["4", "0.5", "500m", "16Gi", "512Mi", "1G", "1e3", "1.5Ki", ".5", "2.", 4, 0.25, "+1"]
)
def test_kubernetes_quantities_are_accepted(value: object):
    assert Resources(cpu=value, memory=value).cpu == str(value)


@pytest.mark.parametrize("value", ["16GG", "16 Gi", "Gi", "", "1.2.3", "4cores", "16gi", "-1", "1e", True])
def test_what_kubernetes_would_refuse_is_refused(value: object):
    with pytest.raises(ValidationError):
        Resources(memory=value)


def test_yaml_numbers_become_quantity_text():
    assert Resources(cpu=4, memory=0.5).model_dump() == {"cpu": "4", "memory": "0.5", "gpu": None}


def test_gpus_are_whole_and_positive():
    with pytest.raises(ValidationError):
        Resources(gpu=0)
    with pytest.raises(ValidationError):
        Resources(gpu=1.5)


def test_a_toleration_with_exists_takes_no_value():
    with pytest.raises(ValidationError, match="operator Exists has no value"):
        KubernetesRuntime.model_validate(
            {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}]}
        )


def test_names_kubernetes_would_refuse_are_refused():
    for bad in (
        {"node_selector": {"bad key!": "x"}},
        {"service_account": "Upper_Case"},
        {"env_from_secrets": ["no spaces allowed"]},
        {"secret_env": {"1BAD NAME": {"secret": "s", "key": "k"}}},
    ):
        with pytest.raises(ValidationError):
            KubernetesRuntime.model_validate(bad)


def test_runtime_python_is_an_absolute_path():
    assert StageRuntime(python="/opt/venvs/torch/bin/python").python == "/opt/venvs/torch/bin/python"
    with pytest.raises(ValidationError, match="absolute path"):
        StageRuntime(python="venvs/torch/bin/python")


def test_a_bad_quantity_and_an_unknown_key_are_reported_with_file_and_line(tmp_path: Path):
    path = write(
        tmp_path,
        "    runtime:\n"
        "      kubernetes:\n"
        "        resources: {cpu: '4', memory: 16GG}\n"
        "        imgae: registry.example.com/ml/train:1.4\n",
    )
    with pytest.raises(SpecError) as caught:
        load_pipeline(path, "dev")

    text = caught.value.format()
    field = "stages[extract].runtime.kubernetes.resources.memory"
    assert f"{path}:10:39: {field}: '16GG' is not a Kubernetes quantity" in text
    assert f"{path}:11:9: stages[extract].runtime.kubernetes.imgae: unknown field 'imgae'" in text
    assert "did you mean 'image'?" in text


def test_an_unknown_runtime_is_an_error_naming_the_known_ones(tmp_path: Path):
    path = write(tmp_path, "    runtime: {docker: {image: x}}\n")
    with pytest.raises(SpecError) as caught:
        load_pipeline(path, "dev")
    text = caught.value.format()
    assert "stages[extract].runtime.docker: unknown field 'docker'" in text
    assert "kubernetes" in text and "python" in text


def test_runtime_kubernetes_without_the_kubernetes_client_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(runtime_module, "kubernetes_installed", lambda: False)
    path = write(tmp_path, "    runtime:\n      kubernetes: {image: 'registry.example.com/ml/train:1.4'}\n")

    with pytest.raises(SpecError) as caught:
        load_pipeline(path, "dev")

    text = caught.value.format()
    assert f"{path}:9:7: stages[extract].runtime.kubernetes:" in text
    assert 'pip install "airflow-mlpipe[kubernetes]"' in text


def test_a_stage_without_runtime_keeps_its_config_version_and_a_runtime_changes_it(tmp_path: Path):
    plain = load_pipeline(write(tmp_path), "dev")
    assert "runtime" not in plain.stages[0].model_dump(exclude_none=True)
    with_python = load_pipeline(
        write(tmp_path, "    runtime: {python: /opt/venvs/torch/bin/python}\n"), "dev"
    )

    assert with_python.stages[0].runtime == StageRuntime(python="/opt/venvs/torch/bin/python")
    assert with_python.config_version != plain.config_version
    # The hash of a spec without runtime is computed as before the field existed.
    import hashlib
    import json

    data = plain.model_dump(mode="json")
    for stage in data["stages"]:
        del stage["overridable"], stage["sweep"], stage["approval"], stage["runtime"]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert plain.config_version == hashlib.sha256(canonical.encode()).hexdigest()[:12]
