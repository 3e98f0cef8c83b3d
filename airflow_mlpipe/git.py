"""The git commit a spec was read from, found by reading ``.git`` files directly.

Spawning ``git`` for every parse or task would cost tens of milliseconds each time; reading
``HEAD`` and the ref it points to is a couple of small file reads. Handles worktrees and
submodules (a ``.git`` file with ``gitdir:``), detached heads and packed refs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

UNKNOWN = "unknown"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def head_commit(path: str | os.PathLike[str]) -> str | None:
    """The commit checked out in the git repository holding ``path``, or None outside one."""
    git_dir = _find_git_dir(Path(path).resolve())
    if git_dir is None:
        return None
    try:
        head = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return None
    if _SHA.match(head):
        return head
    if not head.startswith("ref:"):
        return None
    return _read_ref(git_dir, head.removeprefix("ref:").strip())


def _find_git_dir(start: Path) -> Path | None:
    for directory in [start, *start.parents] if start.is_dir() else start.parents:
        dot_git = directory / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():
            text = dot_git.read_text().strip()
            if text.startswith("gitdir:"):
                return (directory / text.removeprefix("gitdir:").strip()).resolve()
    return None


def _read_ref(git_dir: Path, ref: str) -> str | None:
    # A worktree keeps HEAD in its own dir but shares refs with the main repository.
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text().strip()).resolve()
    for directory in dict.fromkeys([git_dir, common]):
        loose = directory / ref
        if loose.is_file():
            sha = loose.read_text().strip()
            return sha if _SHA.match(sha) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref and _SHA.match(sha):
                return sha
    return None
