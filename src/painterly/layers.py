"""The VGG layer tables: every tap's name, and the checks on names, in plain Python (no torch).

:class:`painterly.config.Settings` validates layer names and precisions with these, so checking a
command's settings (a batch's plan on a Ray driver, a bad flag) never pays for importing torch.
:mod:`painterly.network` builds the networks from the same tables.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import InputError

# Channels per convolution, "M" for a 2x2 max-pool (Simonyan & Zisserman, configurations D and E).
CONFIGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ],
}  # fmt: skip

PRECISIONS = ("auto", "float32", "bfloat16")


def layer_names(arch: str) -> list[str]:
    """Names of the modules of ``arch``'s feature stack, in order (index = torchvision index)."""
    names: list[str] = []
    block, conv = 1, 1
    for item in CONFIGS[arch]:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


def check_layers(arch: str, layers: Iterable[str]) -> list[str]:
    """Return ``layers`` as a list, raising a one-line error naming any unknown tap."""
    valid = layer_names(arch)
    layers = list(layers)
    for name in layers:
        if name not in valid:
            raise InputError(f"unknown layer {name!r} for {arch}; valid layers: {', '.join(valid)}")
    return layers


def min_side(arch: str, taps: Iterable[str]) -> int:
    """Smallest image side that leaves every one of ``taps`` at least one pixel: 2 per pool before it."""
    names = layer_names(arch)
    depth = max(names.index(t) for t in check_layers(arch, taps)) + 1
    return 2 ** sum(1 for n in names[:depth] if n.startswith("pool"))
