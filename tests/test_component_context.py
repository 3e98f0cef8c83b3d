"""The component contract as authors meet it: inputs shaped like what ``run`` returns, read-only."""

from __future__ import annotations

import json

import pytest

from airflow_mlpipe.contract import ComponentContext, StageOutputs


def context(inputs: dict) -> ComponentContext:
    return ComponentContext(
        pipeline="p",
        pipeline_version="1.0.0",
        config_version="c",
        environment="dev",
        stage="use",
        run_id="r",
        git_commit="unknown",
        inputs=inputs,
        artifact_dir=None,  # type: ignore[arg-type]  # not used here
    )


def test_inputs_read_like_the_dict_run_returns_by_key_attribute_and_method() -> None:
    ctx = context({"make": {"artifacts": {"table": "file:///t"}, "metrics": {"rows": 3}}})

    assert ctx.inputs["make"]["artifacts"]["table"] == "file:///t"
    assert ctx.inputs["make"].artifacts["table"] == "file:///t"
    assert ctx.input("make")["metrics"]["rows"] == 3.0
    assert ctx.input()["artifacts"] == {"table": "file:///t"}
    assert dict(ctx.inputs["make"]) == {"artifacts": {"table": "file:///t"}, "metrics": {"rows": 3.0}}
    assert ctx.inputs["make"] == {"artifacts": {"table": "file:///t"}, "metrics": {"rows": 3.0}}


def test_inputs_are_read_only_but_still_serialise_as_json() -> None:
    ctx = context({"make": {"artifacts": {"table": "file:///t"}}})

    with pytest.raises(TypeError):
        ctx.inputs["make"]["artifacts"]["table"] = "file:///other"
    with pytest.raises(TypeError):
        ctx.inputs["make"].metrics.update(rows=1)
    with pytest.raises(TypeError):
        ctx.inputs["other"] = StageOutputs()  # type: ignore[index]
    assert json.loads(json.dumps(ctx.inputs["make"].artifacts)) == {"table": "file:///t"}


def test_asking_for_a_stage_that_is_not_upstream_names_the_ones_that_are() -> None:
    ctx = context({"make": {}, "fetch": {}})

    with pytest.raises(KeyError, match=r"no upstream stage 'train'.*make, fetch"):
        ctx.input("train")
    with pytest.raises(ValueError, match="2 upstream stages"):
        ctx.input()
    with pytest.raises(KeyError, match="'digests'"):
        ctx.inputs["make"]["digests"]
