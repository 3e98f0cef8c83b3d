"""components/_interactions.py: the CSR matrices the models train on."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from airflow_mlpipe.components import _interactions


def _pairs(sort: bool, dtype: type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    rows = rng.integers(0, 50, 3000).astype(np.int32)  # 3000 pairs of 60 x 40: many duplicates
    cols = rng.integers(0, 40, 3000).astype(np.int32)
    values = rng.gamma(1.0, 2.0, 3000).astype(dtype)
    if sort:
        order = np.lexsort((cols, rows))
        rows, cols, values = rows[order], cols[order], values[order]
    return rows, cols, values


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sort", [True, False], ids=["sorted", "unsorted"])
def test_csr_is_the_coo_conversion_bit_for_bit_and_leaves_its_inputs_alone(sort, dtype):
    rows, cols, values = _pairs(sort, dtype)
    originals = rows.copy(), cols.copy(), values.copy()
    expected = sp.coo_matrix((values.astype(np.float32), (rows, cols)), shape=(60, 40)).tocsr()

    matrix = _interactions.csr(rows, cols, values, (60, 40))

    assert matrix.dtype == np.float32 and matrix.has_canonical_format
    assert np.array_equal(matrix.indptr, expected.indptr)
    assert np.array_equal(matrix.indices, expected.indices)
    assert np.array_equal(matrix.data, expected.data)  # duplicates summed in the same order
    for given, original in zip((rows, cols, values), originals, strict=True):
        assert np.array_equal(given, original)


def test_csr_of_unique_sorted_pairs_takes_the_columns_without_a_copy():
    rows, cols, values = _pairs(True, np.float32)
    keep = np.ones(len(rows), dtype=bool)
    keep[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])  # one row per pair, as features writes
    rows, cols, values = rows[keep], cols[keep], values[keep]

    matrix = _interactions.csr(rows, cols, values, (60, 40))

    assert np.shares_memory(matrix.indices, cols) and np.shares_memory(matrix.data, values)
    assert matrix.nnz == len(rows) and (matrix.toarray()[rows, cols] == values).all()
