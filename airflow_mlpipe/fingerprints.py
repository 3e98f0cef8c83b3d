"""Stage fingerprints: what a stage run depends on, as one hash.

A fingerprint is the SHA-256 of a canonical JSON document holding

* the component string (``model.matrix_factorization``);
* the component's code version: the SHA-256 of its module's source file, and for built-ins also
  the airflow-mlpipe version. Helper modules the component imports (``components/_split.py``,
  a team's shared utilities) and installed libraries (``implicit``, ``numpy``) are *not*
  included: a change there that alters results needs a new package version (built-ins) or a
  change to the component module or its config;
* the resolved config: after templates are rendered and trigger-time overrides applied, with
  the ``Config`` model's defaults filled in (so spelling a default out changes nothing);
* the content digests of the upstream artifacts it receives, by upstream stage and artifact name
  (content, not URIs: an upstream recomputed to the same bytes keeps the fingerprint). An upstream
  artifact without a digest (one that could not be read) counts by its URI.

Two stage runs with the same fingerprint are expected to produce the same outputs.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from airflow_mlpipe.contract import StageOutputs
from airflow_mlpipe.resolver import BUILTIN_PACKAGE, Component

#: Bumped when what goes into a fingerprint changes, so older cache entries stop matching.
FINGERPRINT_VERSION = 1


def stage_fingerprint(
    component: Component, config: Mapping[str, Any], inputs: Mapping[str, StageOutputs]
) -> str:
    """The fingerprint of running ``component`` with ``config`` (JSON-safe) on ``inputs``."""
    upstream = {
        stage: {name: outputs.digests.get(name, f"uri:{uri}") for name, uri in outputs.artifacts.items()}
        for stage, outputs in inputs.items()
    }
    document = {
        "fingerprint_version": FINGERPRINT_VERSION,
        "component": component.name,
        "code_version": code_version(component),
        "config": config,
        "inputs": upstream,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def code_version(component: Component) -> str:
    """The component module's source digest (plus the package version for a built-in)."""
    return _code_version(component.module.__name__, getattr(component.module, "__file__", None) or "")


@functools.lru_cache(maxsize=256)
def _code_version(module_name: str, source_file: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(source_file, "rb") as source:
            digest.update(source.read())
    except OSError:  # a module without a readable source (zipped, frozen): its name stands in
        digest.update(module_name.encode())
    version = f"sha256:{digest.hexdigest()}"
    if module_name.startswith(BUILTIN_PACKAGE + "."):
        from airflow_mlpipe import __version__

        version = f"airflow-mlpipe=={__version__};{version}"
    return version
