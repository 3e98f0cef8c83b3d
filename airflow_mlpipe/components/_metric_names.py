"""Ranking metric names (``recall@10``, ``ndcg@5``, ``coverage``...), parsed without heavy imports.

Kept apart from :mod:`airflow_mlpipe.components._ranking` (numpy, scipy) because stage configs
validate metric names at DAG-parse time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

RANKING_KINDS = ("recall", "precision", "ndcg", "map", "hit_rate")
_METRIC = re.compile(r"^(?P<kind>recall|precision|ndcg|map|hit_rate|coverage)(?:@(?P<k>[1-9][0-9]*))?$")


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name; ``k`` is None only for a bare ``coverage``."""

    name: str
    kind: str
    k: int | None


def parse_metric(name: str) -> MetricSpec:
    """Parse ``recall@10``, ``ndcg@5``, ``coverage``...; raise ValueError naming the accepted forms."""
    match = _METRIC.match(name)
    if not match or (match["kind"] != "coverage" and match["k"] is None):
        raise ValueError(
            f"unknown metric '{name}': use one of {', '.join(k + '@<k>' for k in RANKING_KINDS)}, "
            "coverage or coverage@<k> (k a positive integer)"
        )
    return MetricSpec(name=name, kind=match["kind"], k=int(match["k"]) if match["k"] else None)


def resolve_ks(specs: Sequence[MetricSpec], default_k: int | None = None) -> dict[str, int]:
    """Metric name -> the length of the top-k list it reads; bare ``coverage`` uses ``default_k``,
    else the largest k among the metrics, else 10."""
    ks = [spec.k for spec in specs if spec.k is not None]
    coverage_k = default_k or (max(ks) if ks else 10)
    return {spec.name: spec.k if spec.k is not None else coverage_k for spec in specs}
