"""The pipeline-spec layer: models, YAML loading with overlays, and precise errors."""

from airflow_mlpipe.spec.errors import Location, Problem, SpecError
from airflow_mlpipe.spec.loader import FolderResult, load_folder, load_pipeline
from airflow_mlpipe.spec.models import Metadata, Pipeline, PipelineStage, StageSettings

__all__ = [
    "FolderResult",
    "Location",
    "Metadata",
    "Pipeline",
    "PipelineStage",
    "Problem",
    "SpecError",
    "StageSettings",
    "load_folder",
    "load_pipeline",
]
