"""The deterministic hold-out shared by training and evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from airflow_mlpipe.components import _split


def _pairs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 5_000, n), rng.integers(0, 800, n)


def test_a_pair_is_held_out_whatever_else_is_in_the_table():
    users, items = _pairs(20_000)
    mask = _split.held_out(users, items, 0.2, seed=3)
    order = np.random.default_rng(1).permutation(len(users))
    assert np.array_equal(_split.held_out(users[order], items[order], 0.2, seed=3), mask[order])
    # a subset (e.g. a later extract with fewer rows) keeps each remaining pair on its side
    assert np.array_equal(_split.held_out(users[:500], items[:500], 0.2, seed=3), mask[:500])
    # ids of another type with the same text hash the same way
    assert np.array_equal(_split.held_out(users.astype(str), items.astype(str), 0.2, seed=3), mask)


def test_fraction_seed_and_salt():
    users, items = _pairs(50_000)
    mask = _split.held_out(users, items, 0.2, seed=3)
    assert abs(mask.mean() - 0.2) < 0.01
    assert not np.array_equal(mask, _split.held_out(users, items, 0.2, seed=4))
    assert not np.array_equal(mask, _split.held_out(users, items, 0.2, seed=3, salt=_split.VALIDATION_SALT))
    # a larger fraction holds out a superset: the hash is compared with the fraction
    assert (_split.held_out(users, items, 0.3, seed=3) >= mask).all()
    assert not _split.held_out(users, items, 0.0, seed=3).any()


def test_settings_fingerprint_the_held_out_pairs():
    users, items = _pairs(5_000)
    mask, settings = _split.make_test_split(users, items, 0.2, 7)
    assert (settings.test_pairs, settings.total_pairs) == (int(mask.sum()), 5_000)
    assert _split.SplitSettings.from_json(settings.to_json()) == settings
    _, same = _split.make_test_split(users[::-1], items[::-1], 0.2, 7)
    assert same.fingerprint == settings.fingerprint
    keep = np.arange(5_000) != np.flatnonzero(mask)[0]  # drop one held-out pair
    _, fewer = _split.make_test_split(users[keep], items[keep], 0.2, 7)
    assert fewer.test_pairs == settings.test_pairs - 1
    assert fewer.fingerprint != settings.fingerprint


def _previous_pair_hashes(user_ids, item_ids, seed, salt):
    """The hashing as first written (np.unique, out-of-place SplitMix64), to prove the leaner one equal."""
    import hashlib

    def splitmix(x):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))

    key = hashlib.blake2b(f"{_split.SPLIT_ALGORITHM}|{salt}|{seed}".encode(), digest_size=32).digest()
    unique_users, user_pos = np.unique(np.asarray(user_ids), return_inverse=True)
    unique_items, item_pos = np.unique(np.asarray(item_ids), return_inverse=True)
    user_hash = _split._id_hashes(unique_users.tolist(), key + b"u")[user_pos]
    item_hash = _split._id_hashes(unique_items.tolist(), key + b"i")[item_pos]
    with np.errstate(over="ignore"):
        return splitmix(user_hash ^ splitmix(item_hash))


@pytest.mark.parametrize("kind", ["int64", "strings", "arrow"])
def test_hashes_and_masks_equal_the_first_implementation(kind):
    import pyarrow as pa

    rng = np.random.default_rng(5)
    users = rng.integers(0, 3_000, size=50_000) * 7 + 1_000_000
    items = rng.zipf(1.4, size=50_000) % 800
    if kind == "strings":
        users, items = users.astype(str), items.astype(str)
    expected = _previous_pair_hashes(users, items, 3, "test")
    given = (
        (pa.array(users), pa.chunked_array([items[:100], items[100:]])) if kind == "arrow" else (users, items)
    )
    np.testing.assert_array_equal(_split.pair_hashes(*given, 3, "test"), expected)
    uniform = (expected >> np.uint64(11)).astype(np.float64) / 2.0**53
    np.testing.assert_array_equal(_split.held_out(*given, 0.2, 3), uniform < 0.2)
