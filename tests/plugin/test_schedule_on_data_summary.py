"""The page's summary of a pipeline scheduled on data, and of one with an approval gate."""

from __future__ import annotations

from airflow_mlpipe.plugin.summaries import snapshot, summary

from .conftest import PIPELINE


def test_a_schedule_on_data_is_summarised_in_one_line(serialized_dags):
    after = PIPELINE.replace('schedule: "@daily"', "schedule: {after: [upstream]}")
    assets = PIPELINE.replace('schedule: "@daily"', 'schedule: {assets: ["s3://a/x", "s3://a/y"], any: true}')
    upstream = PIPELINE.replace("name: ranking", "name: upstream")
    dags = serialized_dags({"ranking.yaml": after, "upstream.yaml": upstream})
    any_dags = serialized_dags({"ranking.yaml": assets})

    found = summary(snapshot(dags["ranking"]))
    found_any = summary(snapshot(any_dags["ranking"]))

    assert found["valid"] is True and found["problems"] == []
    assert found["schedule"] == "after upstream"
    assert found_any["schedule"] == "after s3://a/x | s3://a/y"


def test_a_gated_pipeline_lists_its_stages_without_the_approval_task(serialized_dags):
    plain = summary(snapshot(serialized_dags({"ranking.yaml": PIPELINE})["ranking"]))
    gated_spec = PIPELINE.replace(
        "        dependencies: [features]\n", "        dependencies: [features]\n        approval: {}\n", 1
    )
    dags = serialized_dags({"ranking.yaml": gated_spec})

    gated = summary(snapshot(dags["ranking"]))

    assert "train.approval" in dags["ranking"].task_ids
    assert gated["problems"] == []
    assert [stage["name"] for stage in gated["stages"]] == [stage["name"] for stage in plain["stages"]]
