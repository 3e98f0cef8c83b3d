"""Reading the checked-out commit from .git files, without running git."""

from __future__ import annotations

import subprocess
from pathlib import Path

from airflow_mlpipe.git import head_commit


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "specs").mkdir()
    (path / "specs" / "a.yaml").write_text("name: a\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "one")
    return path


def test_branch_head_matches_git(tmp_path):
    repo = make_repo(tmp_path / "repo")

    assert head_commit(repo / "specs" / "a.yaml") == git(repo, "rev-parse", "HEAD")


def test_packed_refs_are_read(tmp_path):
    repo = make_repo(tmp_path / "repo")
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()

    assert head_commit(repo / "specs" / "a.yaml") == git(repo, "rev-parse", "HEAD")


def test_detached_head(tmp_path):
    repo = make_repo(tmp_path / "repo")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "specs" / "a.yaml").write_text("name: a\nversion: 2\n")
    git(repo, "commit", "-q", "-am", "two")
    git(repo, "checkout", "-q", first)

    assert head_commit(repo / "specs") == first


def test_worktree_reads_its_own_head(tmp_path):
    repo = make_repo(tmp_path / "repo")
    git(repo, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "wt"))
    (tmp_path / "wt" / "specs" / "a.yaml").write_text("name: a\nversion: 3\n")
    git(tmp_path / "wt", "commit", "-q", "-am", "feature work")

    assert head_commit(tmp_path / "wt" / "specs" / "a.yaml") == git(tmp_path / "wt", "rev-parse", "HEAD")
    assert head_commit(tmp_path / "wt" / "specs" / "a.yaml") != git(repo, "rev-parse", "HEAD")


def test_outside_a_repository_is_none(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\n")

    assert head_commit(tmp_path / "a.yaml") is None
