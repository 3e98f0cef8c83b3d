"""Every built-in component keeps the component contract."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import BaseModel

from airflow_mlpipe.contract import overridable_fields
from airflow_mlpipe.resolver import resolve_component

COMPONENTS = [
    "data.extract.database",
    "features.user_engagement",
    "model.matrix_factorization",
    "model.ease",
    "evaluation.recommender",
    "registry.register_model",
]
HEAVY = ["numpy", "pyarrow", "scipy", "implicit", "sqlalchemy", "airflow", "threadpoolctl"]


@pytest.mark.parametrize("name", COMPONENTS)
def test_config_is_strict_and_documented(name):
    component = resolve_component(name, allowed_prefixes=())
    config = component.config_model
    assert issubclass(config, BaseModel)
    assert config.model_config.get("extra") == "forbid"
    undocumented = [field for field, info in config.model_fields.items() if not info.description]
    assert not undocumented, f"{name}: fields without a description: {undocumented}"
    assert component.doc, f"{name} has no module docstring"


def test_importing_components_pulls_in_no_heavy_libraries():
    # Component modules are imported at DAG-parse time to read Config.
    code = "\n".join(
        [
            "import importlib, sys",
            *(f"importlib.import_module('airflow_mlpipe.components.{name}')" for name in COMPONENTS),
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))",
        ]
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_registry_assets_are_declared_without_io(tmp_path):
    component = resolve_component("registry.register_model", allowed_prefixes=())
    config = component.config_model(registry=f"file://{tmp_path}/nowhere", model_name="m")
    (asset,) = component.assets(config, "pipeline")
    assert asset.uri == f"file://{tmp_path}/nowhere/m"
    assert not (tmp_path / "nowhere").exists()


#: What a trigger may change per built-in: the tuning knobs, never a query, connection,
#: parameters, registry, model name, alias, promote_if or thresholds.
OVERRIDABLE = {
    "data.extract.database": {"batch_size"},
    "features.user_engagement": {"window_days"},
    "model.matrix_factorization": {"epochs", "factors", "regularization", "alpha"},
    "model.ease": {"l2"},
    "evaluation.recommender": {"metrics"},
    "registry.register_model": set(),
}


@pytest.mark.parametrize("name", COMPONENTS)
def test_overridable_fields_are_exactly_the_tuning_knobs(name):
    config = resolve_component(name, allowed_prefixes=()).config_model
    assert overridable_fields(config) == OVERRIDABLE[name]
    # The mark is what editors and `mlpipe components` see too: in the JSON schema, nowhere else.
    properties = config.model_json_schema()["properties"]
    marked = {field for field, schema in properties.items() if schema.get("overridable") is True}
    assert marked == OVERRIDABLE[name]


@pytest.mark.parametrize("name", COMPONENTS[:4])
def test_built_ins_declare_their_inputs_and_outputs(name):
    assert resolve_component(name, allowed_prefixes=()).declares_io
