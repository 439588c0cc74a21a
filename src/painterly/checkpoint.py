"""Checkpoints of interrupted runs: written atomically, read back safely (``weights_only``), and
checked against the run that wants to resume them.

A checkpoint is the dict :meth:`painterly.Result.checkpoint` returns: the optimiser's current
pixels and state, where the run stands (the loop's state, :mod:`painterly.optimize`), the run's
settings and a fingerprint of its input images, so ``stylize(..., resume=state)`` ends with the
pixels an uninterrupted run would have, and refuses a checkpoint of another run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from .config import Settings
from .errors import InputError
from .files import atomic_write, remove, writable_folder
from .plan import ScalePlan

CHECKPOINT_VERSION = 2  # 2: loss reports with raw per-layer terms


def check_checkpoint_path(path: str | Path) -> Path:
    """Fail now, not after the run, if a checkpoint could not be written at ``path``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"checkpoint {path} is a folder; give a file name")
    problem = writable_folder(path.parent)
    if problem is not None:
        raise InputError(f"checkpoint {path}: {problem}")
    return path


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a crash leaves the previous checkpoint (or none)."""
    try:
        return atomic_write(path, lambda fh: torch.save(state, fh))
    except OSError as err:
        raise InputError(f"checkpoint {path} could not be written ({err.strerror or err})") from None


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


# A finished run's checkpoint goes with any half-written one beside it (files.py: no torch needed).
remove_checkpoint = remove


# ------------------------------------------------------------------------- matching a run
def resume_key(s: Settings) -> dict[str, Any]:
    """The settings a checkpoint must share with the run resuming it (all but the device)."""
    key = s.to_dict()
    key.pop("device")
    return key


def fingerprint(images: Iterable[torch.Tensor]) -> str:
    """A hash of the images as the network sees them: a checkpoint resumes only the same inputs."""
    digest = hashlib.sha256()
    for t in images:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def make_checkpoint(s: Settings, inputs: str, loop_state: dict[str, Any]) -> dict[str, Any]:
    """The loop's state (position, params, optimizer, history) as a checkpoint of this run."""
    # The CPU thread count goes with it: a resumed run on another count sums in another order
    # (threads.match_checkpoint puts the count back where nobody pinned one).
    return {"version": CHECKPOINT_VERSION, "settings": resume_key(s), "inputs": inputs,
            "threads": torch.get_num_threads(), **loop_state}  # fmt: skip


# Settings added with a default that changes the picture, and the value a checkpoint written before
# them ran at: resuming one takes that value, given by hand (--coarse-shallow-weight 1).
OLD_VALUES: dict[str, Any] = {"coarse_shallow_weight": 1.0}


def check_settings(checkpoint: dict[str, Any], s: Settings) -> None:
    """Refuse, in one line, a checkpoint of another version or made with other settings."""
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise InputError("the checkpoint was written by another version of painterly")
    saved, now = checkpoint["settings"], resume_key(s)
    # A setting added since the checkpoint was written ran as it did before it existed: at its default
    # for new options (off), at its old value for a default that came on later (OLD_VALUES).
    defaults = {**Settings().to_dict(), **OLD_VALUES}
    diff = [k for k in now if saved.get(k, defaults.get(k)) != now[k]]
    if diff:
        raise InputError(f"the checkpoint was made with other settings ({', '.join(diff)}); resume with the same ones")


def check_inputs(checkpoint: dict[str, Any], inputs: str, plans: Sequence[ScalePlan]) -> None:
    """Refuse a checkpoint made from other images, or one that does not fit this run's scales."""
    if checkpoint.get("inputs") != inputs:
        raise InputError("the checkpoint was made from other content, style or mask images; resume with the same ones")
    scale = checkpoint["position"]["scale"]
    params = checkpoint["params"]
    if scale >= len(plans) or tuple(params.shape[-2:]) != plans[scale].size:
        raise InputError("the checkpoint does not fit this run's scales; resume with the same settings")
