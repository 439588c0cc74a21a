"""Checkpoints of interrupted runs: written atomically, read back safely (``weights_only``).

A checkpoint is the dict :meth:`painterly.Result.checkpoint` returns: the optimiser's current
pixels and state, where the run stands, its settings and a fingerprint of its input images, so
``stylize(..., resume=state)`` ends with the pixels an uninterrupted run would have.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import InputError


def check_checkpoint_path(path: str | Path) -> Path:
    """Fail now, not after the run, if a checkpoint could not be written at ``path``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"checkpoint {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise InputError(f"checkpoint {path}: the folder {path.parent} does not exist")
    try:  # a real probe: os.access is wrong for root, read-only mounts and ACLs
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        problem = f"the folder {path.parent} is not writable ({err.strerror or err})"
        raise InputError(f"checkpoint {path}: {problem}") from None
    return path


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` via a temporary file in the same folder and a rename: a crash
    leaves the previous checkpoint (or none), never half of one."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as err:
        raise InputError(f"checkpoint {path} could not be written ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise InputError(f"checkpoint {path} could not be written ({err.strerror or err})") from None
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint; a missing or damaged one is a one-line :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint to resume from at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged files
        raise InputError(f"checkpoint {path} is damaged ({type(err).__name__}); delete it and start again") from None
    if not isinstance(state, dict) or not isinstance(state.get("params"), torch.Tensor) or "position" not in state:
        raise InputError(f"{path} is not a painterly checkpoint")
    return state


def remove_checkpoint(path: str | Path) -> None:
    Path(path).unlink(missing_ok=True)
