"""The DAG factory, checked in-process: DagBag parsing, DAG shape, isolation of broken specs."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_mlpipe.factory import INVALID_TAG, MLPIPE_TAG, build_dags
from airflow_mlpipe.record import RECORD_TASK_ID
from airflow_mlpipe.spec import load_folder

REPO_DAGS = Path(__file__).resolve().parents[2] / "dags"

GOOD_SPEC = """\
name: {name}
version: 1.2.0
metadata:
  owner: team-a
  description: a test pipeline
  tags: [unit]
  schedule: "@daily"
stages:
  - name: first
    component: mlpipe_test_steps.steps
    config: {{value: 1}}
  - name: second
    component: mlpipe_test_steps.steps
    dependencies: [first]
"""


def test_repo_dags_folder_parses_without_import_errors(mlpipe_check_dags):
    bag = mlpipe_check_dags(REPO_DAGS)

    assert set(bag.dag_ids) == {"recommender_training", "user_engagement_features"}


def test_doc_md_shows_the_resolved_spec_as_json(mlpipe_check_dags):
    dag = mlpipe_check_dags(REPO_DAGS).dags["recommender_training"]
    pipeline = load_folder(REPO_DAGS / "pipelines").pipelines["recommender_training"]

    block = dag.doc_md.split("```json\n", 1)[1].split("\n```", 1)[0]

    execution_format = pipeline.to_execution_format()
    assert json.loads(block) == execution_format
    assert block.count("\n") == len(execution_format) + len(pipeline.stages) + 2  # a line per stage


def test_reference_dag_follows_the_spec(mlpipe_check_dags):
    dag = mlpipe_check_dags(REPO_DAGS).dags["recommender_training"]

    assert dag.schedule == "0 3 * * *"
    assert dag.catchup is False
    assert dag.owner == "recommendations-team"
    assert dag.description == "Collaborative filtering for content recommendations"
    assert set(dag.tags) == {"recommender", MLPIPE_TAG, "v3.2.1"}
    assert '"config_version"' in dag.doc_md and "Resolved spec" in dag.doc_md
    stages = ["extract", "transform_features", "train", "evaluate", "register"]
    # train is swept: its plan, its variants (one mapped task instance each), then the selection.
    tasks = ["extract", "transform_features", "train.plan", "train.variants", "train", "evaluate", "register"]
    assert set(dag.task_ids) == {*tasks, RECORD_TASK_ID}
    for upstream, downstream in itertools.pairwise(tasks):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    record = dag.get_task(RECORD_TASK_ID)
    assert record.upstream_task_ids == set(stages)
    assert record.trigger_rule == "all_done"
    variants = dag.get_task("train.variants")
    assert variants.max_active_tis_per_dagrun == 4  # the sweep's max_parallel
    assert variants.retries == 1  # from defaults: each variant retries on its own
    assert variants.retry_delay == timedelta(minutes=5)
    assert variants.execution_timeout == timedelta(hours=1)
    assert dag.get_task("extract").config["parameters"]["cutoff"] == (
        "{{ macros.ds_add(dag_run.run_after | ds, -90) }}"
    )


@pytest.mark.parametrize("dag_id", ["recommender_training", "user_engagement_features"])
def test_shipped_templates_render_for_a_run_without_logical_date(mlpipe_check_dags, dag_id):
    # Airflow 3 lets REST clients trigger with logical_date null: then there is no `ds`.
    from types import SimpleNamespace

    from airflow.sdk.execution_time import macros

    task = mlpipe_check_dags(REPO_DAGS).dags[dag_id].get_task("extract")
    run_after = datetime(2026, 3, 31, 12, 0, tzinfo=timezone.utc)
    context = {"dag_run": SimpleNamespace(run_after=run_after, logical_date=None), "macros": macros}

    task.render_template_fields(context)

    days = 90 if dag_id == "recommender_training" else 7
    assert task.config["parameters"]["cutoff"] == (run_after - timedelta(days=days)).strftime("%Y-%m-%d")


def test_overlay_for_the_configured_environment_is_applied(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLPIPE__ENVIRONMENT", "production")

    dag = build_dags(REPO_DAGS / "pipelines")["recommender_training"]

    assert dag.get_task("register").config["registry"] == "s3://models/acme/"
    assert dag.get_task("train.variants").retries == 3
    assert dag.get_task("extract").config["batch_size"] == 50000
    assert "`production`" in dag.doc_md


def test_registry_stage_declares_the_model_asset(mlpipe_check_dags):
    register = mlpipe_check_dags(REPO_DAGS).dags["recommender_training"].get_task("register")

    assert [asset.uri for asset in register.outlets] == [
        "file:///tmp/mlpipe/models/acme/recommender_training"
    ]


def test_broken_spec_becomes_a_placeholder_and_hides_no_other_pipeline(
    tmp_path, write_spec, allow_test_components
):
    write_spec("good_one", GOOD_SPEC.format(name="good_one"))
    write_spec("good_two", GOOD_SPEC.format(name="good_two"))
    folder = write_spec(
        "broken", GOOD_SPEC.format(name="broken").replace("dependencies: [first]", "dependencies: [frist]")
    )

    dags = build_dags(folder)

    assert set(dags) == {"good_one", "good_two", "broken"}
    assert INVALID_TAG not in dags["good_one"].tags
    placeholder = dags["broken"]
    assert INVALID_TAG in placeholder.tags
    assert placeholder.schedule is None
    assert placeholder.task_ids == ["invalid_spec"]
    assert placeholder.is_paused_upon_creation is True
    assert f"{folder / 'broken.yaml'}:14:20" in placeholder.description
    assert "unknown stage 'frist'" in placeholder.doc_md and "did you mean 'first'?" in placeholder.doc_md


def test_yaml_syntax_error_placeholder_keeps_the_file_name_as_dag_id(write_spec, allow_test_components):
    write_spec("good_one", GOOD_SPEC.format(name="good_one"))
    folder = write_spec("half_written", "name: half_written\nversion: [1.0\n")

    dags = build_dags(folder)

    assert set(dags) == {"good_one", "half_written"}
    assert "YAML syntax error" in dags["half_written"].doc_md


def loader_folder(tmp_path: Path, spec_folder: Path) -> Path:
    """A dags folder whose one loader file builds the DAGs of ``spec_folder``."""
    dags_folder = tmp_path / "dags"
    dags_folder.mkdir()
    (dags_folder / "loader.py").write_text(
        f"from airflow_mlpipe.factory import build_dags\nglobals().update(build_dags({str(spec_folder)!r}))\n"
    )
    return dags_folder


def test_dagbag_shows_a_broken_spec_without_import_errors(
    tmp_path, write_spec, allow_test_components, mlpipe_check_dags
):
    from airflow.dag_processing.dagbag import DagBag

    folder = write_spec("good_one", GOOD_SPEC.format(name="good_one"))
    write_spec("broken", "name: broken\n")
    dags_folder = loader_folder(tmp_path, folder)

    bag = DagBag(dag_folder=str(dags_folder))

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"good_one", "broken"}
    with pytest.raises(pytest.fail.Exception, match="missing required field 'version'"):
        mlpipe_check_dags(dags_folder)


def test_whole_bad_spec_corpus_beside_good_specs_hides_nothing_and_runs_no_spec_code(tmp_path, monkeypatch):
    """Every broken spec of tests/spec's corpus, in one dags folder with two good ones."""
    import shutil

    from airflow.dag_processing.dagbag import DagBag

    spec_tests = Path(__file__).resolve().parents[1] / "spec"
    monkeypatch.syspath_prepend(str(spec_tests / "fixture_pkg"))
    monkeypatch.setenv("AIRFLOW__MLPIPE__COMPONENT_MODULES", "mlpipe_spec_fixtures,mlpipe_test_steps")
    monkeypatch.setenv("AIRFLOW__MLPIPE__ENVIRONMENT", "prod")  # the corpus's overlays are for 'prod'
    specs = tmp_path / "pipelines"
    shutil.copytree(spec_tests / "fixtures" / "errors", specs)
    broken = {path.name.split(".")[0] for path in specs.iterdir()}
    for name in ("good_one", "good_two"):
        (specs / f"{name}.yaml").write_text(GOOD_SPEC.format(name=name))
    marker = tmp_path / "spec-code-ran"
    (specs / "pwn.yaml").write_text(
        f'name: pwn\nversion: !!python/object/apply:os.system ["touch {marker}"]\n'
        f"stages:\n  - name: a\n    component: subprocess.getoutput\n    config: {{cmd: 'touch {marker}'}}\n"
    )
    broken.add("pwn")
    dags_folder = loader_folder(tmp_path, specs)

    bag = DagBag(dag_folder=str(dags_folder))

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == broken | {"good_one", "good_two"}
    assert {dag_id for dag_id, dag in bag.dags.items() if INVALID_TAG in dag.tags} == broken
    assert sorted(bag.dags["good_one"].task_ids) == ["execution_record", "first", "second"]
    assert not marker.exists()


def test_worker_parse_builds_only_the_task_dag(monkeypatch, write_spec, allow_test_components):
    write_spec("wanted", GOOD_SPEC.format(name="wanted"))
    # A spec the worker must not even read: unreadable bytes would give a placeholder if it did.
    folder = write_spec("other", GOOD_SPEC.format(name="other"))
    (folder / "broken_other.yaml").write_bytes(b"\xff\xfe not yaml")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "wanted")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "first")

    dags = build_dags(folder)

    assert list(dags) == ["wanted"]


def test_component_outside_the_allowed_set_is_never_imported(tmp_path, write_spec, monkeypatch):
    marker = tmp_path / "imported.marker"
    module_dir = tmp_path / "evil"
    module_dir.mkdir()
    (module_dir / "evil_component.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(module_dir))
    folder = write_spec(
        "sneaky", GOOD_SPEC.format(name="sneaky").replace("mlpipe_test_steps.steps", "evil_component")
    )

    dags = build_dags(folder)

    assert INVALID_TAG in dags["sneaky"].tags
    assert "is not allowed" in dags["sneaky"].doc_md
    assert not marker.exists()


def test_stage_cache_follows_the_component_policy_unless_the_spec_says_otherwise(tmp_path):
    folder = tmp_path / "specs"
    folder.mkdir()
    base = (REPO_DAGS / "pipelines" / "recommender_training.yaml").read_text()
    (folder / "recommender_training.yaml").write_text(base)
    (folder / "recommender_training.tuned.yaml").write_text(
        "defaults: {cache_ttl: 30d}\n"
        "stages:\n"
        "  - {name: extract, cache: true}\n"
        "  - {name: train, cache: false}\n"
    )

    default = build_dags(folder)["recommender_training"]
    tuned = build_dags(folder, environment="tuned")["recommender_training"]

    def cache(dag, stage: str, setting: str = "cache"):
        if stage == "train":  # swept: each variant is looked up and stored on its own
            return dag.get_task("train.variants").partial_kwargs[setting]
        return getattr(dag.get_task(stage), setting)

    assert {
        stage: cache(default, stage)
        for stage in ("extract", "transform_features", "train", "evaluate", "register")
    } == {
        "extract": False,  # external data: off unless the spec says so
        "transform_features": True,
        "train": True,
        "evaluate": True,
        "register": False,  # side effects: never
    }
    assert cache(default, "train", "cache_ttl") is None
    assert cache(tuned, "extract") is True and cache(tuned, "train") is False
    assert tuned.get_task("evaluate").cache_ttl == timedelta(days=30)


def test_the_trigger_form_offers_only_overridable_fields_and_the_cache_switch(mlpipe_check_dags):
    dag = mlpipe_check_dags(REPO_DAGS).dags["recommender_training"]

    description = dag.params.get_param("overrides").description
    assert "train: alpha, epochs, factors, regularization" in description
    assert "extract: batch_size" in description and "evaluate: metrics" in description
    assert "query" not in description and "registry" not in description and "thresholds" not in description
    assert dag.params["cache"] is True


def test_every_task_runs_with_the_dag_params_though_it_holds_no_copy_of_them(mlpipe_check_dags):
    from airflow.sdk.definitions.param import process_params
    from airflow.serialization.serialized_objects import DagSerialization

    dag = mlpipe_check_dags(REPO_DAGS).dags["recommender_training"]
    assert set(dag.params) == {"overrides", "cache"}

    # The factory sets the DAG's params after its tasks, so Airflow copies none into them...
    assert not any(task.params for task in dag.tasks)
    # ...and still hands every task the DAG's params, with the run's conf laid over them (which
    # Airflow writes into the Param objects: a run's conf comes last here).
    for task in dag.tasks:
        assert process_params(dag, task, None, suppress_exception=False) == {"overrides": {}, "cache": True}
    conf = {"cache": False, "overrides": {"train": {"epochs": 3}}}
    for task in dag.tasks:
        assert process_params(dag, task, conf, suppress_exception=False) == conf
    # What the scheduler and the trigger form read: the DAG's params, as before.
    deserialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert set(deserialized.params) == {"overrides", "cache"}
    assert deserialized.params.get_param("cache").schema["type"] == "boolean"
