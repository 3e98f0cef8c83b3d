"""What the built-in models share: reading the interactions, the three-way pair split, the index artifacts.

``model.matrix_factorization`` and ``model.ease`` read the upstream ``interactions`` table (one
row per user-item pair with a weight), give users and items matrix rows (the ``user_index`` and
``item_index`` artifacts), and split the pairs three ways with ``components/_split.py``: the
test hold-out (for ``evaluation.recommender``, never trained on), the validation pairs (early
stopping and ``val_*`` metrics) and the training pairs. Both write the same ``split`` record, so
evaluation rebuilds and checks the same hold-out whichever model was trained.

Imported only from inside ``run`` (it needs numpy, scipy and pyarrow).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from airflow_mlpipe.components import _split


@dataclass(frozen=True)
class SplitInteractions:
    """The interactions as matrix rows and columns, with the test and validation masks of the pairs."""

    source_uri: str
    user_index: pa.Table
    item_index: pa.Table
    users: np.ndarray  # each pair's user row
    items: np.ndarray  # each pair's item column
    weights: np.ndarray  # float64, the caller's to change (a model may turn it into confidences in place)
    test: np.ndarray
    validation: np.ndarray
    settings: _split.SplitSettings
    validation_split: float

    @property
    def train(self) -> np.ndarray:
        return ~self.test & ~self.validation

    @property
    def shape(self) -> tuple[int, int]:
        return (self.user_index.num_rows, self.item_index.num_rows)

    def matrix(self, mask: np.ndarray, values: np.ndarray | None = None) -> sp.csr_matrix:
        """Users x items with the pairs of ``mask``: ``values`` (one per pair) or 1."""
        data = np.ones(len(self.users)) if values is None else values
        return csr(self.users[mask], self.items[mask], data[mask], self.shape)

    def counts(self) -> dict[str, int]:
        """The split's sizes, as the models report them in their metrics."""
        return {
            "users": self.shape[0],
            "items": self.shape[1],
            "train_interactions": int(self.train.sum()),
            "validation_interactions": int(self.validation.sum()),
            "test_interactions": int(self.test.sum()),
        }


def read_and_split(
    source_uri: str,
    weight_column: str | None,
    test_split: float,
    split_seed: int,
    validation_split: float,
    log: logging.Logger,
) -> SplitInteractions:
    """Read the interactions at ``source_uri``, index users and items, split the pairs three ways.

    Without a ``weight_column`` every pair weighs 1.
    """
    from airflow.sdk import ObjectStoragePath

    columns = ["user_id", "item_id", *([weight_column] if weight_column else [])]
    with ObjectStoragePath(source_uri).open("rb") as handle:
        interactions = pq.read_table(handle, columns=columns)
    if interactions.num_rows == 0:
        raise ValueError(f"{source_uri} has no interactions to train on")

    user_index, users = index_ids(interactions.column("user_id"), "user_id")
    item_index, items = index_ids(interactions.column("item_id"), "item_id")
    # The split hashes the Arrow columns as they are: no numpy copy of the ids.
    user_ids = interactions.column("user_id")
    item_ids = interactions.column("item_id")
    if weight_column:
        weights = interactions.column(weight_column).to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        weights = np.ones(interactions.num_rows)

    test, settings = _split.make_test_split(user_ids, item_ids, test_split, split_seed)
    validation = ~test & _split.held_out(
        user_ids, item_ids, validation_split, split_seed, _split.VALIDATION_SALT
    )
    del interactions, user_ids, item_ids  # not needed past the split: free them before training
    # Arrow's allocator keeps the pages it freed for Arrow's next allocations, but training
    # allocates through numpy: hand them back (at 20M events 600 MiB, a third of the stage's peak).
    pa.default_memory_pool().release_unused()
    data = SplitInteractions(
        source_uri,
        user_index,
        item_index,
        users,
        items,
        weights,
        test,
        validation,
        settings,
        validation_split,
    )
    log.info(
        "%d users, %d items, %d pairs: %d to train on, %d for validation, %d held out for evaluation",
        data.shape[0],
        data.shape[1],
        len(test),
        int(data.train.sum()),
        int(validation.sum()),
        int(test.sum()),
    )
    return data


def write_index_and_split(data: SplitInteractions, artifact_dir: Any) -> dict[str, str]:
    """Write ``user_index``, ``item_index`` and ``split`` into ``artifact_dir``; return their URIs."""
    user_index_path = artifact_dir / "user_index.parquet"
    item_index_path = artifact_dir / "item_index.parquet"
    with user_index_path.open("wb") as sink:
        pq.write_table(data.user_index, sink)
    with item_index_path.open("wb") as sink:
        pq.write_table(data.item_index, sink)
    split_path = artifact_dir / "split.json"
    # No URIs in it: the same training gives the same bytes, whichever run wrote them.
    split_record = {**data.settings.to_json(), "validation_split": data.validation_split}
    split_path.write_text(json.dumps(split_record, indent=2))
    return {"user_index": str(user_index_path), "item_index": str(item_index_path), "split": str(split_path)}


def index_ids(ids: pa.ChunkedArray, id_column: str) -> tuple[pa.Table, np.ndarray]:
    """Sorted distinct ids as an ``(<id_column>, index)`` table, and each input row's index."""
    distinct = pc.unique(ids).sort()
    positions = pc.index_in(ids, value_set=distinct).to_numpy()  # int32: half the memory of int64
    table = pa.table({id_column: distinct, "index": pa.array(np.arange(len(distinct), dtype=np.int64))})
    return table, positions


def csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A float32 CSR matrix of the ``(rows, cols)`` pairs, duplicates summed, indices sorted per row.

    The same matrix as ``coo_matrix(...).tocsr()``, built without the COO step's copies (at 20M
    events the pairs' own arrays are hundreds of MiB): the interactions arrive sorted by user, so
    the rows need no reordering and the columns and values become the CSR arrays as they are.
    Unsorted rows are put in order stably, as the COO conversion does.
    """
    indptr = np.zeros(shape[0] + 1, dtype=np.int64 if len(rows) > np.iinfo(np.int32).max else np.int32)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    data = values.astype(np.float32, copy=False)
    if len(rows) > 1 and not bool(np.all(rows[1:] >= rows[:-1])):
        order = np.argsort(rows, kind="stable")
        cols, data = cols[order], data[order]
    matrix = sp.csr_matrix((data, cols, indptr), shape=shape)
    if not matrix.has_canonical_format:  # never on the features' output: one row per pair, items sorted
        # Summing sorts and shrinks the arrays in place: in a copy, not in the caller's.
        matrix = matrix.copy()
        matrix.sum_duplicates()
    return matrix
