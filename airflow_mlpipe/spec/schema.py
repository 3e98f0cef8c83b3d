"""The JSON Schema of a spec, for editors (yaml-language-server) and other tools.

Generated from the pydantic models, with each built-in component's ``Config`` schema applied to
``config`` (and its field names to ``overridable``) when a stage names that component, so
editors complete component settings too.
"""

from __future__ import annotations

from typing import Any

from airflow_mlpipe.spec.models import Pipeline

SCHEMA_ID = "https://github.com/airflow-mlpipe/airflow-mlpipe/blob/main/schema/pipeline.schema.json"


def pipeline_schema(components: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The spec's JSON Schema; ``components`` maps component names to their config schemas."""
    schema = Pipeline.model_json_schema()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
    schema["title"] = "airflow-mlpipe pipeline spec"
    if components:
        stage = schema["$defs"]["PipelineStage"]
        stage["allOf"] = [
            {
                "if": {"properties": {"component": {"const": name}}, "required": ["component"]},
                "then": {
                    "properties": {
                        "config": _inline_defs(config_schema),
                        # Editors complete (and check) the names a stage may list as overridable.
                        "overridable": {
                            "anyOf": [
                                {
                                    "type": "array",
                                    "items": {"enum": list(config_schema.get("properties", {}))},
                                },
                                {"type": "null"},
                            ]
                        },
                    }
                },
            }
            for name, config_schema in sorted(components.items())
        ]
    return schema


def builtin_component_schemas() -> dict[str, dict[str, Any]]:
    """Config schemas of the built-in and entry-point components."""
    from airflow_mlpipe.resolver import available_components, resolve_component

    return {
        name: resolve_component(name, ()).config_model.model_json_schema() for name in available_components()
    }


def _inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """A config schema whose ``$defs`` references still resolve once nested inside the spec's."""
    defs = schema.get("$defs", {})
    if not defs:
        return schema

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)
