"""``runtime.kubernetes``: the rendered pod, and that pod through the provider's own pod generation.

No cluster: the KubernetesExecutor turns a task's ``executor_config`` into a pod with the
provider's ``PodGenerator`` (``from_obj`` on the task's config, then ``construct_pod`` against
the pod template file), and that is what these tests run, on the DAG the factory builds and on
the same DAG after Airflow's serialization (what the scheduler reads).
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_mlpipe.factory import INVALID_TAG, build_dags
from airflow_mlpipe.runtimes.kubernetes import RuntimeUnavailable, pod_override, stage_executor
from airflow_mlpipe.spec.runtime import KubernetesRuntime


def _require_provider() -> None:
    try:
        import airflow.providers.cncf.kubernetes  # noqa: F401
        import kubernetes  # noqa: F401
    except ImportError as exc:
        reason = f"the kubernetes extra is not installed ({exc}): pip install 'airflow-mlpipe[kubernetes]'"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the Kubernetes runtime tests")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def provider() -> None:
    _require_provider()


TRAIN_RUNTIME = """\
    runtime:
      kubernetes:
        image: registry.example.com/ml/train:1.4
        resources: {cpu: "4", memory: 16Gi, gpu: 1}
        node_selector: {pool: gpu}
        tolerations: [{key: gpu, operator: Exists, effect: NoSchedule}]
        service_account: ml-training
        env_from_secrets: [ml-credentials]
        secret_env:
          WANDB_API_KEY: {secret: wandb, key: api-key}
"""

#: A pod template as a deployment's ``[kubernetes_executor] pod_template_file`` would have it.
POD_TEMPLATE = """\
apiVersion: v1
kind: Pod
metadata:
  name: placeholder
  labels: {team: recsys}
spec:
  serviceAccountName: airflow-worker
  nodeSelector: {kubernetes.io/os: linux}
  containers:
    - name: base
      image: apache/airflow:3.3.2
      env:
        - {name: AIRFLOW__CORE__EXECUTOR, value: LocalExecutor}
      resources:
        requests: {cpu: "1", memory: 2Gi}
      volumeMounts:
        - {name: logs, mountPath: /opt/airflow/logs}
  volumes:
    - name: logs
      emptyDir: {}
  restartPolicy: Never
"""


def spec_with_runtime(folder: Path, runtime: str, executor: str | None = None, swept: bool = False) -> Path:
    """The reference pipeline with ``runtime`` on its ``train`` stage, by default without its sweep
    (``train`` is then one task)."""
    text = (
        Path(__file__).resolve().parents[2] / "dags" / "pipelines" / "recommender_training.yaml"
    ).read_text()
    if not swept:
        text, removed = re.subn(r"    sweep:\n(?:      .*\n)+", "", text)
        assert removed == 1
    if executor is not None:
        runtime += f"        executor: {executor}\n"
    marker = "    execution_timeout: 1h\n"
    assert marker in text
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recommender_training.yaml").write_text(text.replace(marker, marker + runtime))
    return folder


def train_task(folder: Path) -> Any:
    dags = build_dags(folder, "dev")
    return dags["recommender_training"].get_task("train")


def test_the_issue_example_renders_the_base_container_and_the_pod_spec():
    from kubernetes.client import models as k8s

    runtime = KubernetesRuntime.model_validate(
        {
            "image": "registry.example.com/ml/train:1.4",
            "resources": {"cpu": "4", "memory": "16Gi", "gpu": 1},
            "node_selector": {"pool": "gpu"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "service_account": "ml-training",
            "env_from_secrets": ["ml-credentials"],
            "secret_env": {"WANDB_API_KEY": {"secret": "wandb", "key": "api-key"}},
        }
    )

    pod = pod_override(runtime)

    assert isinstance(pod, k8s.V1Pod)
    [container] = pod.spec.containers
    assert container.name == "base"
    assert container.image == "registry.example.com/ml/train:1.4"
    expected = {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert container.resources.requests == expected and container.resources.limits == expected
    assert container.env == [
        k8s.V1EnvVar(
            name="WANDB_API_KEY",
            value_from=k8s.V1EnvVarSource(
                secret_key_ref=k8s.V1SecretKeySelector(name="wandb", key="api-key")
            ),
        )
    ]
    assert container.env_from == [
        k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="ml-credentials"))
    ]
    assert pod.spec.node_selector == {"pool": "gpu"}
    assert pod.spec.tolerations == [k8s.V1Toleration(key="gpu", operator="Exists", effect="NoSchedule")]
    assert pod.spec.service_account_name == "ml-training"


def test_what_the_spec_leaves_out_is_left_to_the_pod_template():
    pod = pod_override(KubernetesRuntime.model_validate({"resources": {"memory": "512Mi"}}))

    [container] = pod.spec.containers
    assert container.image is None and container.env is None and container.env_from is None
    assert container.resources.requests == {"memory": "512Mi"} == container.resources.limits
    assert pod.spec.node_selector is None and pod.spec.tolerations is None
    assert pod.spec.service_account_name is None


def test_the_stage_pod_through_the_executors_pod_generation(tmp_path: Path):
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    from airflow.serialization.serialized_objects import DagSerialization

    folder = spec_with_runtime(tmp_path / "pipelines", TRAIN_RUNTIME)
    dag = build_dags(folder, "dev")["recommender_training"]
    # What the scheduler holds: the DAG after Airflow's serialization.
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    executor_config = serialized.get_task("train").executor_config
    template = tmp_path / "pod_template.yaml"
    template.write_text(POD_TEMPLATE)

    # As the KubernetesExecutor does: the task's pod override, merged into the template's pod.
    override = PodGenerator.from_obj(executor_config)
    pod = PodGenerator.construct_pod(
        dag_id="recommender_training",
        task_id="train",
        pod_id="recommender-training-train",
        try_number=1,
        map_index=-1,
        kube_image="apache/airflow:3.3.2",
        date=None,
        run_id="manual__2024-06-01",
        args=["airflow", "tasks", "run", "recommender_training", "train", "manual__2024-06-01"],
        pod_override_object=override,
        base_worker_pod=PodGenerator.deserialize_model_file(str(template)),
        namespace="ml",
        scheduler_job_id="1",
    )

    [container] = pod.spec.containers
    assert container.name == "base"
    assert container.image == "registry.example.com/ml/train:1.4"
    assert container.args == [
        "airflow",
        "tasks",
        "run",
        "recommender_training",
        "train",
        "manual__2024-06-01",
    ]
    expected = {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert container.resources.requests == expected and container.resources.limits == expected
    env = {variable.name: variable for variable in container.env}
    assert env["AIRFLOW__CORE__EXECUTOR"].value == "LocalExecutor"  # the template's, kept
    assert env["WANDB_API_KEY"].value_from.secret_key_ref.name == "wandb"
    assert [source.secret_ref.name for source in container.env_from] == ["ml-credentials"]
    assert [mount.name for mount in container.volume_mounts] == ["logs"]
    # The provider replaces the template's node selector with the stage's (it merges env and labels).
    assert pod.spec.node_selector == {"pool": "gpu"}
    assert [(t.key, t.operator, t.effect) for t in pod.spec.tolerations] == [("gpu", "Exists", "NoSchedule")]
    assert pod.spec.service_account_name == "ml-training"
    assert pod.metadata.namespace == "ml"
    assert pod.metadata.labels["team"] == "recsys"
    assert pod.metadata.labels["task_id"] == "train"
    # The other stages keep the template's pod.
    assert serialized.get_task("evaluate").executor_config == {}


def test_several_executors_send_the_stage_to_the_kubernetes_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor,KubernetesExecutor")
    folder = spec_with_runtime(tmp_path / "pipelines", TRAIN_RUNTIME)

    dag = build_dags(folder, "dev")["recommender_training"]

    assert dag.get_task("train").executor == "KubernetesExecutor"
    assert dag.get_task("evaluate").executor is None


def test_one_executor_leaves_the_stage_on_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "KubernetesExecutor")
    task = train_task(spec_with_runtime(tmp_path / "pipelines", TRAIN_RUNTIME))

    assert task.executor is None
    assert (
        task.executor_config["pod_override"].spec.containers[0].image == "registry.example.com/ml/train:1.4"
    )


@pytest.mark.parametrize(
    ("setting", "named", "chosen"),
    [
        ("CeleryExecutor,KubernetesExecutor", None, "KubernetesExecutor"),
        (
            "LocalExecutor,k8s:airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor",
            None,
            "k8s",
        ),
        ("CeleryExecutor,LocalExecutor", None, None),
        ("KubernetesExecutor", None, None),
        ("CeleryExecutor,gpu_pods:my_company.executors.GpuKubernetesExecutor", "gpu_pods", "gpu_pods"),
    ],
)
def test_which_executor_a_kubernetes_stage_asks_for(setting: str, named: str | None, chosen: str | None):
    runtime = KubernetesRuntime.model_validate({"executor": named} if named else {})
    assert stage_executor(runtime, setting) == chosen


def test_an_executor_the_deployment_lacks_makes_a_placeholder_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    folder = spec_with_runtime(tmp_path / "pipelines", TRAIN_RUNTIME, executor="KubernetesExecutor")
    with pytest.raises(RuntimeUnavailable):
        stage_executor(KubernetesRuntime(executor="KubernetesExecutor"), "CeleryExecutor")

    dag = build_dags(folder, "dev")["recommender_training"]

    assert INVALID_TAG in dag.tags
    assert "runtime.kubernetes.executor 'KubernetesExecutor' is not one of the executors" in dag.doc_md
    assert "recommender_training.yaml" in dag.doc_md


def test_validation_names_file_line_and_field_of_a_bad_runtime(tmp_path: Path):
    from airflow_mlpipe.spec import SpecError, load_pipeline

    bad = textwrap.indent(
        textwrap.dedent(
            """\
            runtime:
              kubernetes:
                resources: {cpu: "4", memory: 16GG}
                node_selctor: {pool: gpu}
            """
        ),
        "    ",
    )
    folder = spec_with_runtime(tmp_path / "pipelines", bad)

    with pytest.raises(SpecError) as caught:
        load_pipeline(folder / "recommender_training.yaml", "dev")

    text = caught.value.format()
    line = next(
        number
        for number, content in enumerate((folder / "recommender_training.yaml").read_text().splitlines(), 1)
        if "16GG" in content
    )
    assert f"recommender_training.yaml:{line}:" in text
    assert "stages[train].runtime.kubernetes.resources.memory: '16GG' is not a Kubernetes quantity" in text
    assert "unknown field 'node_selctor'" in text and "did you mean 'node_selector'?" in text


def test_a_swept_stage_runs_each_variant_in_the_stages_pod(tmp_path: Path):
    folder = spec_with_runtime(tmp_path / "specs", TRAIN_RUNTIME, swept=True)  # the reference sweep
    dag = build_dags(folder, "dev")["recommender_training"]
    assert INVALID_TAG not in (dag.tags or ()), dag.doc_md

    variants = dag.get_task("train.variants")
    pod = variants.partial_kwargs["executor_config"]["pod_override"]
    assert pod.spec.containers[0].image == "registry.example.com/ml/train:1.4"
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    # The plan and the selection are small: they stay on the default executor.
    for task_id in ("train.plan", "train"):
        assert not dag.get_task(task_id).executor_config
