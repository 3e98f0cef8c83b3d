"""Pipeline summaries from serialized DAGs: what the page shows, without reading any spec file."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_mlpipe import factory
from airflow_mlpipe.plugin import summaries
from airflow_mlpipe.plugin.summaries import snapshot, summary

from .conftest import PIPELINE, write_specs

BROKEN = """\
    name: broken
    version: 1.0.0
    metadata: {owner: someone}
    defaults: {retires: 2}
    stages:
      - {name: a, component: data.extract.database, config: {query: "SELECT 1", connection: db}}
    """


def test_a_valid_spec_is_summarised_from_its_serialized_dag(serialized_dags, tmp_path):
    from airflow_mlpipe.spec import load_folder

    dags = serialized_dags({"ranking.yaml": PIPELINE})
    spec = load_folder(tmp_path / "pipelines", "dev").pipelines["ranking"]

    found = summary(snapshot(dags["ranking"]))

    assert found["valid"] is True and found["problems"] == []
    assert (found["name"], found["version"], found["config_version"]) == (
        "ranking",
        "1.4.0",
        spec.config_version,
    )
    assert (found["environment"], found["schedule"], found["owners"]) == ("dev", "@daily", ["ranking-team"])
    assert (found["description"], found["tags"]) == ("Ranks things", ["ranking"])
    assert found["notify_on_failure"] == ["ranking@example.com"]
    assert found["thresholds"] == {"recall@10": 0.2, "ndcg@10": 0.1}
    assert [(s["name"], s["component"], s["dependencies"]) for s in found["stages"]] == [
        (stage.name, stage.component, list(stage.dependencies)) for stage in spec.stages
    ]
    assert found["registries"] == [
        {
            "stage": "register",
            "registry": "file:///srv/models",  # an absolute path means file://
            "conn_id": None,
            "model_name": "ranking",  # default: the pipeline's name
            "alias": "live",
            "uri": "file:///srv/models/ranking",
            "templated": False,
        },
        {
            "stage": "register_s3",
            "registry": "s3://models/acme/",
            "conn_id": "aws_default",
            "model_name": "ranker",
            "alias": "production",
            "uri": "s3://models/acme/ranker",
            "templated": False,
        },
    ]


def test_an_overlay_shows_in_the_summary_of_its_environment(serialized_dags):
    overlay = """\
        stages:
          - {name: register, config: {registry: "s3://prod-models/", conn_id: prod_s3}}
          - {name: evaluate, config: {thresholds: {recall@10: 0.3}}}
        """
    dags = serialized_dags({"ranking.yaml": PIPELINE, "ranking.production.yaml": overlay}, "production")
    found = summary(snapshot(dags["ranking"]))
    assert found["environment"] == "production"
    assert found["thresholds"]["recall@10"] == 0.3
    assert found["registries"][0]["uri"] == "s3://prod-models/ranking"
    assert found["registries"][0]["conn_id"] == "prod_s3"


def test_a_broken_spec_is_summarised_with_every_problem_and_its_hint(serialized_dags):
    dags = serialized_dags({"broken.yaml": BROKEN})
    found = summary(snapshot(dags["broken"]))
    assert found["valid"] is False
    assert found["version"] is None and found["stages"] == [] and found["registries"] == []
    [problem] = found["problems"]
    assert "broken.yaml:4:" in problem and "defaults.retires" in problem
    assert problem.splitlines()[1].strip() == "hint: did you mean 'retries'?"


def test_problems_split_on_lines_that_start_a_new_problem():
    doc = "## Invalid\n\n```\na.yaml:1:1: x: bad\n    hint: fix x\na.yaml:2:1: y: worse\n```\n"
    assert summaries.problems(doc) == ["a.yaml:1:1: x: bad\n    hint: fix x", "a.yaml:2:1: y: worse"]
    assert "mlpipe validate" in summaries.problems(None)[0]


@pytest.mark.parametrize(
    "doc_md",
    [
        None,
        "no resolved spec here",
        "### Resolved spec\n\n```json\n{not json\n```",
        "### Resolved spec\n\n```json\n[1]\n```",
    ],
)
def test_without_a_readable_resolved_spec_the_dag_structure_is_summarised(serialized_dags, doc_md):
    def replace_docs(data):
        data["dag"]["doc_md"] = doc_md

    dags = serialized_dags({"ranking.yaml": PIPELINE}, edit=replace_docs)
    found = summary(snapshot(dags["ranking"]))
    assert found["valid"] is True
    assert (found["version"], found["config_version"], found["environment"]) == ("1.4.0", None, None)
    # the schedule as the DAG's timetable describes it (@daily is midnight every day)
    assert (found["owners"], found["schedule"], found["tags"]) == (["ranking-team"], "0 0 * * *", ["ranking"])
    assert [s["component"] for s in found["stages"]] == [
        "data.extract.database",
        "features.user_engagement",
        "model.matrix_factorization",
        "evaluation.recommender",
        "registry.register_model",
        "registry.register_model",
    ]
    assert found["stages"][1]["dependencies"] == ["extract"]
    assert found["stages"][3]["dependencies"] == ["train"]
    # the tasks' own (serialized template field) configs still give thresholds and registries
    assert found["thresholds"] == {"recall@10": 0.2, "ndcg@10": 0.1}
    assert [r["uri"] for r in found["registries"]] == [
        "file:///srv/models/ranking",
        "s3://models/acme/ranker",
    ]
    assert "no resolved spec" in found["problems"][0]


def test_thresholds_are_numbers_only():
    configs = [{"thresholds": {"a": 1, "b": 0.5, "c": True, "d": "0.3", "e": None}}, {"thresholds": "x"}, {}]
    assert summaries.thresholds(configs) == {"a": 1.0, "b": 0.5}


def test_registry_locations_flag_templates_and_drop_duplicates():
    stages = [
        ("register", {"registry": "s3://models/", "conn_id": "s3"}),
        ("again", {"registry": " s3://models/ ", "conn_id": "s3"}),  # the same model
        ("templated", {"registry": "{{ var.value.registry }}"}),
        ("no_registry", {"model_name": "x"}),
    ]
    found = summaries.registry_locations("pipe", stages)
    assert [(loc["stage"], loc["uri"], loc["templated"]) for loc in found] == [
        ("register", "s3://models/pipe", False),
        ("templated", "{{ var.value.registry }}/pipe", True),
    ]


def test_the_plugin_knows_the_factorys_tags():
    assert (summaries.MLPIPE_TAG, summaries.INVALID_TAG) == (factory.MLPIPE_TAG, factory.INVALID_TAG)


def test_summaries_never_read_yaml(tmp_path, monkeypatch):
    import json

    import yaml
    from airflow.serialization.serialized_objects import DagSerialization

    folder = write_specs(tmp_path / "pipelines", {"ranking.yaml": PIPELINE, "broken.yaml": BROKEN})
    stored = {
        dag_id: json.dumps(DagSerialization.to_dict(dag))
        for dag_id, dag in factory.build_dags(folder).items()
    }
    (tmp_path / "pipelines").rename(tmp_path / "gone")  # and the spec files are not there either

    def refuse(*args, **kwargs):
        raise AssertionError("the api-server must not parse YAML")

    for name in ("compose", "load", "safe_load", "parse", "scan", "compose_all", "load_all"):
        monkeypatch.setattr(yaml, name, refuse)
    found = {
        dag_id: summary(snapshot(DagSerialization.from_dict(json.loads(data))))
        for dag_id, data in stored.items()
    }
    assert found["ranking"]["valid"] is True and found["ranking"]["version"] == "1.4.0"
    assert found["broken"]["valid"] is False and "retires" in found["broken"]["problems"][0]


def test_the_api_server_side_imports_neither_the_spec_reader_nor_the_factory():
    code = (
        "import sys\n"
        "from airflow_mlpipe.plugin.app import create_app\n"
        "import airflow_mlpipe.plugin.queries, airflow_mlpipe.plugin.registry\n"
        "create_app()\n"
        "prefixes = ('airflow_mlpipe.spec', 'airflow_mlpipe.factory')\n"
        "loaded = [m for m in sys.modules if m.startswith(prefixes)]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
