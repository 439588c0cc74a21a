"""VGG feature stacks in plain torch, with every tap named the usual way.

The layer layout is torchvision's (``features.N`` keys), so any torchvision-layout state dict
loads; names follow the convention of Gatys et al. and pystiche: ``conv1_1``, ``relu1_1``, ...,
``pool5``. A :class:`VGGFeatures` is truncated after the deepest tap it was built for, frozen,
and normalises its RGB ``[0, 1]`` input with the ImageNet statistics torchvision's weights expect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .errors import InputError

# Channels per convolution, "M" for a 2x2 max-pool (Simonyan & Zisserman, configurations D and E).
CONFIGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ],
}  # fmt: skip

# Above this many pixels a forward pass that needs a backward keeps only the taps and recomputes
# the rest during the backward pass (activation checkpointing): ~25 % more arithmetic for half the
# memory. A 2048x1536 evaluation of vgg16-hed peaks at 6.9 GiB without it (see BENCHMARKS.md).
RECOMPUTE_ABOVE_PIXELS = 1_500_000

# torchvision's ImageNet normalisation, applied to RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def build_features(arch: str, depth: int | None = None) -> nn.Sequential:
    """The feature stack of ``arch`` as torchvision lays it out, cut to its first ``depth`` modules.

    ReLUs are not in-place, so a ``convX_Y`` tap keeps its pre-activation value.
    """
    if arch not in CONFIGS:
        raise InputError(f"unknown network {arch!r}; choose one of: {', '.join(CONFIGS)}")
    modules: list[nn.Module] = []
    channels = 3
    for item in CONFIGS[arch]:
        if item == "M":
            modules.append(nn.MaxPool2d(2, 2))
        else:
            modules += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            channels = int(item)
    if depth is not None:
        modules = modules[:depth]
    return nn.Sequential(*modules)


def conv_indices(arch: str) -> list[int]:
    """torchvision indices of the convolutions (the ``features.N`` keys that hold weights)."""
    return [i for i, name in enumerate(layer_names(arch)) if name.startswith("conv")]


class VGGFeatures(nn.Module):
    """A frozen VGG stack that returns the named taps it was built for.

    >>> net = VGGFeatures("vgg19", ["relu1_2", "conv3_4"])
    >>> sorted(net(torch.rand(1, 3, 32, 32)))
    ['conv3_4', 'relu1_2']
    """

    def __init__(
        self,
        arch: str,
        taps: Sequence[str],
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if arch not in CONFIGS:
            raise InputError(f"unknown network {arch!r}; choose one of: {', '.join(CONFIGS)}")
        self.arch = arch
        names = layer_names(arch)
        self.taps = check_layers(arch, taps)
        depth = max(names.index(t) for t in self.taps) + 1
        self.names = names[:depth]
        # Nothing past the deepest tap is built: its work would be wasted.
        self.features = build_features(arch, depth)
        if state_dict is not None:
            load_features(self.features, state_dict)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()
        self.recompute_above = RECOMPUTE_ABOVE_PIXELS

    @property
    def min_size(self) -> int:
        """Smallest image side that still leaves every tap at least one pixel."""
        return 2 ** sum(1 for n in self.names if n.startswith("pool"))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map an RGB batch in ``[0, 1]``, shape ``(B, 3, H, W)``, to ``{tap: activation}``."""
        x = (image - self.mean) / self.std
        if self.features[0].weight.is_contiguous(memory_format=torch.channels_last):
            # A channels-last network wants channels-last input (faster oneDNN/cuDNN kernels).
            x = x.contiguous(memory_format=torch.channels_last)
        wanted = set(self.taps)
        if x.requires_grad and x.shape[-2] * x.shape[-1] > self.recompute_above:
            return self._forward_recomputing(x, wanted)
        out: dict[str, torch.Tensor] = {}
        for name, module in zip(self.names, self.features):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out

    def _forward_recomputing(self, x: torch.Tensor, wanted: set[str]) -> dict[str, torch.Tensor]:
        """The same taps, keeping only them: each stretch between two taps is re-run in the backward.

        A tap's own ReLU runs outside its stretch: its output is kept anyway (it is the tap), so the
        stretch's last convolution never has to be re-run.
        """
        out: dict[str, torch.Tensor] = {}
        start = 0
        for end, name in enumerate(self.names):
            if name not in wanted:
                continue
            stop = end if isinstance(self.features[end], nn.ReLU) else end + 1
            if stop > start:
                x = checkpoint(self._run, x, start, stop, use_reentrant=False)
            for module in self.features[stop : end + 1]:
                x = module(x)
            out[name] = x
            start = end + 1
        return out

    def _run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for module in self.features[start:stop]:
            x = module(x)
        return x


def load_features(features: nn.Sequential, state_dict: dict[str, torch.Tensor]) -> None:
    """Load the ``features.N.*`` entries of a torchvision-layout state dict into a (cut) stack.

    Entries past the cut and the classifier are ignored; a missing or misshapen entry is an error.
    """
    from .errors import WeightsError

    own = features.state_dict()
    picked = {}
    for key, param in own.items():
        full = f"features.{key}"
        if full not in state_dict:
            raise WeightsError(f"weights have no entry {full!r} (not a torchvision-layout VGG)")
        value = state_dict[full]
        if tuple(value.shape) != tuple(param.shape):
            raise WeightsError(f"weights entry {full!r} has shape {tuple(value.shape)}, expected {tuple(param.shape)}")
        picked[key] = value
    features.load_state_dict(picked, strict=True)
