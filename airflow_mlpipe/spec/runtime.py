"""A stage's ``runtime``: where its component runs, when not in the worker's own interpreter.

``runtime.kubernetes`` describes the pod of a stage run by the KubernetesExecutor (image,
resources, node selector, tolerations, service account, environment from secrets);
``runtime.python`` names another Python interpreter (a virtual environment with its own
libraries) that runs the component. The spec layer only checks the values: it imports neither
Airflow nor the Kubernetes client. The pod is built from these values by
:mod:`airflow_mlpipe.runtimes.kubernetes`, the interpreter is started by
:mod:`airflow_mlpipe.runtimes.external_python`.

Resource quantities follow the grammar of Kubernetes' ``resource.Quantity`` (``apimachinery``),
so a value Kubernetes would refuse at pod creation is refused here, with its file and line:

    quantity ::= signedNumber suffix
    suffix   ::= binarySI (Ki Mi Gi Ti Pi Ei) | decimalSI (m, "", k M G T P E) | e/E signedNumber
"""

from __future__ import annotations

import importlib.util
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from airflow_mlpipe.spec.errors import Problem
from airflow_mlpipe.spec.reader import LocatedDict

QUANTITY_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$"
# A label key (optionally prefixed by a DNS subdomain) and value, as Kubernetes checks them.
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
LABEL_KEY_PATTERN = rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}$"
LABEL_VALUE_PATTERN = rf"^({_LABEL_NAME})?$"
# Secret and service account names are DNS subdomains (RFC 1123).
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
#: What ``gpu`` becomes in the pod's requests and limits (NVIDIA's device plugin).
GPU_RESOURCE = "nvidia.com/gpu"
KUBERNETES_EXTRA = "kubernetes"


def _quantity(value: Any) -> Any:
    """A Kubernetes quantity as text: ``"4"``, ``"500m"``, ``16Gi``; YAML numbers are accepted."""
    if isinstance(value, bool):
        raise ValueError("a quantity is a number or a string like '500m' or '16Gi'")
    if isinstance(value, int | float):
        value = format(value, "f").rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    if not isinstance(value, str):
        return value  # pydantic reports the type
    if not re.match(QUANTITY_PATTERN, value):
        raise ValueError(
            f"'{value}' is not a Kubernetes quantity; write e.g. '4', '500m' (cpu), '16Gi' or '512M' (memory)"
        )
    if value.startswith("-"):
        raise ValueError(f"'{value}' is negative; resources are zero or more")
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": QUANTITY_PATTERN, "examples": ["500m", "16Gi"]},
            ]
        }
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Model):
    """Requests and limits of the stage's container (both set to these values)."""

    cpu: Quantity | None = Field(None, description="CPU cores: '4', '0.5' or '500m'")
    memory: Quantity | None = Field(None, description="memory: '16Gi', '512Mi', '1G'")
    gpu: int | None = Field(None, ge=1, description=f"whole GPUs, requested as {GPU_RESOURCE}")


class Toleration(_Model):
    """A Kubernetes toleration, in the pod spec's own words."""

    key: str | None = Field(None, description="taint key; left out with operator Exists: every taint")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal (the default)")
    value: str | None = Field(None, description="taint value, for operator Equal")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="which taint effect it tolerates; left out: all"
    )
    toleration_seconds: int | None = Field(None, ge=0, description="with NoExecute: how long it stays")

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("a toleration with operator Exists has no value; drop 'value' or use Equal")
        return self


class SecretKey(_Model):
    """One key of a Kubernetes Secret, as an environment variable's value."""

    secret: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, description="the Secret's name")
    key: str = Field(pattern=SECRET_KEY_PATTERN, description="the key in the Secret")


EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]
LabelKey = Annotated[str, Field(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN)]
SecretName = Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN)]


class KubernetesRuntime(_Model):
    """The stage's pod under the KubernetesExecutor: a ``pod_override`` of the ``base`` container."""

    image: str | None = Field(None, min_length=1, description="container image of the stage")
    resources: Resources | None = Field(None, description="cpu, memory and gpu (requests = limits)")
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="node labels the pod must run on, e.g. {pool: gpu}"
    )
    tolerations: list[Toleration] = Field(default_factory=list, description="taints the pod tolerates")
    service_account: str | None = Field(
        None, pattern=DNS_SUBDOMAIN_PATTERN, description="the pod's Kubernetes service account"
    )
    env_from_secrets: list[SecretName] = Field(
        default_factory=list, description="Secrets whose every key becomes an environment variable"
    )
    secret_env: dict[EnvName, SecretKey] = Field(
        default_factory=dict,
        description="environment variables from one key of a Secret: {NAME: {secret: s, key: k}}",
    )
    executor: str | None = Field(
        None,
        min_length=1,
        description="the executor that runs the stage (Airflow's per-task executor); default: "
        "KubernetesExecutor when [core] executor lists several and it is one of them",
    )


class StageRuntime(_Model):
    """Where the stage's component runs; left out, in the worker's own interpreter."""

    kubernetes: KubernetesRuntime | None = Field(None, description="a pod of its own (KubernetesExecutor)")
    python: str | None = Field(
        None,
        min_length=1,
        description="another Python interpreter (e.g. /opt/venvs/torch/bin/python) with "
        "airflow-mlpipe and the component's libraries installed",
    )

    @model_validator(mode="after")
    def _absolute_python(self) -> StageRuntime:
        if self.python is not None and not self.python.startswith("/"):
            raise ValueError(
                f"runtime.python must be an absolute path to an interpreter, got '{self.python}'"
            )
        return self


def kubernetes_installed() -> bool:
    """Whether the Kubernetes client can be imported here (without importing it)."""
    return importlib.util.find_spec("kubernetes") is not None


def check_runtimes(stages: list[tuple[int, LocatedDict]]) -> list[Problem]:
    """A stage with ``runtime.kubernetes`` where the ``kubernetes`` extra is not installed.

    The pod override is built when the DAG is, so the scheduler and dag-processor need the
    Kubernetes client: without it the spec cannot become a DAG here.
    """
    problems: list[Problem] = []
    for _, stage in stages:
        runtime = stage.get("runtime")
        if not isinstance(runtime, LocatedDict) or "kubernetes" not in runtime:
            continue
        if not kubernetes_installed():
            problems.append(
                Problem(
                    f"stage '{stage['name']}' runs in a Kubernetes pod, but the Kubernetes client "
                    "is not installed here",
                    runtime.key_locations["kubernetes"],
                    f"stages[{stage['name']}].runtime.kubernetes",
                    f'install it: pip install "airflow-mlpipe[{KUBERNETES_EXTRA}]" '
                    "(apache-airflow-providers-cncf-kubernetes)",
                )
            )
    return problems
