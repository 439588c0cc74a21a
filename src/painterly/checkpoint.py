"""Checkpoints of interrupted runs: written atomically, read back safely (``weights_only``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import InputError


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
    if not isinstance(state, dict) or "params" not in state:
        raise InputError(f"{path} is not a painterly checkpoint")
    return state


def remove_checkpoint(path: str | Path) -> None:
    Path(path).unlink(missing_ok=True)
