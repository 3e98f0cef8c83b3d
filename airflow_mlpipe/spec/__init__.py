"""The pipeline-spec layer: models, YAML loading with overlays, and precise errors.

Everything the CLI, the DAG factory and the plugins need is exported here; the modules below are
the layer's own business.
"""

from airflow_mlpipe.spec.checks import RESERVED_STAGE_NAMES, stage_overridable
from airflow_mlpipe.spec.discovery import (
    DEFAULT_IGNORE_FILE_SYNTAX,
    IGNORE_FILE_NAME,
    IGNORE_FILE_SYNTAXES,
    Discovery,
    SpecFiles,
    discover_specs,
)
from airflow_mlpipe.spec.errors import Location, Problem, Severity, SpecError
from airflow_mlpipe.spec.loader import FolderResult, load_folder, load_pipeline, read_spec, read_spec_file
from airflow_mlpipe.spec.models import (
    NAME_PATTERN,
    TASK_SETTINGS,
    AssetSchedule,
    Metadata,
    Pipeline,
    PipelineStage,
    StageApproval,
    StageSettings,
)
from airflow_mlpipe.spec.reader import LocatedDict, LocatedList
from airflow_mlpipe.spec.schema import SCHEMA_ID, builtin_component_schemas, pipeline_schema

__all__ = [
    "DEFAULT_IGNORE_FILE_SYNTAX",
    "IGNORE_FILE_NAME",
    "IGNORE_FILE_SYNTAXES",
    "NAME_PATTERN",
    "RESERVED_STAGE_NAMES",
    "SCHEMA_ID",
    "TASK_SETTINGS",
    "AssetSchedule",
    "Discovery",
    "FolderResult",
    "LocatedDict",
    "LocatedList",
    "Location",
    "Metadata",
    "Pipeline",
    "PipelineStage",
    "Problem",
    "Severity",
    "SpecError",
    "SpecFiles",
    "StageApproval",
    "StageSettings",
    "builtin_component_schemas",
    "discover_specs",
    "load_folder",
    "load_pipeline",
    "pipeline_schema",
    "read_spec",
    "read_spec_file",
    "stage_overridable",
]
