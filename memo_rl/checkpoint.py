"""Checkpoints: atomic writes, safe loads (``weights_only=True``), newest-intact lookup.

A checkpoint is a dict of tensors and plain Python values (model and optimizer state, resolved
config, ``global_step``, RNG states, and the trainer's carry-over state for an exact resume), so it
loads with ``torch.load(..., weights_only=True)`` and can never run code.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_RE = re.compile(r"^ckpt_(\d{12})\.pt$")
CHECKPOINT_FORMAT = 1
"""Version of the checkpoint layout written by this memo-rl; others are refused with a clear error."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (half-written, corrupt, or not a memo-rl checkpoint)."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: Path, global_step: int) -> Path:
    return checkpoint_dir(run_dir) / f"ckpt_{global_step:012d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``(global_step, path)`` of every checkpoint file in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), folder / m.group(0)) for name in os.listdir(folder) if (m := CHECKPOINT_RE.match(name))]
    return sorted(found)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically: a temp file in the same folder, fsync, then rename over ``path``.

    A crash at any moment leaves either the previous file or the complete new one, never a
    half-written checkpoint under a checkpoint name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` if unreadable."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many kinds for truncated or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {str(err).splitlines()[0]}") from None
    if not isinstance(payload, dict) or "global_step" not in payload or "model" not in payload:
        raise CheckpointError(f"{path} is not a memo-rl checkpoint (no 'global_step'/'model')")
    version = payload.get("format")
    if version != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}; this memo-rl reads format {CHECKPOINT_FORMAT} "
            "(evaluate it with the memo-rl version that wrote it)"
        )
    return payload


def latest_intact_checkpoint(folder: Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict] | None:
    """The newest checkpoint in ``folder`` that loads; corrupt ones are reported and skipped."""
    for _, path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as err:
            print(f"[memo-rl] skipping unreadable checkpoint: {err}", file=sys.stderr)
    return None


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete temp files left by a save that was killed before its rename; return them."""
    folder = Path(folder)
    stale = sorted(folder.glob(".ckpt_*.pt.tmp-*")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (keep=0: keep all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(folder)[:-keep]:
        path.unlink(missing_ok=True)


def numpy_to_tensors(tree: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Env states hold numpy arrays; store them as tensors so checkpoints stay weights_only-safe."""
    out = {}
    for key, value in tree.items():
        array = np.ascontiguousarray(value)
        if array.dtype == np.uint64:  # keep the bits; torch's uint64 support is partial
            out[key] = torch.from_numpy(array.view(np.int64).copy())
            out[f"{key}.__uint64__"] = torch.tensor(True)
        else:
            out[key] = torch.from_numpy(array.copy())
    return out


def tensors_to_numpy(tree: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        if key.endswith(".__uint64__"):
            continue
        array = value.cpu().numpy()
        out[key] = array.view(np.uint64) if f"{key}.__uint64__" in tree else array
    return out
