"""Artifact digests: by content, independent of where the bytes live and of listing order."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from airflow_mlpipe.digests import artifact_digest


def test_a_file_digest_is_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    data = b"x" * (3 * (1 << 20) + 17)  # several read chunks and a partial one
    (tmp_path / "model.bin").write_bytes(data)

    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    assert artifact_digest(f"file://{tmp_path / 'model.bin'}") == expected
    assert artifact_digest(str(tmp_path / "model.bin")) == expected


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_a_folder_digest_follows_names_and_contents_not_location(tmp_path: Path) -> None:
    files = {"a.txt": b"alpha", "sub/b.txt": b"beta", "sub/deeper/c.txt": b"gamma"}
    first = write_folder(tmp_path / "one", files)
    second = tmp_path / "two"
    shutil.copytree(first, second)

    digest = artifact_digest(f"file://{first}")

    assert digest == artifact_digest(f"file://{second}")
    (second / "sub" / "b.txt").write_bytes(b"BETA")
    assert artifact_digest(f"file://{second}") != digest
    (second / "sub" / "b.txt").write_bytes(b"beta")
    (second / "sub" / "b.txt").rename(second / "sub" / "b2.txt")
    assert artifact_digest(f"file://{second}") != digest
    (second / "sub" / "b2.txt").rename(second / "sub" / "b.txt")
    (second / "extra.txt").write_bytes(b"")
    assert artifact_digest(f"file://{second}") != digest


def test_a_missing_artifact_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        artifact_digest(f"file://{tmp_path / 'gone.parquet'}")
