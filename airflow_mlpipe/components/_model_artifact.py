"""The ``model`` artifact of the built-in recommenders: what it is, how to load it, how to score it.

A ``model`` artifact is a NumPy ``.npz`` file (``numpy.load`` opens it) holding the model's arrays
and one more member, ``manifest.json``, which says what the arrays are::

    {
      "format": "airflow_mlpipe.recommender/v1",
      "kind": "als",                       # or "ease"
      "component": "model.matrix_factorization",
      "arrays": {"user_factors": [943, 64], "item_factors": [1682, 64]},
      "scoring": "user_factors[user] @ item_factors.T",
      "users": 943, "items": 1682,
      "hyperparameters": {"factors": 64, ...}
    }

Rows of the arrays are the ``index`` of the ``user_index`` / ``item_index`` artifacts saved beside
the model. The kinds and how each scores a user:

* ``als`` (``model.matrix_factorization``): ``user_factors`` (users x factors) and
  ``item_factors`` (items x factors); a user's score for each item is
  ``user_factors[user] @ item_factors.T``.
* ``ease`` (``model.ease``): ``item_weights`` (items x items, zero diagonal); a user's score is
  ``history[user] @ item_weights``, ``history`` being the user's binary interaction row over the
  item index (the interactions the model was trained on, or the user's current ones).

An artifact without ``manifest.json`` (written before it existed) is an ``als`` model: its arrays
are ``user_factors`` and ``item_factors``. :func:`read_manifest` needs only the standard library
(the registry uses it on a lean install); the rest imports numpy when called.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import scipy.sparse as sp

    from airflow_mlpipe.components._ranking import Recommender

FORMAT = "airflow_mlpipe.recommender/v1"
MANIFEST_MEMBER = "manifest.json"
#: How each kind scores a user (also written into the manifest, for a reader without this code).
SCORING = {
    "als": "user_factors[user] @ item_factors.T",
    "ease": "history[user] @ item_weights",
}
#: The arrays each kind needs.
ARRAYS = {"als": ("user_factors", "item_factors"), "ease": ("item_weights",)}
#: What an artifact without a manifest is.
LEGACY_MANIFEST: Mapping[str, Any] = {
    "format": FORMAT,
    "kind": "als",
    "component": "model.matrix_factorization",
    "scoring": SCORING["als"],
}
# A fixed timestamp for every member: the same model gives the same bytes (and digest).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class LoadedModel:
    """A model artifact read back: its manifest and its arrays."""

    manifest: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    def recommender(self, history: sp.csr_matrix) -> Recommender:
        """Top-k recommendations for rows of ``history`` (users x items, what each user has seen)."""
        from airflow_mlpipe.components import _ranking

        if self.kind == "als":
            return _ranking.factor_recommender(self.arrays["user_factors"], self.arrays["item_factors"])
        if self.kind == "ease":
            return _ranking.item_item_recommender(self.arrays["item_weights"], history)
        raise ValueError(f"unknown model kind '{self.kind}' (known: {', '.join(SCORING)})")

    @property
    def n_items(self) -> int:
        name = "item_factors" if self.kind == "als" else "item_weights"
        return int(self.arrays[name].shape[0])


def manifest(
    kind: str, component: str, arrays: Mapping[str, np.ndarray], hyperparameters: Mapping[str, Any]
) -> dict[str, Any]:
    """The manifest of a model of ``kind`` with these arrays."""
    if kind not in SCORING:
        raise ValueError(f"unknown model kind '{kind}' (known: {', '.join(SCORING)})")
    first = arrays[ARRAYS[kind][0]]
    return {
        "format": FORMAT,
        "kind": kind,
        "component": component,
        "arrays": {name: list(array.shape) for name, array in arrays.items()},
        "scoring": SCORING[kind],
        "users": int(arrays["user_factors"].shape[0]) if kind == "als" else None,
        "items": int(first.shape[0]),
        "hyperparameters": dict(hyperparameters),
    }


def dumps(model_manifest: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """The bytes of a model artifact: the arrays as ``.npy`` members, and ``manifest.json``."""
    import numpy as np

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", _ZIP_DATE), "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
        archive.writestr(zipfile.ZipInfo(MANIFEST_MEMBER, _ZIP_DATE), json.dumps(model_manifest, indent=2))
    return buffer.getvalue()


def read_manifest(handle: Any) -> dict[str, Any]:
    """The manifest of the model artifact open in ``handle`` (binary, seekable); standard library only.

    Raises ValueError when the file is not a model artifact (not a zip / ``.npz`` file).
    """
    try:
        with zipfile.ZipFile(handle) as archive:
            if MANIFEST_MEMBER not in archive.namelist():
                return dict(LEGACY_MANIFEST)
            return dict(json.loads(archive.read(MANIFEST_MEMBER)))
    except zipfile.BadZipFile as error:
        raise ValueError(f"not a model artifact (an .npz file): {error}") from error


def loads(data: bytes, source: str = "the model artifact") -> LoadedModel:
    """Read a model artifact's bytes; a clear error naming ``source`` if it lacks what its kind needs."""
    import numpy as np

    model_manifest = read_manifest(io.BytesIO(data))
    kind = model_manifest.get("kind")
    if kind not in ARRAYS:
        raise ValueError(f"{source} is a model of unknown kind '{kind}' (known: {', '.join(ARRAYS)})")
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        missing = [name for name in ARRAYS[kind] if name not in archive.files]
        if missing:
            raise ValueError(f"{source} is a '{kind}' model without the array(s) {', '.join(missing)}")
        arrays = {name: archive[name] for name in archive.files if name != MANIFEST_MEMBER}
    return LoadedModel(manifest=model_manifest, arrays=arrays)
