"""VGG feature stacks in plain torch, with every tap named the usual way.

The layer layout is torchvision's (``features.N`` keys), so any torchvision-layout state dict
loads; names follow the convention of Gatys et al. and pystiche: ``conv1_1``, ``relu1_1``, ...,
``pool5``. A :class:`VGGFeatures` is truncated after the deepest tap it was built for, frozen,
and normalises its RGB ``[0, 1]`` input with the ImageNet statistics torchvision's weights expect.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import PADDINGS
from .errors import InputError
from .layers import CONFIGS, PRECISIONS, check_layers, layer_names, min_side  # noqa: F401 -- re-exported

if TYPE_CHECKING:
    from .config import Settings

# Above this many pixels a forward pass that needs a backward may keep only the taps and recompute
# the rest during the backward pass (activation checkpointing): ~25 % more arithmetic for half the
# memory. A 2048x1536 evaluation of vgg16-hed peaks at 6.9 GiB without it (see BENCHMARKS.md). The
# objective recomputes only where keeping everything would not fit the memory (tiling.choose_recompute);
# a bare VGGFeatures call recomputes above this size.
RECOMPUTE_ABOVE_PIXELS = 1_500_000
# What recomputing costs, relative to an evaluation that keeps everything (the time model's factor,
# painterly.api.time_model).
RECOMPUTE_COST = 1.25

# Below this many pixels bfloat16's conversions cost more than its faster multiplies save (one
# vgg16-hed evaluation at 24x32: 0.033 s in bfloat16, 0.024 s in float32; at 48x64 0.039 vs 0.055).
LOW_PRECISION_MIN_PIXELS = 64 * 64

# torchvision's ImageNet normalisation, applied to RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_features(arch: str, depth: int | None = None, padding: str = "zeros") -> nn.Sequential:
    """The feature stack of ``arch`` as torchvision lays it out, cut to its first ``depth`` modules.

    ReLUs are not in-place, so a ``convX_Y`` tap keeps its pre-activation value. ``padding`` is how
    the convolutions see past the picture's edge: ``zeros`` (torchvision's, the seed's), ``replicate``
    (every convolution repeats its input's edge) or ``replicate-first`` (only conv1_1, as crowsonkb's
    style-transfer-pytorch, "to reduce edge artifacts"): a zero border reads as a dark frame, which
    the style term then paints. The weights are the same either way.
    """
    if arch not in CONFIGS:
        raise InputError(f"unknown network {arch!r}; choose one of: {', '.join(CONFIGS)}")
    if padding not in PADDINGS:
        raise InputError(f"unknown padding {padding!r}; choose one of: {', '.join(PADDINGS)}")
    modules: list[nn.Module] = []
    channels = 3
    for item in CONFIGS[arch]:
        if item == "M":
            modules.append(nn.MaxPool2d(2, 2))
        else:
            first = channels == 3
            mode = "replicate" if padding == "replicate" or (padding == "replicate-first" and first) else "zeros"
            modules += [nn.Conv2d(channels, int(item), 3, padding=1, padding_mode=mode), nn.ReLU(inplace=False)]
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
        padding: str = "zeros",
    ) -> None:
        super().__init__()
        if arch not in CONFIGS:
            raise InputError(f"unknown network {arch!r}; choose one of: {', '.join(CONFIGS)}")
        self.arch = arch
        names = layer_names(arch)
        self.taps = check_layers(arch, taps)
        depth = max(names.index(t) for t in self.taps) + 1
        self.names = names[:depth]
        # Nothing past the deepest tap is built: its work would be wasted. The layers' own random
        # initialisation draws from a forked stream, so building a network leaves the caller's alone.
        with torch.random.fork_rng(devices=[]):
            self.features = build_features(arch, depth, padding)
        self.padding = padding
        if state_dict is not None:
            load_features(self.features, state_dict)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()
        self.recompute_above = RECOMPUTE_ABOVE_PIXELS
        # Arithmetic of evaluations that need a gradient (see resolve_precision); float32 by default.
        self.compute_dtype = torch.float32
        self._low: tuple[tuple[torch.dtype, torch.device], nn.Sequential] | None = None

    @property
    def min_size(self) -> int:
        """Smallest image side that still leaves every tap at least one pixel."""
        return min_side(self.arch, self.taps)

    def forward(self, image: torch.Tensor, recompute: bool | None = None) -> dict[str, torch.Tensor]:
        """Map an RGB batch in ``[0, 1]``, shape ``(B, 3, H, W)``, to ``{tap: activation}``.

        An image that needs a gradient keeps only the taps for the backward and recomputes the rest
        where ``recompute`` says so (the objective decides it by the memory free:
        :func:`painterly.tiling.choose_recompute`), or where it is None above ``recompute_above`` pixels.

        Taps come back in the arithmetic they were computed in: ``compute_dtype`` for an image being
        optimised (see :func:`resolve_precision`), the image's own dtype otherwise. The objective
        reads bfloat16 taps directly (casting them to float32 copies cost ~15 % of an evaluation).
        """
        x = (image - self.mean) / self.std
        features = self.features
        small = x.shape[-2] * x.shape[-1] < LOW_PRECISION_MIN_PIXELS
        if x.requires_grad and self.compute_dtype != x.dtype and not small:
            # Only an image being optimised is evaluated in the lower precision: targets, normalisers
            # and scores (all computed without gradients) stay exact.
            features = self._features_in(self.compute_dtype)
            x = x.to(self.compute_dtype)
        if features[0].weight.is_contiguous(memory_format=torch.channels_last):
            # A channels-last network wants channels-last input (faster oneDNN/cuDNN kernels).
            x = x.contiguous(memory_format=torch.channels_last)
        wanted = set(self.taps)
        if recompute is None:
            recompute = x.shape[-2] * x.shape[-1] > self.recompute_above
        if x.requires_grad and recompute:
            out, _ = run_recomputing(features, self.names, x, wanted)
        else:
            out = {}
            for name, module in zip(self.names, features):
                x = module(x)
                if name in wanted:
                    out[name] = x
        return out

    def _features_in(self, dtype: torch.dtype) -> nn.Sequential:
        """A copy of the stack in ``dtype`` (made once, remade if the network moved)."""
        key = (dtype, self.features[0].weight.device)
        if self._low is None or self._low[0] != key:
            self._low = (key, copy.deepcopy(self.features).to(dtype))
        return self._low[1]


def run_recomputing(
    modules: nn.Sequential, names: Sequence[str], x: torch.Tensor, taps: set[str], through_end: bool = False
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run ``modules`` (the first ``len(names)`` of them, named ``names``) keeping only the ``taps``
    (and, with ``through_end``, the last one's output, returned beside them): each stretch between
    two kept outputs is re-run in the backward.

    A tap's own ReLU runs outside its stretch: its output is kept anyway (it is the tap), so the
    stretch's last convolution never has to be re-run and the backward holds no second copy of it.
    """
    out: dict[str, torch.Tensor] = {}
    start, last = 0, len(names) - 1
    for end, name in enumerate(names):
        if name not in taps and not (through_end and end == last):
            continue
        stop = end if isinstance(modules[end], nn.ReLU) else end + 1
        if stop > start:
            x = checkpoint(_run, modules[start:stop], x, use_reentrant=False)
        for module in modules[stop : end + 1]:
            x = module(x)
        if name in taps:
            out[name] = x
        start = end + 1
    return out, x


def _run(modules: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    return modules(x)


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The arithmetic for evaluations of the image being optimised.

    ``auto`` is bfloat16 on a CPU with AMX tiles (matrix units that multiply bfloat16 ~7x faster
    than float32): there a 512 px vgg16-hed evaluation takes 0.6 instead of 1.7 CPU-seconds and
    L-BFGS follows the float32 loss curve to within 1 % over 300 evaluations (BENCHMARKS.md).
    Elsewhere, and on GPUs, float32.
    """
    if name not in PRECISIONS:
        raise InputError(f"unknown precision {name!r}; choose one of: {', '.join(PRECISIONS)}")
    if name == "auto":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        return torch.bfloat16 if device.type == "cpu" and amx() else torch.float32
    return getattr(torch, name)


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


def build_network(s: Settings, device: torch.device, dtype: torch.dtype) -> VGGFeatures:
    """The frozen, truncated network resolved settings ``s`` ask for, on ``device``, evaluating the
    image being optimised in ``dtype`` (see :func:`resolve_precision`).

    The last few built are kept for the process, so a batch, the studio or a video builds each
    network once (rebuilding one took 0.4-0.9 s per item, BENCHMARKS.md's batch section). A network
    is frozen and holds no state of a run, so runs one after another can share it.
    """
    taps = tuple(dict.fromkeys([s.content_layer, *s.style_layers]))
    seed = s.seed if s.weights == "random" else 0
    return _built(s.model, s.model_defaults().arch, s.weights, seed, taps, str(device), dtype, s.padding)


@functools.lru_cache(maxsize=2)
def _built(model: str, arch: str, weights: str | None, seed: int, taps: tuple[str, ...], device: str,
           dtype: torch.dtype, padding: str = "zeros") -> VGGFeatures:  # fmt: skip
    net = VGGFeatures(arch, taps, cached_weights(model, weights, seed), padding)
    net.compute_dtype = dtype
    return net.to(torch.device(device)).to(memory_format=torch.channels_last)


def cached_weights(model: str, weights: str | None, seed: int) -> dict[str, torch.Tensor]:
    """:func:`painterly.weights.load_weights`, kept for the process: a batch, the studio and the
    experiments load a model once. The seed only matters for ``weights="random"``: real weights
    are one entry whatever the seed (they are 548 MB for VGG19)."""
    return _cached_weights(model, weights, seed if weights == "random" else 0)


@functools.lru_cache(maxsize=2)
def _cached_weights(model: str, weights: str | None, seed: int) -> dict[str, torch.Tensor]:
    from .weights import load_weights

    return load_weights(model, weights, seed=seed)
