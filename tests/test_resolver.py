"""Component resolution: built-ins, entry points, allowed prefixes, and nothing else."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from airflow_mlpipe import resolver as component_module
from airflow_mlpipe.resolver import ComponentError, available_components, resolve_component

MINIMAL_COMPONENT = """\
from pydantic import BaseModel
class Config(BaseModel):
    pass
def run(config, context):
    return {}
"""


@pytest.fixture
def fresh_resolution():
    component_module._resolve.cache_clear()
    component_module._entry_points.cache_clear()
    yield
    component_module._resolve.cache_clear()
    component_module._entry_points.cache_clear()


def test_builtin_resolves_to_its_module():
    component = resolve_component("data.extract.database", ())

    assert component.module.__name__ == "airflow_mlpipe.components.data.extract.database"
    assert "query" in component.config_model.model_fields


def test_private_helper_modules_are_not_components():
    assert all(not part.startswith("_") for name in available_components() for part in name.split("."))
    with pytest.raises(ComponentError, match="unknown component"):
        resolve_component("evaluation._metric_names", ())


def test_entry_point_component_resolves(tmp_path, monkeypatch, fresh_resolution):
    package = tmp_path / "acme_steps"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "score.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel
            class Config(BaseModel):
                k: int = 3
            def run(config, context):
                return {"metrics": {"k": config.k}}
            """
        )
    )
    dist_info = tmp_path / "acme_steps-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-steps\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[airflow_mlpipe.components]\nacme.score = acme_steps.score\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    component = resolve_component("acme.score", ())

    assert component.module.__name__ == "acme_steps.score"
    assert "acme.score" in available_components()


def test_prefix_component_needs_the_prefix_to_be_allowed(tmp_path, monkeypatch, fresh_resolution):
    (tmp_path / "team_steps.py").write_text(MINIMAL_COMPONENT)
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(ComponentError, match="is not allowed"):
        resolve_component("team_steps", ())
    assert resolve_component("team_steps", ("team_steps",)).module.__name__ == "team_steps"


def test_module_without_the_contract_is_refused(tmp_path, monkeypatch, fresh_resolution):
    (tmp_path / "half_done.py").write_text("def run(config, context):\n    return {}\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(ComponentError, match="no pydantic 'Config' model"):
        resolve_component("half_done", ("half_done",))


def test_parsing_dags_imports_no_heavy_ml_library():
    script = textwrap.dedent(
        """
        import sys
        from airflow_mlpipe.factory import build_dags
        dags = build_dags("dags/pipelines", environment="dev")
        assert set(dags) == {"recommender_training", "user_engagement_features"}, dags
        heavy = sorted(m for m in ("numpy", "pyarrow", "implicit", "scipy", "pandas") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "HEAVY []" in result.stdout


def test_misspelt_component_under_an_allowed_prefix_gets_a_suggestion(
    tmp_path, monkeypatch, fresh_resolution
):
    package = tmp_path / "team_lib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "scoring.py").write_text(MINIMAL_COMPONENT)
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(ComponentError, match=r"unknown component 'team_lib\.socring'") as raised:
        resolve_component("team_lib.socring", ("team_lib",))

    assert raised.value.suggestion == "did you mean 'team_lib.scoring'?"


def test_input_artifacts_names_what_is_missing_and_what_is_there():
    from airflow_mlpipe.contract import ComponentContext, StageOutputs

    context = ComponentContext(
        pipeline="p",
        pipeline_version="1.0.0",
        config_version="abc",
        environment="dev",
        stage="train",
        run_id="r",
        git_commit="unknown",
        inputs={"features": StageOutputs(artifacts={"interactions": "file:///x.parquet"})},
        artifact_dir=None,
    )

    assert context.input_artifacts("interactions") == {"interactions": "file:///x.parquet"}
    with pytest.raises(ValueError, match=r"has no 'model' artifact \(it has: interactions\); train first"):
        context.input_artifacts("interactions", "model", hint="train first")
