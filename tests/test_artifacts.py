"""Artifact paths: names that become path segments cannot escape the artifact root; how files are opened."""

from __future__ import annotations

import pytest

from airflow_mlpipe.artifacts import open_for_writing, run_folder, safe_segment, stage_artifact_dir


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "../..",
        "/etc/passwd",
        "a/../../b",
        "manual__2024-01-01T00:00:00+00:00",
        "x\x00y",
        "~root",
        ".",
        "",
    ],
)
def test_segment_has_no_separator_or_parent_reference(name):
    segment = safe_segment(name)

    assert segment and "/" not in segment and "\\" not in segment and "\x00" not in segment
    assert segment not in {".", ".."} and not segment.startswith(".")


def test_stage_dir_stays_under_the_root(tmp_path):
    root = tmp_path / "artifacts"

    path = stage_artifact_dir(str(root), "../../outside", "../../run", "/abs/stage", 1)

    assert str(path).startswith(f"file://{root}/")
    assert ".." not in str(path).removeprefix(f"file://{root}/").split("/")


def test_run_ids_keep_their_readable_shape():
    assert safe_segment("scheduled__2026-11-26T03:00:00+00:00") == "scheduled__2026-11-26T03_00_00_00_00"


def test_run_ids_that_sanitise_alike_get_different_folders(tmp_path):
    # A triggerer may choose a run id; one that only differs in unsafe characters from another
    # run's id must not share (and so empty) that run's artifact folder.
    first = "scheduled__2026-11-26T03:00:00+00:00"
    second = "scheduled__2026-11-26T03_00_00_00_00"
    assert safe_segment(first) == safe_segment(second)

    dirs = {str(stage_artifact_dir(str(tmp_path), "p", run_id, "train", 1)) for run_id in (first, second)}

    assert len(dirs) == 2
    assert run_folder(first).startswith("scheduled__2026-11-26T03_00_00_00_00-")


def test_run_folder_is_stable_and_bounded():
    long_id = "manual__" + "x" * 240

    assert run_folder(long_id) == run_folder(long_id)
    assert len(run_folder(long_id)) <= 111
    assert run_folder(long_id) != run_folder(long_id[:-1] + "y")


def test_a_local_artifact_is_opened_without_loading_the_providers_filesystems(tmp_path):
    # The first ObjectStoragePath.open of a process imports every installed provider's filesystem
    # module; a file on the worker's own disk must not pay for that (BENCHMARKS.md, section 3.3).
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import fs

    path = ObjectStoragePath(f"file://{tmp_path}/data.bin")
    fs._register_filesystems.cache_clear()

    with open_for_writing(path) as sink:
        sink.write(b"rows")

    assert fs._register_filesystems.cache_info().misses == 0
    assert (tmp_path / "data.bin").read_bytes() == b"rows"


def test_an_object_store_artifact_is_opened_through_its_filesystem(s3_conn_id, s3_bucket):
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath(f"s3://{s3_bucket}/stage/data.bin", conn_id=s3_conn_id)

    with open_for_writing(path) as sink:
        sink.write(b"rows")

    assert path.read_bytes() == b"rows"
