"""An exact tiled evaluation: any picture size in memory set by the tile, not the picture.

Why it is exact
---------------
Once the Gram matrices G are known, the style term's gradient with respect to a layer's features
is local: for G = Σ_p (m_p F_p)(m_p F_p)ᵀ (m the guide mask, 1 without one),
dL/dF_p = m_p² (dL/dG + dL/dGᵀ) F_p; the content term's is 2 (F_p − P_p) / N. So an evaluation
runs in two passes over tiles whose *cores* partition the image:

1. features of each tile (no gradient) give, over the tile's core positions only, the sums that
   make up every G and the content term's Σ (F − P)²; the terms and dL/dG follow, whole;
2. each tile's forward is run again with a gradient, and its core features are back-propagated
   with the now-fixed dL/dF; the tiles' input gradients, scatter-*added* into the image's gradient
   (tiles overlap in their halos), are the untiled gradient, since dL/dx = Σ_p J_p(x)ᵀ dL/dF_p and
   every core position p is in exactly one tile, whose input holds all of F_p's receptive field.

Total variation and everything else per pixel stays whole-image (it is cheap).

The halo, worked out
--------------------
A feature at a layer of stride s (2 per max-pool before it) *covers* the image pixels
[s·i, s·i + s). A 3×3 convolution (padding 1) applied at stride s widens what a feature depends on
by s pixels on each side; a 2×2 max-pool of stride 2 does not widen it (the two cells it joins
are the new cell). So a feature's receptive field reaches L = Σ (stride of each convolution up
to it) pixels past its cell on each side: for VGG16's relu5_3 L = 2·1 + 2·2 + 3·4 + 3·8 + 3·16 =
90 px, for VGG19's relu5_4 L = 2 + 4 + 16 + 32 + 64 = 118 px, for relu3_3 (VGG16) 18 px.
A tile's input is its core widened by a halo h ≥ L (clipped at the picture's edge, where the
network's zero padding is the picture's own), with every tile origin a multiple of the deepest
stride S so the pools pair the same pixels as in the whole picture: h = L rounded up to a
multiple of S (96 px for vgg16 to relu5_3). Then no core feature reads a padded or missing value
of any layer: a layer-k feature it depends on covers pixels ≥ core − (L − L_k) ≥ input start + L_k.
Only one receptive-field radius is needed (not two) because the input gradients are added, not
cropped. ``tests/test_tiling.py`` checks the gradient with this halo and that one stride less breaks it.

Trimming the halo layer by layer
--------------------------------
The halo is what the *input* needs; a layer k deep needs less: a core feature depends on layer-k
features up to L − L_k pixels past its cell (L_k the reach through layer k). So before each
convolution the tile's activation is cropped to the core widened by R = L − L_k (the reach through
the module before it), rounded up to a multiple of the deepest stride S while a pool is still to
come (so every crop's origin stays a multiple of S and the pools pair the same cells) and to one
cell after the last pool; clipped at the tile's input. Nothing a core feature depends on is cropped
away, and a value the cropped convolution computes from padding at the crop's edge is at least one
cell of reach further out than any core feature reads. For VGG16 to relu5_3 (L = 90, S = 16) the
crops start before conv3_2 (80 px) and end before conv5_3 (16 px); block 1 and 2 keep the whole
96 px halo. :meth:`Tiler.core` knows each layer's window; ``tests/test_tiling.py`` checks the
gradient with the crops and that cropping one cell more breaks it.

Tiling only the early blocks
----------------------------
With ``depth`` set, only the network's first ``depth`` modules are tiled: pass 1 also assembles
their output whole (at its stride) and the deeper modules run on it whole, with autograd as
usual; the gradient they hand back to that output joins pass 2 at each tile's core. The halo is
then that of the head only (24 px to pool3 in VGG16). :data:`TILE_DEPTH` is what the benchmark chose.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .device import large_blocks_returned, release_freed
from .network import VGGFeatures, run_recomputing

# Tiles are this many pixels on a side (their cores) unless --tile says otherwise. 896 rather than
# 1024: a 4096x3072 picture's largest tile input is 1.17 MP instead of 1.48 (16 tiles, not 12), its
# working set ~0.36 GiB smaller, for 1.354 instead of 1.283 pixels of tile input per picture pixel
# (+5.5 % by count; BENCHMARKS.md, "Print size, fourth session").
DEFAULT_TILE = 896

# The module after which tiling stops (None: the whole network is tiled); see the module docstring
# and BENCHMARKS.md ("Print size") for the measurement that chose it.
TILE_DEPTH: str | None = None

# When a grid's largest tile input exceeds this many pixels, every tile of it keeps only its taps
# for the backward and recomputes the rest (as the untiled network does above
# RECOMPUTE_ABOVE_PIXELS): the tile's working set is what the picture's size does not pay for;
# BENCHMARKS.md ("Print size") measures it. Every tile, not only those over the line: a tile that
# keeps everything needs ~2.1 KB per input pixel against ~1.23 recomputing, so with 896 px cores a
# 4096x3072 picture's 0.98 MP corner tiles, kept whole, outweighed its 1.17 MP tiles recomputing
# (BENCHMARKS.md, "Print size, fourth session").
TILE_RECOMPUTE_ABOVE = 1_000_000

# Pass 2 starts with the tile pass 1 ended with, from the graph pass 1 kept (one forward fewer), and
# an unmasked Gram's backward is one channels-last product in the features' precision; both can be
# turned off only for benchmarks.tiling, which measures what each saves.
KEEP_LAST_TILE = True
CHANNELS_LAST_GRAM = True
# How many of pass 1's last tiles keep their graph for pass 2 (with KEEP_LAST_TILE): each saves a
# tile's forward (2048 px, 4 tiles: keeping 2 measured -5.4 %, 4 -9.6 %) and holds its graph until
# pass 2 reaches it. None (the default): as many as the memory budget holds, up to KEEP_MAX
# (:func:`choose_keep`; BENCHMARKS.md, "Print size, eighth session"); a number fixes it (only
# benchmarks.tiling and the tests set one).
KEEP_TILES: int | None = None
KEEP_MAX = 4

# Each tile's activations are cropped, before a convolution, to its core widened by the reach the
# layers still to come need (rounded up to the deepest stride while a pool is still to come, so the
# pools pair the whole picture's cells; to one cell after the last): the deep layers do not compute
# the whole halo (see "Trimming the halo layer by layer" above). Off only for benchmarks.tiling.
TRIM_HALO = True

# A tiled evaluation's cost relative to an untiled one that keeps everything (the time model's
# factor, painterly.api.time_model): measured 1.62x an untiled 2048 px evaluation, which itself
# recomputes (network.RECOMPUTE_COST, counted); BENCHMARKS.md, "Print size, third session".
TILED_COST = 1.62 * 1.25

# Pictures of more than this many pixels (at a scale) keep a float32 content target in float16: at
# relu3_3 it is 64 B per picture pixel in float32, the largest whole-picture buffer (3 GiB at 8192x6144;
# BENCHMARKS.md, "Print size, fifth session"). Decided by the size alone, so a tiled and an untiled
# evaluation of one picture compare with the same target. float16, not bfloat16: its 11-bit mantissa
# rounds the target by at most 2^-11 relative, and vgg16-hed's relu3_3 peaks at ~620 on the shipped
# images and ~1300 on a 2 px checkerboard, far under float16's 65504.
HALF_TARGET_ABOVE = 16_000_000

# A tiled scale of more than this many picture pixels keeps no content target at all: each tile's
# target is recomputed from the content image's crop (the same float32 forward to the content layer
# that built the stored one, so the same values bit for bit), once in pass 1 and once in pass 2.
# It saves the whole target (32 B per picture pixel in float16/bfloat16: 1.5 GiB at 8192x6144) for
# two forwards to relu3_3 per tile and evaluation (BENCHMARKS.md, "Print size, sixth session").
RECOMPUTE_TARGET_ABOVE = 32_000_000
# What recomputing the target costs, a tiled evaluation's time with it over without (2048 px, 896 px
# tiles recomputing, the threshold forced; the fastest of 2 rounds each, interleaved): 1.57x with a
# bfloat16 network (its target's forward stays float32, ~4x slower per pixel there), 1.25x float32.
RECOMPUTE_TARGET_COST = {torch.bfloat16: 1.57, torch.float32: 1.25}


def content_target_dtype(dtype: torch.dtype, pixels: int) -> torch.dtype:
    """The content target's storage for features of ``dtype`` at a scale of ``pixels`` picture pixels:
    float16 for a float32 target over :data:`HALF_TARGET_ABOVE` pixels, else ``dtype``."""
    return torch.float16 if dtype == torch.float32 and pixels > HALF_TARGET_ABOVE else dtype


# Peak bytes per output pixel of an untiled run (vgg16-hed, bfloat16, the network recomputing above
# 1.5 MP): 2048x1536 peaks at 5.93 GiB, 4096x3072 at 14.5 GiB over its final scale alone
# (BENCHMARKS.md, "Peak memory by output size"), about 2000 B/px at 2048 px. A whole default 4096x3072
# run peaks higher: 21.39 GiB of RSS (the 2896 and 4096 px scales untiled, after eight scales' heap;
# BENCHMARKS.md, "Print size, eleventh session"). The estimate (untiled_peak_bytes) is the smaller of
# 2000 B/px and the line through the two full-run bounds (7.26 GiB at 2048x1536, 21.39 GiB at
# 4096x3072): 2.55 GiB + 1608 B/px, the lower from ~7 MP. (Until the eleventh session the second
# point was 15.58 GiB, a bound from the final scale's peak, and a 4096 px scale chose to run whole on
# an estimate 27 % short of what it used.)
UNTILED_BYTES_PER_PIXEL = 2000
UNTILED_LARGE_BASE_BYTES = int(2.55 * 2**30)
UNTILED_LARGE_BYTES_PER_PIXEL = 1608
# Without --memory-budget, tiling switches on when that estimate exceeds this share of the memory
# available: a tiled evaluation costs 1.5x an untiled one at 2048x1536 in bfloat16 on an AMX CPU (2.5-2.7x
# until the twelfth session mended its layout mismatches; 1.4x in float32 elsewhere), so a picture that
# fits runs whole. At 0.5 (before the tenth
# session) a 4096x3072 default run tiled its last two scales and took 57 min; BENCHMARKS.md, "Print
# size, tenth session".
UNTILED_SHARE = 0.8
# The share of the memory available that kept tiles' graphs may take (choose_keep; and the tiled scales'
# default limit beside print_limit_bytes).
AUTO_SHARE = 0.5


def untiled_peak_bytes(pixels: int) -> int:
    """The estimated peak of an untiled scale of ``pixels`` picture pixels (see
    :data:`UNTILED_BYTES_PER_PIXEL`)."""
    return min(pixels * UNTILED_BYTES_PER_PIXEL, UNTILED_LARGE_BASE_BYTES + pixels * UNTILED_LARGE_BYTES_PER_PIXEL)


# An untiled evaluation that keeps every activation for its backward peaks at up to this many times
# the estimate of one that recomputes them (untiled_peak_bytes): 6.98 against 4.24 GiB at 2048x1536 in
# float32 (1.65x), 5.32 against 4.41 GB in bfloat16 (1.21x); BENCHMARKS.md, "Print size, eleventh session".
KEEP_ALL_FACTOR = 1.7


def untiled_limit(device: torch.device, budget: float | None = None) -> float:
    """The bytes an untiled evaluation may peak at: ``budget`` GiB (--memory-budget), or without one
    :data:`UNTILED_SHARE` of the memory available."""
    return budget * GIB if budget is not None else UNTILED_SHARE * available_bytes(device)


def choose_recompute(size: tuple[int, int], device: torch.device, *, budget: float | None = None) -> bool:
    """Whether an untiled evaluation at (height, width) ``size`` recomputes its activations in the
    backward: above :data:`~painterly.network.RECOMPUTE_ABOVE_PIXELS` pixels, unless keeping them all
    (:data:`KEEP_ALL_FACTOR` x :func:`untiled_peak_bytes`) fits the memory budget (``budget`` GiB, or
    :data:`UNTILED_SHARE` of the memory available). Recomputing costs time (a 1448x1086 evaluation
    1.4x, a 2048x1536 one 1.1x the time of keeping everything, fastest of three in bfloat16; medians
    1.5x: BENCHMARKS.md, "Print size, thirteenth session"), so a picture whose activations fit keeps them."""
    from .network import RECOMPUTE_ABOVE_PIXELS

    pixels = size[0] * size[1]
    if pixels <= RECOMPUTE_ABOVE_PIXELS:
        return False
    limit = untiled_limit(device, budget)
    return KEEP_ALL_FACTOR * untiled_peak_bytes(pixels) > limit


def recompute_for(settings, size: tuple[int, int], device: torch.device) -> bool:
    """:func:`choose_recompute` for a scale of a run with these resolved settings (its --memory-budget)."""
    return choose_recompute(size, device, budget=settings.memory_budget)


def conv_reach(names: Sequence[str], upto: int) -> tuple[int, int]:
    """(L, S): receptive-field reach in pixels and stride of module ``upto`` (inclusive) of a VGG stack."""
    reach, stride = 0, 1
    for name in names[: upto + 1]:
        if name.startswith("conv"):
            reach += stride
        elif name.startswith("pool"):
            stride *= 2
    return reach, stride


def halo_for(names: Sequence[str], upto: int) -> tuple[int, int]:
    """(halo, alignment) for tiling modules ``0..upto``: the reach rounded up to the stride."""
    reach, stride = conv_reach(names, upto)
    return stride * math.ceil(reach / stride), stride


def release_tile(device: torch.device) -> None:
    """After each tile of a tiled evaluation, hand what it freed back to the system before the next
    (:func:`painterly.device.release_freed`), where the painterly command keeps freed memory for reuse
    (:func:`painterly.device.reuse_freed_memory`: without the trims a 4096x3072 run's RSS ratcheted to
    7 GiB of mostly free heap). A library call (:func:`painterly.stylize`) leaves malloc alone: there
    glibc maps a tile's large blocks for themselves and returns them on free (BENCHMARKS.md, "Print
    size, twelfth session")."""
    release_freed(device)


def available_bytes(device: torch.device) -> int:
    """Memory a run may use on ``device``: free GPU memory, or the machine's MemAvailable once this
    process has handed back what it freed (:func:`painterly.device.release_freed`). Without that, a
    default 4096 px run whose untiled 2896 px scale left its heap behind tiled its 4096 px scale, at
    ~3x the time of an untiled one; counting the kept heap as free instead let the scale run untiled
    but peak at 21.3 GB, the old blocks fitting the new sizes poorly (BENCHMARKS.md, "Print size,
    tenth session")."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    release_freed(device)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


# The memory model of a tiled scale (BENCHMARKS.md, "Print size, fourth to sixth session"): peak RSS =
# TILED_BASE_BYTES + P · (whole-picture bytes per pixel) + (T + K) · (bytes per tile input pixel), P the
# picture's pixels, T its grid's largest tile input, K the input pixels of the tiles whose graphs pass 1
# keeps for pass 2 but the one pass 2 starts with (0 keeping one; eighth session). The tile term per
# network arithmetic: float32 fitted at 4096x3072 (fourth session), bfloat16 at 8192x6144 (sixth
# session, the first evaluation).
TILED_BASE_BYTES = int(0.58 * 2**30)  # the network and libraries, and RSS over live at the peak
# Whole-picture buffers per pixel without the optimiser's: x, the last good image, the content image,
# the gradient (4 RGB float32 images, 48 B) and ~5 B not accounted buffer by buffer (it was ~17 until
# total variation's gradient, 12 B, stopped waiting beside pass 2: sixth session); the relu3_3 content
# target (64 B float32, 32 float16/bfloat16, 0 recomputed per tile) and the optimiser's state come on top.
WHOLE_BYTES_PER_PIXEL = 53
TARGET_BYTES_PER_PIXEL = 64
# per tile input pixel, recomputing (the ReLU outside): float32 1.10 KB (fourth session's fit), bfloat16
# 0.56 KB (sixth session's, about half: its activations are half the bytes)
TILE_RECOMPUTING_BYTES = {torch.float32: 1100, torch.bfloat16: 560}
TILE_KEEPING_BYTES = 2100  # per tile input pixel, a tile that keeps everything (third session's ~2.1 KB)
ADAM_STEP_BYTES = 24  # Adam's step's temporaries per pixel (two RGB float32 images)
# The smallest tile the memory budget rule picks (its halo of 96 px makes a 256 px core a 448 px tile,
# 3x the pixels: smaller tiles cost more time than they save memory).
MIN_AUTO_TILE = 256
AUTO_TILE_STEP = 64
HALO = 96  # vgg16's to relu5_3, the default model's (VGG19's is 128: the model then errs a little low)
GIB = 2**30


def tiled_peak_bytes(size: tuple[int, int], tile: int, optimizer: str = "adam", history_size: int = 20,
                     halo: int = HALO, align: int = 16, dtype: torch.dtype = torch.float32,
                     keep: int = 1) -> int:  # fmt: skip
    """The memory model's peak of a scale at (height, width) ``size`` in tiles of ``tile`` px for a
    network computing in ``dtype``, pass 1 keeping the graphs of its last ``keep`` tiles for pass 2:
    see :data:`TILED_BASE_BYTES`. The optimiser's state is Adam's two moments (24 B per pixel), or
    L-BFGS's history pairs and its direction and previous gradient (L-BFGS's count, not measured
    here). Each kept graph but the one pass 2 starts with is held beside the largest tile's working
    set, counted at a working set of its own (its input pixels x the tile bytes): an upper bound,
    since a held graph has not yet made its backward's gradients."""
    from .optimize import history_at, optimizer_at

    pixels = size[0] * size[1]
    half = dtype in (torch.bfloat16, torch.float16) or content_target_dtype(torch.float32, pixels) == torch.float16
    target = TARGET_BYTES_PER_PIXEL // (2 if half else 1)
    target = 0 if pixels > RECOMPUTE_TARGET_ABOVE else target  # recomputed tile by tile, not kept
    if optimizer_at(optimizer, 3 * pixels, 4, history_size) == "adam":
        state = 24
    else:
        state = 12 * (2 * max(1, history_at(history_size, 3 * pixels)) + 2)
    inputs = [_pixels(t) for t in tiles(size[0], size[1], tile, halo, align)]
    largest = max(inputs)
    recomputing = TILE_RECOMPUTING_BYTES.get(dtype, TILE_RECOMPUTING_BYTES[torch.float32])
    keeping = TILE_KEEPING_BYTES * recomputing // TILE_RECOMPUTING_BYTES[torch.float32]  # (counted)
    per_tile = recomputing if largest > TILE_RECOMPUTE_ABOVE else keeping
    held = sum(inputs[len(inputs) - min(keep, len(inputs)) : -1])  # the kept tiles but the last, pixels
    tiles_phase = (TILED_BASE_BYTES + pixels * (WHOLE_BYTES_PER_PIXEL + target + state)
                   + (largest + held) * per_tile)  # fmt: skip
    # Adam's step, between evaluations (no tile memory then): the four images, the target, the moments
    # and the step's two image-sized temporaries (sqrt of the second moment, its quotient): 8192x6144
    # bfloat16 peaked there, 5.04 GiB against 5.08 counted (BENCHMARKS.md, "Print size, sixth session").
    step_phase = TILED_BASE_BYTES + pixels * (48 + target + state + (ADAM_STEP_BYTES if state == 24 else 0))
    return max(tiles_phase, step_phase)


def choose_tile(tile: int | None, size: tuple[int, int], device: torch.device, *, budget: float | None = None,
                optimizer: str = "adam", history_size: int = 20,
                dtype: torch.dtype = torch.float32) -> int | None:  # fmt: skip
    """The tile side for an evaluation at (height, width) ``size``: ``tile`` if given (0: off), else
    ``None`` (untiled) when the untiled estimate fits the memory budget (``budget`` GiB; default:
    :data:`UNTILED_SHARE` of the memory available), else :data:`DEFAULT_TILE`, or with a ``budget`` the
    largest tile up to :data:`DEFAULT_TILE` whose modelled peak (:func:`tiled_peak_bytes`) fits it,
    never below :data:`MIN_AUTO_TILE`: a ``budget`` that not even that fits is an
    :class:`~painterly.errors.InputError`. (Without a budget the tile stays today's: smaller tiles
    cost time, and the share left to the machine is a guess, not a limit the user asked for.)"""
    if tile is not None:
        return tile or None
    pixels = size[0] * size[1]
    limit = untiled_limit(device, budget)
    if untiled_peak_bytes(pixels) <= limit:
        return None
    if budget is None:
        return DEFAULT_TILE
    least = None
    for side in range(DEFAULT_TILE, MIN_AUTO_TILE - 1, -AUTO_TILE_STEP):
        peak = tiled_peak_bytes(size, side, optimizer, history_size, dtype=dtype)
        if peak <= limit:
            return side
        least = peak if least is None else min(least, peak)
    from .errors import InputError

    raise InputError(f"a {size[1]}x{size[0]} scale needs about {least / GIB:.1f} GiB even in tiles "
                     f"(modelled), over --memory-budget {budget:g}; raise it or paint smaller")  # fmt: skip


def tile_for(settings, size: tuple[int, int], device: torch.device) -> int | None:
    """:func:`choose_tile` for a scale of (height, width) ``size`` of a run with these resolved
    :class:`~painterly.config.Settings` (its --tile, --memory-budget, optimizer and history)."""
    from .network import resolve_precision

    s = settings
    return choose_tile(s.tile, size, device, budget=s.memory_budget, optimizer=s.optimizer,
                       history_size=s.history_size, dtype=resolve_precision(s.precision, device))  # fmt: skip


def print_limit_bytes(pixels: int) -> int:
    """The issue's peak targets, 4 GiB at 4096x3072 and 8 GiB at 8192x6144, as a line for every size:
    4 GiB x sqrt(pixels / 4096x3072) (2 GiB at 2048x1536). Without --memory-budget a tiled scale keeps
    more tiles' graphs only within it (and within :data:`AUTO_SHARE` of the memory available)."""
    return int(4 * GIB * math.sqrt(pixels / (4096 * 3072)))


def choose_keep(size: tuple[int, int], tile: int, device: torch.device, *, budget: float | None = None,
                optimizer: str = "adam", history_size: int = 20,
                dtype: torch.dtype = torch.float32) -> int:  # fmt: skip
    """How many of pass 1's last tiles keep their graph for pass 2 at a scale of (height, width)
    ``size`` in tiles of ``tile`` px: the most, up to :data:`KEEP_MAX` and the grid's tiles, whose
    modelled peak (:func:`tiled_peak_bytes`) fits the limit, at least 1 (today's, whatever the limit:
    the tile itself was chosen to fit with one). The limit is ``budget`` GiB (--memory-budget), or
    without one the smaller of :data:`AUTO_SHARE` of the memory available and
    :func:`print_limit_bytes`. A kept graph only adds to the tiles' phase, so where Adam's step
    between evaluations is the peak, graphs up to it cost no peak memory."""
    if budget is not None:
        limit = budget * GIB
    else:
        limit = min(AUTO_SHARE * available_bytes(device), print_limit_bytes(size[0] * size[1]))
    count = len(list(tiles(size[0], size[1], tile, HALO, 16)))
    keep = 1
    for k in range(2, min(KEEP_MAX, count) + 1):
        if tiled_peak_bytes(size, tile, optimizer, history_size, dtype=dtype, keep=k) > limit:
            break
        keep = k
    return keep


def keep_for(settings, size: tuple[int, int], device: torch.device, tile: int) -> int:
    """:func:`choose_keep` for a scale of a run with these resolved settings, tiled in ``tile`` px
    (or :data:`KEEP_TILES` where a benchmark or a test fixed it)."""
    from .network import resolve_precision

    if KEEP_TILES is not None:
        return KEEP_TILES
    s = settings
    return choose_keep(size, tile, device, budget=s.memory_budget, optimizer=s.optimizer,
                       history_size=s.history_size, dtype=resolve_precision(s.precision, device))  # fmt: skip


@dataclass(frozen=True)
class Tile:
    """One tile: its input rows/columns (with halo) and its core rows/columns, in image pixels."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    core_rows: tuple[int, int]
    core_cols: tuple[int, int]


def _cuts(length: int, parts: int, align: int) -> list[tuple[int, int]]:
    """``length`` cut into ``parts`` cores of equal side rounded up to ``align`` (the last one shorter)."""
    step = align * max(1, math.ceil(length / parts / align))
    return [(a, min(length, a + step)) for a in range(0, length, step)]


def grid(
    height: int, width: int, tile: int, halo: int, align: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Row and column cuts of the cores: no core larger than ``tile``² pixels, and of all such grids
    the one whose tiles (cores widened by ``halo``, clipped at the picture's edge) hold the fewest
    pixels: a 2048x1536 picture with ``tile`` 1024 is cut in 3 full-width strips (3.9 MP of tile
    inputs), not 4 squares (the old grid's; 3.9 MP too, but 4 tiles), and a picture that fits one
    tile is one tile."""
    budget = tile * tile
    best = None
    for rows in range(1, math.ceil(height / align) + 1):
        r = _cuts(height, rows, align)
        side = r[0][1] - r[0][0]
        if side * min(width, align) > budget:
            continue
        cols = max(1, math.ceil(width / max(align, (budget // side) // align * align)))
        c = _cuts(width, cols, align)
        if side * (c[0][1] - c[0][0]) > budget:
            continue
        rin = sum(min(height, b + halo) - max(0, a - halo) for a, b in r)
        cin = sum(min(width, b + halo) - max(0, a - halo) for a, b in c)
        cost = rin * cin
        if best is None or cost < best[0]:
            best = (cost, r, c)
        if len(r) * len(c) > 4096:
            break
    if best is None:  # a tile smaller than one aligned cell: cells
        return _cuts(height, math.ceil(height / align), align), _cuts(width, math.ceil(width / align), align)
    return best[1], best[2]


def tiles(height: int, width: int, tile: int, halo: int, align: int) -> Iterator[Tile]:
    """Cores of at most ``tile``² pixels (see :func:`grid`) covering the picture, each widened by ``halo``."""
    rows, cols = grid(height, width, tile, halo, align)
    for r0, r1 in rows:
        for c0, c1 in cols:
            yield Tile((max(0, r0 - halo), min(height, r1 + halo)), (max(0, c0 - halo), min(width, c1 + halo)),
                       (r0, r1), (c0, c1))  # fmt: skip


def _pixels(t: Tile) -> int:
    return (t.rows[1] - t.rows[0]) * (t.cols[1] - t.cols[0])


class Tiler:
    """Runs a :class:`VGGFeatures` tile by tile: see the module docstring."""

    def __init__(self, net: VGGFeatures, tile: int, depth: str | None = TILE_DEPTH) -> None:
        self.net, self.tile = net, tile
        names = net.names
        self.head = len(names) if depth is None or depth not in names[:-1] else names.index(depth) + 1
        self.halo, self.align = halo_for(names, self.head - 1)
        self.strides = {name: conv_reach(names, i)[1] for i, name in enumerate(names)}
        self.recompute = False  # set by tiles(), for the grid it cut last
        self.keep = 1  # pass 1's last tiles whose graphs pass 2 reuses (the objective sets it: keep_for)
        # Halo trimming (module docstring): the margin (px) each convolution's input is cropped to
        # past the core, by module index; and each module's output window margin (None: the input's).
        self.crops: dict[int, int] = {}
        self.margin: dict[str, int | None] = {}
        reach = conv_reach(names, self.head - 1)[0]
        current = self.halo
        for k, name in enumerate(names[: self.head]):
            if k and name.startswith("conv"):
                need, stride = reach - conv_reach(names, k - 1)[0], conv_reach(names, k - 1)[1]
                unit = self.align if any(n.startswith("pool") for n in names[k : self.head]) else stride
                m = unit * math.ceil(need / unit)
                if m < current:
                    self.crops[k], current = m, m
            self.margin[name] = None if current == self.halo else current

    @property
    def target_dtype(self) -> torch.dtype:
        """The content target's storage: the arithmetic the optimised image's features come in (a
        bfloat16 network's features are compared with a bfloat16 target, half the memory of a
        float32 one: 1.5 GiB instead of 3 at relu3_3 of an 8192x6144 picture); float32 otherwise."""
        low = self.net.compute_dtype
        return low if low in (torch.bfloat16, torch.float16) else torch.float32

    @property
    def split(self) -> bool:
        return self.head < len(self.net.names)

    def modules(self, low: bool) -> nn.Sequential:
        net = self.net
        return net._features_in(net.compute_dtype) if low and net.compute_dtype != torch.float32 else net.features

    def tiles(self, height: int, width: int) -> list[Tile]:
        out = list(tiles(height, width, self.tile, self.halo, self.align))
        # Whether this grid's tiles recompute (run_head): all of them when its largest does.
        self.recompute = max(_pixels(t) for t in out) > TILE_RECOMPUTE_ABOVE
        return out

    def window(self, name: str, t: Tile) -> tuple[tuple[int, int], tuple[int, int]]:
        """The picture's rows and columns (px) that tile ``t``'s activation at ``name`` covers: the
        tile's input, or with the halo trimmed (:data:`TRIM_HALO`) its core widened by that layer's margin."""
        m = self.margin.get(name) if TRIM_HALO else None
        if m is None:
            return t.rows, t.cols
        return ((max(t.rows[0], t.core_rows[0] - m), min(t.rows[1], t.core_rows[1] + m)),
                (max(t.cols[0], t.core_cols[0] - m), min(t.cols[1], t.core_cols[1] + m)))  # fmt: skip

    def core(self, name: str, t: Tile) -> tuple[slice, slice]:
        """The slice of tile ``t``'s own activation at ``name`` that is its core."""
        s = self.strides[name]
        rows, cols = self.window(name, t)
        r, c = rows[0] // s, cols[0] // s
        return slice(t.core_rows[0] // s - r, t.core_rows[1] // s - r), slice(
            t.core_cols[0] // s - c, t.core_cols[1] // s - c
        )

    def full(self, name: str, t: Tile) -> tuple[slice, slice]:
        """The slice of the whole picture's activation at ``name`` that tile ``t``'s core is."""
        s = self.strides[name]
        return slice(t.core_rows[0] // s, t.core_rows[1] // s), slice(t.core_cols[0] // s, t.core_cols[1] // s)

    def layer_size(self, name: str, height: int, width: int) -> tuple[int, int]:
        s = self.strides[name]
        return height // s, width // s

    def _stack(self, mods: nn.Sequential, t: Tile | None) -> tuple[list[str], nn.Sequential]:
        """The head's names and modules for tile ``t``, with the crops of a trimmed halo between them."""
        names = list(self.net.names[: self.head])
        if t is None or not TRIM_HALO or not self.crops:
            return names, mods[: self.head]
        out_names, out_mods = [], []
        for k, (name, module) in enumerate(zip(names, mods)):
            if k in self.crops:
                before, now = self.window(names[k - 1], t), self.window(name, t)
                if now != before:
                    s = self.strides[name]
                    cut = [slice(a[0] // s - b[0] // s, None if a[1] == b[1] else a[1] // s - b[0] // s)
                           for a, b in zip(now, before)]  # fmt: skip
                    out_names.append("crop " + name)
                    out_mods.append(_Crop(*cut))
            out_names.append(name)
            out_mods.append(module)
        return out_names, nn.Sequential(*out_mods)

    def run_head(self, x: torch.Tensor, low: bool, taps: set[str], until: str | None = None,
                 tile: Tile | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:  # fmt: skip
        """The taps among the first ``head`` modules, and the head's output, for a tile in [0, 1]
        (``tile``'s input: its halo is trimmed layer by layer; without it nothing is cropped);
        with ``until`` (no gradient) the forward stops after that module (its output then last)."""
        net = self.net
        names, mods = self._stack(self.modules(low), tile)
        x = (x - net.mean) / net.std
        if low:
            x = x.to(mods[0].weight.dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        out = {}
        if x.requires_grad and (self.recompute or x.shape[-2] * x.shape[-1] > TILE_RECOMPUTE_ABOVE):
            # As the untiled network does above its size: keep only the taps (and the head's
            # output), re-run each stretch between them in the backward, each tap's ReLU outside its
            # stretch (BENCHMARKS.md, "Print size, fourth session").
            return run_recomputing(mods, names, x, taps, through_end=True)
        for name, module in zip(names, mods):
            x = module(x)
            if name in taps:
                out[name] = x
            if name == until:
                break
        return out, x

    def target_core(self, content: torch.Tensor, layer: str, t: Tile, dtype: torch.dtype) -> torch.Tensor:
        """The content target at tile ``t``'s core, recomputed from the ``content`` image: the float32
        forward of the tile's crop to ``layer`` that :meth:`features_by_core` runs, stored as ``dtype``."""
        with torch.no_grad():
            crop = content[..., t.rows[0] : t.rows[1], t.cols[0] : t.cols[1]]
            feats, _ = self.run_head(crop, False, {layer}, layer, tile=t)
            rs, cs = self.core(layer, t)
            return feats[layer][..., rs, cs].to(dtype)

    def run_tail(self, x: torch.Tensor, low: bool, taps: set[str]) -> dict[str, torch.Tensor]:
        mods = self.modules(low)
        out = {}
        for name, module in zip(self.net.names[self.head :], mods[self.head :]):
            x = module(x)
            if name in taps:
                out[name] = x
        return out

    @property
    def head_output(self) -> str:
        return self.net.names[self.head - 1]

    def assemble(self, assembled: torch.Tensor | None, x: torch.Tensor, t, height: int, width: int) -> torch.Tensor:
        """Put tile ``t``'s core of the head's output ``x`` in its place in the whole picture's (made
        on the first tile) and return that; the tail then runs on it whole."""
        if assembled is None:
            assembled = _empty_like_at(x, *self.layer_size(self.head_output, height, width))
        rows, cols = self.full(self.head_output, t)
        r, c = self.core(self.head_output, t)
        assembled[..., rows, cols] = x[..., r, c]
        return assembled

    def features_by_core(self, image: torch.Tensor, taps: Sequence[str], low: bool = False):
        """For each tile, ``(tile, {tap: core activation})`` of the taps in the head, no gradient;
        with a split, the tail's taps come last as one ``(None, {tap: whole activation})``."""
        taps = set(taps)
        names = self.net.names
        head_taps = {t for t in taps if names.index(t) < self.head}
        h, w = image.shape[-2:]
        assembled = None
        with torch.no_grad(), large_blocks_returned(image.device):
            for t in self.tiles(h, w):
                crop = image[..., t.rows[0] : t.rows[1], t.cols[0] : t.cols[1]]
                feats, x = self.run_head(crop, low, head_taps, tile=t)
                cores = {k: v[..., self.core(k, t)[0], self.core(k, t)[1]] for k, v in feats.items()}
                del feats
                yield t, cores
                del cores
                if self.split:
                    assembled = self.assemble(assembled, x, t, h, w)
                del x
                release_tile(image.device)
            if self.split:
                yield None, self.run_tail(assembled, low, taps - head_taps)


class _Crop(nn.Module):
    """A tile's activation cropped to the rows and columns its later layers still need."""

    def __init__(self, rows: slice, cols: slice) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.rows, self.cols]


def _empty_like_at(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """An uninitialised channels-last tensor like ``x`` at (height, width)."""
    shape = (x.shape[0], x.shape[1], height, width)
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is in a lower precision (float64 stays float64)."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def _positions_times(f: torch.Tensor, sym: torch.Tensor) -> torch.Tensor:
    """Σ_j f[b, j, p] sym[b, j, k] for features (B, K, h, w) and (B, K, K): the Gram's backward."""
    return torch.einsum("bjhw,bjk->bkhw", f, sym)


def _channels_last_times(f: torch.Tensor, sym: torch.Tensor) -> torch.Tensor:
    """:func:`_positions_times` for features ``f`` in their own dtype, computed as (H·W, K) @ (K, K)
    in channels-last layout (as :class:`painterly.objective._Gram`'s backward does)."""
    with torch.no_grad():
        f = f.detach().contiguous(memory_format=torch.channels_last)
        b, k, h, w = f.shape
        out = torch.empty_like(f, memory_format=torch.channels_last)
        rows, dst = f.permute(0, 2, 3, 1).reshape(b, h * w, k), out.permute(0, 2, 3, 1).view(b, h * w, k)
        torch.matmul(rows, sym.detach().to(f.dtype), out=dst)
    return out


class TiledEvaluation:
    """The content and style terms of an :class:`~painterly.objective.Objective`, evaluated tile by
    tile; :meth:`__call__` gives them as one tensor ``[content, style_1, ...]`` whose gradient with
    respect to the image is the untiled one (see the module docstring). With the W2 style loss the
    tiles also sum each head layer's Σ F·m² (its mean, unnormalised): that sum's gradient dμ, times m²,
    joins the Gram's at every core position."""

    def __init__(self, objective, tiler: Tiler, size: tuple[int, int]) -> None:
        from .objective import resize_mask

        self.obj, self.tiler = objective, tiler
        self.size = size
        names = tiler.net.names
        self.in_head = {n: names.index(n) < tiler.head for n in [objective.content_layer, *objective.style_layers]}
        # Guide masks at each head layer's resolution, once per scale (they do not change).
        self.masks: list[list[torch.Tensor | None]] = []
        for layer, targets in zip(objective.style_layers, objective.targets):
            at = tiler.layer_size(layer, *size)
            self.masks.append([None if t.mask is None else resize_mask(t.mask, at) for t in targets])

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return _Tiled.apply(image, self, image.requires_grad)

    def _wanted(self) -> tuple[bool, bool]:
        w = self.obj.weights
        return w.alpha > 0 and self.obj.has_content_target, w.beta > 0

    def _head_taps(self) -> set[str]:
        content, style = self._wanted()
        taps = {self.obj.content_layer} if content else set()
        if style:
            taps |= set(self.obj.style_layers)
        return {t for t in taps if self.in_head[t]}

    def first(self, image: torch.Tensor, low: bool):
        """Pass 1: the terms, dL/dG for the head's style layers, and the tail's graph if split."""
        from .objective import content_loss, gram_matrix, style_loss, wasserstein_loss

        obj, tiler = self.obj, self.tiler
        w2 = obj.style_loss == "wasserstein"
        msums: dict[tuple[int, int], torch.Tensor] = {}  # W2: Σ F·m² over positions, per (layer, target)
        use_content, use_style = self._wanted()
        head_taps = self._head_taps()
        h, w = image.shape[-2:]
        sums: dict[tuple[int, int], torch.Tensor] = {}
        content_sq = torch.zeros((), dtype=torch.float64, device=image.device)
        assembled = None
        kept: dict[Tile, tuple] = {}
        keep = (tiler.keep if KEEP_TILES is None else KEEP_TILES) if KEEP_LAST_TILE else 0
        all_tiles = tiler.tiles(h, w)
        for i, t in enumerate(all_tiles):
            crop = image[..., t.rows[0] : t.rows[1], t.cols[0] : t.cols[1]]
            target = None
            if obj.content_layer in head_taps:  # before the image tile's forward: one forward's memory at a time
                target = self._target(t)
            if low and i >= len(all_tiles) - keep and head_taps:
                # The last tiles' graphs are kept for pass 2, which starts with them: a forward fewer each.
                with torch.enable_grad():
                    x_in = crop.detach().clone().requires_grad_(True)
                    feats, x = tiler.run_head(x_in, low, head_taps, tile=t)
                kept[t] = (x_in, feats, x, target if obj.content_source is not None else None)
            else:
                feats = x = None  # the previous tile's taps go before this tile's forward
                if i:
                    release_tile(image.device)
                feats, x = tiler.run_head(crop, low, head_taps, tile=t)
            for li, layer in enumerate(obj.style_layers):
                if layer not in head_taps:
                    continue
                rs, cs = tiler.core(layer, t)
                core = feats[layer][..., rs, cs]
                full = tiler.full(layer, t)
                for ti, mask in enumerate(self.masks[li]):
                    f = core if mask is None else core * mask[..., full[0], full[1]]
                    g = gram_matrix(f)
                    sums[li, ti] = g if (li, ti) not in sums else sums[li, ti] + g
                    if w2:
                        mu = (_wide(f) if mask is None else _wide(f) * mask[..., full[0], full[1]]).sum((2, 3))
                        msums[li, ti] = mu if (li, ti) not in msums else msums[li, ti] + mu
            if obj.content_layer in head_taps:
                rs, cs = tiler.core(obj.content_layer, t)
                fr, fc = tiler.full(obj.content_layer, t)
                diff = _wide(feats[obj.content_layer][..., rs, cs]) - target
                content_sq += diff.double().pow(2).sum()
                del diff, target
            if tiler.split:
                assembled = tiler.assemble(assembled, x.detach(), t, h, w)
        zero = image.new_zeros(())
        values: list[torch.Tensor] = []
        tail_values: list[tuple[int, torch.Tensor]] = []  # (index in values, tensor with the tail's graph)
        leaf = None
        with torch.enable_grad() if low else torch.no_grad():
            if tiler.split:
                leaf = assembled.detach().requires_grad_(low)
                tail_taps = {n for n in [obj.content_layer, *obj.style_layers] if not self.in_head[n]}
                tail = tiler.run_tail(leaf, low, tail_taps)
            # Content.
            if not use_content:
                values.append(zero)
            elif self.in_head[obj.content_layer]:
                values.append((content_sq / obj.content_numel).to(image.dtype))
            else:
                v = content_loss(tail[obj.content_layer], _wide(obj.content_target))
                tail_values.append((0, v))
                values.append(v.detach())
            # Style, layer by layer.
            dgrams: dict[tuple[int, int], torch.Tensor] = {}
            dmeans: dict[tuple[int, int], torch.Tensor] = {}
            for li, (layer, targets) in enumerate(zip(obj.style_layers, obj.targets)):
                if not use_style:
                    values.append(zero)
                    continue
                if not self.in_head[layer]:
                    v = obj._layer_term(tail[layer], targets)
                    tail_values.append((1 + li, v))
                    values.append(v.detach())
                    continue
                lh, lw = tiler.layer_size(layer, h, w)
                area = lh * lw * obj.area_ratio
                leaves = [sums[li, ti].detach().requires_grad_(True) for ti in range(len(targets))]
                mleaves = [msums[li, ti].detach().requires_grad_(True) for ti in range(len(targets))] if w2 else []
                term = zero
                for ti, (tgt, g) in enumerate(zip(targets, leaves)):
                    mask = self.masks[li][ti]
                    denom = lh * lw if mask is None else (mask**2).sum().clamp_min(1e-8)
                    if w2:
                        part = wasserstein_loss(mleaves[ti] / denom, g / denom, tgt.gaussian) * tgt.weight
                    else:
                        part = style_loss(g / denom * area, tgt.a * area, area) * tgt.weight
                    term = term + (part if mask is None else part * mask.mean())
                if low:
                    grads = torch.autograd.grad(term, leaves + mleaves)
                    dgrams.update({(li, ti): d for ti, d in enumerate(grads[: len(leaves)])})
                    dmeans.update({(li, ti): d for ti, d in enumerate(grads[len(leaves) :])})
                values.append(term.detach())
        return torch.stack([v.to(image.dtype) for v in values]), [dgrams, tail_values, leaf, kept, dmeans]

    def second(self, image: torch.Tensor, state, grad: torch.Tensor, low: bool) -> torch.Tensor:
        """Pass 2: each tile's backward with the fixed dL/dF at its core; the input gradients summed.
        The tile pass 1 ended with comes first, from the graph it kept."""
        tiler = self.tiler
        dgrams, tail_values, leaf, kept, dmeans = state
        state[3] = None  # each kept tile's taps go as soon as its backward is done
        head_taps = self._head_taps()
        d_head = None
        if tail_values:
            torch.autograd.backward([v for _, v in tail_values], [grad[i] for i, _ in tail_values])
            d_head = leaf.grad
        out = torch.zeros_like(image)
        h, w = image.shape[-2:]
        for t in reversed(tiler.tiles(h, w)):
            target = None
            if t in kept:
                x_in, feats, x, target = kept.pop(t)
            else:
                if self.obj.content_source is not None and self.obj.content_layer in head_taps:
                    target = self._target(t)  # before the tile's forward, as in pass 1
                with torch.enable_grad():
                    crop = image[..., t.rows[0] : t.rows[1], t.cols[0] : t.cols[1]]
                    x_in = crop.detach().clone().requires_grad_(True)
                    feats, x = tiler.run_head(x_in, low, head_taps, tile=t)
            self._tile_backward(t, feats, x, head_taps, dgrams, grad, d_head, dmeans, target)
            del feats, x, target
            if x_in.grad is not None:
                out[..., t.rows[0] : t.rows[1], t.cols[0] : t.cols[1]] += x_in.grad
            del x_in
            release_tile(image.device)
        return out

    def _target(self, t: Tile) -> torch.Tensor:
        """The content target at tile ``t``'s core (float32 or wider for the subtraction): a slice
        of the stored one, or recomputed from the content image above :data:`RECOMPUTE_TARGET_ABOVE`."""
        obj = self.obj
        if obj.content_source is None:
            fr, fc = self.tiler.full(obj.content_layer, t)
            return obj.content_target[..., fr, fc]
        return self.tiler.target_core(obj.content_source, obj.content_layer, t, obj.content_dtype)

    def _tile_backward(self, t: Tile, feats, x, head_taps, dgrams, grad, d_head, dmeans, target=None) -> None:
        """Back-propagate tile ``t``'s core features with the fixed dL/dF (and the tail's dL/d head output).

        The backward starts from one scalar, Σ_tap Σ (core · dL/dF) with dL/dF fixed (its gradient
        with respect to each core is dL/dF), built before ``feats`` is emptied: so the taps and the
        dL/dF are not held by this frame while the tile's backward runs; each dL/dF goes when its
        product's backward is done (the first nodes to run), and a tap that the backward recomputes
        (a tile over :data:`TILE_RECOMPUTE_ABOVE`) is not kept at all. Handing the taps and their dL/dF
        to ``torch.autograd.backward`` instead kept both alive through the whole backward: 1.1 of a
        2.2 GiB tile's peak (BENCHMARKS.md, "Print size, third session")."""
        obj, tiler = self.obj, self.tiler
        content = obj.content_layer if obj.content_layer in head_taps else None
        surrogate = None
        with torch.enable_grad():  # (views and sums made without grad would not carry the graph)
            for name in head_taps:
                rs, cs = tiler.core(name, t)
                fr, fc = tiler.full(name, t)
                core = feats[name][..., rs, cs].detach()
                g = self._core_gradient(name, core, fr, fc, dgrams, grad, dmeans, name == content, t, target)
                del core
                if g is not None:
                    part = _Seeded.apply(feats[name], _placed(g, feats[name], rs, cs))
                    surrogate = part if surrogate is None else surrogate + part
                    del g, part
            if d_head is not None:
                rs, cs = tiler.core(tiler.head_output, t)
                fr, fc = tiler.full(tiler.head_output, t)
                part = _Seeded.apply(x, _placed(d_head[..., fr, fc], x, rs, cs))
                surrogate = part if surrogate is None else surrogate + part
                del part
        feats.clear()
        del x
        if surrogate is not None:
            surrogate.backward()

    def _core_gradient(self, name, core, fr, fc, dgrams, grad, dmeans, is_content, t=None,
                       target=None) -> torch.Tensor | None:  # fmt: skip
        """dL/dF at tap ``name``'s ``core`` (detached; its place in the whole picture ``fr``, ``fc``):
        the style terms' (G − A)-products and, at the content layer, the content term's."""
        obj = self.obj
        g = None
        with torch.no_grad():
            for li, layer in enumerate(obj.style_layers):
                if layer != name or (li, 0) not in dgrams:
                    continue
                for ti, mask in enumerate(self.masks[li]):
                    d = dgrams[li, ti]
                    sym = (d + d.transpose(1, 2)) * grad[1 + li]
                    if CHANNELS_LAST_GRAM and mask is None and g is None and (li, ti) not in dmeans:
                        # As the untiled Gram's backward: one product in the features' own
                        # precision and layout (a float32 einsum cost ~3x the memory traffic).
                        g = _channels_last_times(core, sym)
                        continue
                    m = None if mask is None else mask[..., fr, fc]
                    f = _wide(core) if m is None else _wide(core) * m
                    part = _positions_times(f, sym)
                    del f
                    part = part if m is None else part * m
                    if (li, ti) in dmeans:  # W2: μ = Σ F·m² / Σ m² (the denominator is in dμ)
                        dmu = (dmeans[li, ti] * grad[1 + li]).to(part.dtype)[..., None, None]
                        part = part + (dmu if m is None else dmu * m**2)
                    g = part if g is None else g + part
                    del part
            if is_content:
                target = self._target(t) if target is None else target
                part = (_wide(core) - target) * (2 * grad[0] / obj.content_numel)
                g = part if g is None else g + part
        return g


def _placed(g: torch.Tensor, like: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
    """A tap's dL/dF over its whole tile: ``g`` at the core (``rows``, ``cols``), zero in the halo, in
    ``like``'s dtype and layout (channels-last in a channels-last network)."""
    out = torch.zeros_like(like)
    out[..., rows, cols] = g
    return out


class _Seeded(torch.autograd.Function):
    """A zero whose gradient with respect to ``features`` is ``grad_features``: it starts a tile's
    backward with dL/dF fixed (the objective's surrogate Σ F·dL/dF, without computing the product).

    It hands the tap its gradient whole and channels-last. The surrogate on the core's window did
    not: autograd's backward of a slice builds an NCHW zero tensor, so each tap paid an NCHW copy of
    its core and an add of NCHW to the network's channels-last gradient, the two 10-30x slower than
    the same work in one layout (a 64-channel 1536x1120 bfloat16 add: 0.95 s against 0.03 s). The
    gradient goes with the node: the node's first and only use frees it."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, grad_features: torch.Tensor) -> torch.Tensor:
        ctx.grad_features = grad_features
        return features.new_zeros((), dtype=torch.float32)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        g, ctx.grad_features = ctx.grad_features, None
        return (g if bool(grad == 1) else g * grad.to(g.dtype)), None


class _Tiled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, image: torch.Tensor, evaluation: TiledEvaluation, low: bool) -> torch.Tensor:
        with large_blocks_returned(image.device):
            values, state = evaluation.first(image, low)
        ctx.evaluation, ctx.state, ctx.low = evaluation, state, low
        ctx.save_for_backward(image)
        return values

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (image,) = ctx.saved_tensors
        state, ctx.state = ctx.state, None
        with large_blocks_returned(image.device):
            out = ctx.evaluation.second(image, state, grad, ctx.low)
        return out, None, None
