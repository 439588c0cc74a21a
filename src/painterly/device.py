"""Resolve the ``--device`` choice once, at the edge; inner code takes a ``torch.device``."""

from __future__ import annotations

import torch

from .errors import InputError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but this torch has no usable CUDA; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {name!r} asked for, but MPS is not available here; use --device cpu")
    return device
