"""A test component whose Config still accepts old spellings, with a ConfigDeprecationWarning."""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from airflow_mlpipe.contract import ConfigDeprecationWarning


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: str = "fast"
    legacy: bool = False


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = 0.1
    options: Options = Options()

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "lr" in data:
            warnings.warn(
                ConfigDeprecationWarning("'lr' is deprecated: write 'learning_rate'", field="lr"),
                stacklevel=2,
            )
            data = {**data, "learning_rate": data["lr"]}
            del data["lr"]
        options = data.get("options") if isinstance(data, dict) else None
        if isinstance(options, dict) and options.get("legacy"):
            warnings.warn(
                ConfigDeprecationWarning("legacy mode goes away in 2.0", field="options.legacy"), stacklevel=2
            )
        if isinstance(data, dict) and data.get("learning_rate") == 0.5:
            warnings.warn("an unrelated user warning", UserWarning, stacklevel=2)
        return data


def run(config: Config, context: Any) -> dict[str, Any]:
    return {}
