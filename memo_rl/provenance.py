"""Which code produced a run: package versions and, for a git checkout, the commit.

A results table is only as trustworthy as the link from each row back to the code that made it;
``summary.json`` carries :func:`code_version` so a run found months later still says which
commit trained it, and whether that checkout had uncommitted changes.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import torch

import memo_rl

SOURCE_ROOT = Path(memo_rl.__file__).resolve().parent.parent


def _git(root: Path, *args: str) -> str | None:
    """``git -C root ARGS`` stripped, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def code_version(root: Path = SOURCE_ROOT) -> dict[str, Any]:
    """``{"memo_rl", "torch", "git_commit", "git_dirty"}`` for the code imported from ``root``.

    ``git_commit`` and ``git_dirty`` are None unless ``root`` is the top of a git work tree (an
    installed wheel inside some unrelated repository does not borrow that repository's commit).
    ``git_dirty`` counts tracked files only. Cached: the first call fixes the answer for the
    process, so call it when a run starts, not when it ends.
    """
    commit = dirty = None
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is not None and Path(top).resolve() == root.resolve():
        commit = _git(root, "rev-parse", "HEAD")
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {"memo_rl": memo_rl.__version__, "torch": torch.__version__, "git_commit": commit, "git_dirty": dirty}
