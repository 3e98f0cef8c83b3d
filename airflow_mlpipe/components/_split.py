"""The deterministic hold-out split shared by ``model.matrix_factorization`` and ``evaluation.recommender``.

Whether a (user, item) pair is held out depends only on the pair, a seed and a salt: each id is
hashed once (keyed BLAKE2b of its string form), the two hashes are mixed with the seed by a
SplitMix64 finaliser, and the top 53 bits become a uniform number in [0, 1) compared with the
hold-out fraction. So the train stage excludes exactly the pairs the evaluate stage tests on,
without either stage having to ship the list of test pairs to the other, and a pair stays on the
same side when unrelated rows are added or removed.

Imported only from inside ``run`` (it needs numpy).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Bumped whenever the hashing below changes, so stages built on different versions refuse to mix.
SPLIT_ALGORITHM = "blake2b-splitmix64/v1"

TEST_SALT = "test"
VALIDATION_SALT = "validation"

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class SplitSettings:
    """What a train stage records so evaluation can rebuild, and check, the same hold-out."""

    test_split: float
    split_seed: int
    algorithm: str = SPLIT_ALGORITHM
    test_pairs: int = 0
    total_pairs: int = 0
    fingerprint: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SplitSettings:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def _id_hashes(values: Iterable[Any], key: bytes) -> np.ndarray:
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8, key=key).digest(), "little")
            for value in values
        ),
        dtype=np.uint64,
    )


def _hash_per_row(ids: Any, key: bytes) -> np.ndarray:
    """The keyed hash of each row's id, hashing each distinct id once (there are far fewer ids than rows).

    Arrow's hash-based ``unique``/``index_in`` find the distinct ids in linear time and give int32
    positions, where ``np.unique`` would sort and allocate several 64-bit copies of the column.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    column = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(ids))
    distinct = pc.unique(column)
    positions = pc.index_in(column, value_set=distinct).to_numpy()
    return _id_hashes(distinct.to_pylist(), key)[positions]


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser, in place (``x`` is overwritten and returned), with one temporary."""
    # uint64 arithmetic wraps around modulo 2**64, which is what the finaliser relies on.
    x += np.uint64(0x9E3779B97F4A7C15)
    shifted = x >> np.uint64(30)
    x ^= shifted
    x *= np.uint64(0xBF58476D1CE4E5B9)
    np.right_shift(x, np.uint64(27), out=shifted)
    x ^= shifted
    x *= np.uint64(0x94D049BB133111EB)
    np.right_shift(x, np.uint64(31), out=shifted)
    x ^= shifted
    return x


def pair_hashes(user_ids: Any, item_ids: Any, seed: int, salt: str) -> np.ndarray:
    """A uint64 hash per (user_id, item_id) pair; ids may be any type with a stable ``str``.

    The ids may be numpy or Arrow arrays (Arrow columns are read without a numpy copy).
    """
    if len(user_ids) != len(item_ids):
        raise ValueError("user_ids and item_ids must have the same length")
    # BLAKE2b keys are at most 64 bytes: derive a fixed-size key from the settings.
    key = hashlib.blake2b(f"{SPLIT_ALGORITHM}|{salt}|{seed}".encode(), digest_size=32).digest()
    with np.errstate(over="ignore"):
        mixed = _splitmix64(_hash_per_row(item_ids, key + b"i"))
        mixed ^= _hash_per_row(user_ids, key + b"u")
        return _splitmix64(mixed)


def held_out(user_ids: Any, item_ids: Any, fraction: float, seed: int, salt: str = TEST_SALT) -> np.ndarray:
    """Boolean mask: True where the pair falls in the held-out ``fraction``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"hold-out fraction must be in [0, 1), got {fraction}")
    # The top 53 bits as a uniform number in [0, 1): (h >> 11) / 2**53 < fraction, compared without
    # the float copy (both sides are exact in float64, so the mask is the same).
    hashes = pair_hashes(user_ids, item_ids, seed, salt)
    hashes >>= np.uint64(11)
    return hashes < fraction * 2.0**53


def fingerprint(user_ids: Any, item_ids: Any, mask: np.ndarray, seed: int) -> str:
    """An order-independent digest of the held-out pairs, to detect two stages disagreeing."""
    hashes = pair_hashes(user_ids, item_ids, seed, "fingerprint")[mask]
    with np.errstate(over="ignore"):
        total = int(np.sum(hashes, dtype=np.uint64) & _MASK64)
    return f"{total:016x}"


def make_test_split(
    user_ids: Any, item_ids: Any, test_split: float, split_seed: int
) -> tuple[np.ndarray, SplitSettings]:
    """The test mask of the given pairs and the settings that describe (and fingerprint) it."""
    mask = held_out(user_ids, item_ids, test_split, split_seed, TEST_SALT)
    settings = SplitSettings(
        test_split=test_split,
        split_seed=split_seed,
        test_pairs=int(mask.sum()),
        total_pairs=len(mask),
        fingerprint=fingerprint(user_ids, item_ids, mask, split_seed),
    )
    return mask, settings
