"""The seed's objective: content, style (Gram) and total-variation terms, and their weighted sum.

Notation follows ``SEED.md``: a layer's features F have K filters over H×W positions; the Gram
matrix is G = F Fᵀ; A is the style image's Gram; α, β, γ weigh the three terms.

The pure functions (:func:`gram_matrix`, :func:`content_loss`, :func:`style_loss`,
:func:`tv_loss`) are the formulas and nothing else; :class:`Objective` holds the targets of one
run at one scale and calls them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from . import color
from .errors import InputError
from .image import resize, resize_to
from .network import VGGFeatures
from .plan import scaled

if TYPE_CHECKING:
    from .config import Settings


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """G_ij = Σ_k F_ik F_jk over positions k, for features of shape (B, K, H, W) -> (B, K, K).

    >>> gram_matrix(torch.ones(1, 2, 2, 2))
    tensor([[[4., 4.],
             [4., 4.]]])
    """
    return _Gram.apply(features)


# Low-precision features are multiplied into their float32 Gram matrix this many values at a time
# (4 MiB of float32: a chunk is cast while it is still in cache).
GRAM_CHUNK_VALUES = 2**20


class _Gram(torch.autograd.Function):
    """G = F Fᵀ with the backward written out: dL/dF = (dG + dGᵀ) F, one matmul in F's own layout.

    Autograd's own backward of ``flat @ flat.T`` does two matmuls, adds a transposed gradient to a
    plain one (a strided add) and returns NCHW into a channels-last network; this one cut a 512 px
    evaluation of vgg16-hed from 2.85 to 2.03 CPU-seconds.

    Features in bfloat16 (or float16) give a float32 G, cast to float32 a cache-sized chunk of
    positions at a time; the backward multiplies in the features' own precision. A G rounded to
    bfloat16 (AMX products, faster still) has a relative error of 1.5e-3, and L-BFGS noticed: 0.912
    instead of 0.889 after 150 evaluations at 512 px (BENCHMARKS.md).
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(features)
        low = features.dtype in (torch.bfloat16, torch.float16)
        grams = []
        # One 2-D product per batch item: bmm on these transposed views would copy them first.
        for rows in _positions_by_channels(features):  # (H·W, K), a view
            if not low:
                grams.append(rows.T @ rows)
                continue
            gram = torch.zeros(rows.shape[1], rows.shape[1], dtype=torch.float32, device=features.device)
            for chunk in rows.split(max(1, GRAM_CHUNK_VALUES // rows.shape[1])):
                chunk = chunk.float()
                gram.addmm_(chunk.T, chunk)
            grams.append(gram)
        return torch.stack(grams)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (features,) = ctx.saved_tensors
        sym = (grad + grad.transpose(1, 2)).to(features.dtype)
        if _is_channels_last(features):
            # Channels-last F is (H·W, K) row-major: multiply in that layout and hand the gradient
            # back channels-last, so it adds cheaply to the rest of the network's gradient.
            out = torch.empty_like(features, memory_format=torch.channels_last)
            for rows, s, o in zip(_positions_by_channels(features), sym, _positions_by_channels(out)):
                torch.mm(rows, s, out=o)
            return out
        b, k, h, w = features.shape
        return (sym @ features.reshape(b, k, h * w)).reshape(b, k, h, w)


def _is_channels_last(features: torch.Tensor) -> bool:
    """Channels innermost: a channels-last tensor, or a window of one (a tile's core, painterly.tiling)."""
    return features.shape[1] > 1 and features.stride(1) == 1 and not features.is_contiguous()


def _positions_by_channels(features: torch.Tensor) -> torch.Tensor:
    """F as (B, H·W, K): a view in either layout (transposed for NCHW); a window of a channels-last
    tensor is copied in its own layout, runs of W·K values (0.08 s for a 64-channel 1536x1024
    bfloat16 core; made NCHW first, as before, 0.76 s: BENCHMARKS.md, "Print size, twelfth session")."""
    b, k, h, w = features.shape
    if _is_channels_last(features):
        return features.permute(0, 2, 3, 1).reshape(b, h * w, k)
    return features.reshape(b, k, h * w).transpose(1, 2)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_content = 1/(K H W) Σ_ijk (F_ijk − P_ijk)², the mean squared error (per batch item summed)."""
    if features.dtype == target.dtype:
        return F.mse_loss(features, target, reduction="mean") * features.shape[0]
    return _LowPrecisionMSE.apply(features, target) * features.shape[0]


class _LowPrecisionMSE(torch.autograd.Function):
    """mean((F − P)²) for bfloat16 features F and a float32 target P, or float32 features and a float16
    target (a large picture's, :func:`painterly.tiling.content_target_dtype`), the difference taken in float32.

    ``F.mse_loss`` on a float32 copy of F costs a cast, a float32 copy in the backward and a
    cast back (~20 ms per 512 px evaluation of vgg16-hed); this keeps one float32 difference.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        wide = torch.promote_types(torch.promote_types(features.dtype, target.dtype), torch.float32)
        diff = features.to(wide) - target
        ctx.save_for_backward(diff)
        ctx.features_dtype = features.dtype
        return diff.pow(2).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (diff,) = ctx.saved_tensors
        return (diff * (2 * grad / diff.numel())).to(ctx.features_dtype), None


def style_loss(gram: torch.Tensor, target: torch.Tensor, area: float) -> torch.Tensor:
    """L_style^l = 1/(K H W) · 1/K² · Σ_ij (G_ij − A_ij)², with ``area`` = H·W.

    ``gram`` and ``target`` are (B, K, K) Gram matrices at the resolution whose H·W is ``area``.
    """
    k = gram.shape[-1]
    return ((gram - target) ** 2).sum() / (k * area) / k**2


def feature_mean(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """μ, each filter's mean over positions, (B, K, H, W) -> (B, K) in float32 (or float64); under a ``mask`` the mean
    weighted by m², the weights :func:`gram_per_pixel`'s guided Gram uses."""
    dtype = torch.promote_types(features.dtype, torch.float32)
    if mask is None:
        return features.mean(dim=(2, 3), dtype=dtype)
    w = mask.to(dtype) ** 2
    return (features * w).sum(dim=(2, 3), dtype=dtype) / w.sum().clamp_min(1e-8)


class _TraceSqrt(torch.autograd.Function):
    """tr(A^½) = Σ_i √(λ_i + ε) for symmetric PSD matrices A (B, K, K), summed over the batch.

    One eigendecomposition in float64; eigenvalues rounded below zero count as zero. The gradient is
    the spectral one, V diag(1/(2√(λ+ε))) Vᵀ, well defined for repeated eigenvalues (unlike the
    gradient of the eigenvectors themselves); ε bounds it where A is singular.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, eps: float) -> torch.Tensor:
        a64 = a.double()
        lam, vec = torch.linalg.eigh((a64 + a64.transpose(-1, -2)) / 2)
        root = (lam.clamp_min(0) + eps).sqrt()
        ctx.save_for_backward(lam, vec, root)
        ctx.dtype = a.dtype
        return root.sum().to(a.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        lam, vec, root = ctx.saved_tensors
        d = torch.where(lam > 0, 0.5 / root, torch.zeros_like(root))
        return ((vec * d.unsqueeze(-2)) @ vec.transpose(-1, -2) * grad.double()).to(ctx.dtype), None


def trace_sqrt(a: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """tr(A^½) of symmetric PSD ``a`` (B, K, K), differentiable (see :class:`_TraceSqrt`)."""
    return _TraceSqrt.apply(a, eps)


def psd_sqrt(a: torch.Tensor) -> torch.Tensor:
    """A^½ of symmetric PSD matrices (B, K, K), in float64 (eigenvalues below zero count as zero); no gradient."""
    a64 = a.detach().double()
    lam, vec = torch.linalg.eigh((a64 + a64.transpose(-1, -2)) / 2)
    return (vec * lam.clamp_min(0).sqrt().unsqueeze(-2)) @ vec.transpose(-1, -2)


@dataclass
class GaussianTarget:
    """A style tap's mean μ_s (B, K), covariance root Σ_s^½ (B, K, K, float64), tr Σ_s, and the ε of its W2."""

    mean: torch.Tensor
    root: torch.Tensor
    trace: torch.Tensor
    eps: float

    @classmethod
    def of(cls, mean: torch.Tensor, second: torch.Tensor) -> GaussianTarget:
        """From μ and the second raw moment E[f fᵀ] (the per-pixel Gram): Σ = E[f fᵀ] − μ μᵀ."""
        cov = second.double() - mean.double().unsqueeze(-1) * mean.double().unsqueeze(-2)
        trace = torch.diagonal(cov, dim1=-2, dim2=-1).sum()
        # ε in units of A = Σ_s^½ Σ Σ_s^½ (squared covariance): at a perfect match the term is at most
        # K·√ε = 1e-4 · tr Σ_s above zero, and the gradient in a direction the output lacks is bounded.
        eps = float((W2_EPS * trace / cov.shape[-1]) ** 2) + 1e-30
        return cls(mean.float(), psd_sqrt(cov), trace, eps)


W2_EPS = 1e-4


def wasserstein_loss(mean: torch.Tensor, second: torch.Tensor, target: GaussianTarget) -> torch.Tensor:
    """L_W2^l = 1/K · W₂²(N(μ, Σ), N(μ_s, Σ_s)), per filter: the squared 2-Wasserstein distance between
    Gaussians with the features' mean and covariance (crowsonkb's style loss),

        W₂² = |μ − μ_s|² + tr Σ + tr Σ_s − 2 tr (Σ_s^½ Σ Σ_s^½)^½,

    from the output's ``mean`` μ (B, K) and second raw moment ``second`` E[f fᵀ] (B, K, K, the
    per-pixel Gram), Σ = E[f fᵀ] − μ μᵀ. It is 0 (to 1e-4 · tr Σ_s, see :class:`GaussianTarget`)
    when the statistics match, and, unlike the Gram matrix, keeps the mean apart from the spread.
    """
    k = mean.shape[-1]
    m = mean.double()
    cov = second.double() - m.unsqueeze(-1) * m.unsqueeze(-2)
    inner = target.root @ cov @ target.root
    trace = torch.diagonal(cov, dim1=-2, dim2=-1).sum()
    w2 = (m - target.mean.double()).pow(2).sum() + trace + target.trace - 2 * trace_sqrt(inner, target.eps)
    return (w2 / k).to(torch.promote_types(mean.dtype, torch.float32))


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """L_tv = Σ (T_{i,j+1,k} − T_{i,j,k})² + (T_{i+1,j,k} − T_{i,j,k})², over an RGB image in [0, 1].

    >>> tv_loss(torch.tensor([[[[0., 1.], [1., 0.]]]]))  # 2×2 checkerboard: 4 unit steps
    tensor(4.)
    """
    return _TotalVariation.apply(image)


class _TotalVariation(torch.autograd.Function):
    """:func:`tv_loss` with its gradient worked out, 2 (Δ_left − Δ_right) along each axis, instead of
    autograd's: autograd kept both differences (two image-sized buffers) from the forward to the
    backward, and the backward's result waited for the rest of the gradient; at 8192x6144 those sat
    beside a tiled evaluation's pass 2 (BENCHMARKS.md, "Print size, sixth session"). This keeps only
    the image, which the caller holds anyway."""

    @staticmethod
    def forward(ctx, image: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(image)
        dx = image[..., :, 1:] - image[..., :, :-1]
        total = dx.pow_(2).sum()
        del dx
        dy = image[..., 1:, :] - image[..., :-1, :]
        return total + dy.pow_(2).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (image,) = ctx.saved_tensors
        out = torch.zeros_like(image)
        d = image[..., :, 1:] - image[..., :, :-1]
        d.mul_(2 * grad)
        out[..., :, 1:] += d
        out[..., :, :-1] -= d
        del d
        d = image[..., 1:, :] - image[..., :-1, :]
        d.mul_(2 * grad)
        out[..., 1:, :] += d
        out[..., :-1, :] -= d
        return out


# The 4-neighbour Laplacian, one 3×3 kernel applied to each colour channel on its own.
_LAPLACIAN_KERNEL = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def cell_means(image: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """The image (B, C, H, W) averaged over a grid of ``cells`` (rows, columns): area pooling, any
    ratio. Where the grid divides the image exactly, a plain k × k average pool, which gives the same
    cells as the adaptive one and (with its backward) costs a fraction of it on the CPU.

    >>> cell_means(torch.arange(16.).reshape(1, 1, 4, 4), (2, 2))
    tensor([[[[ 2.5000,  4.5000],
              [10.5000, 12.5000]]]])
    """
    (h, w), (rows, cols) = image.shape[-2:], cells
    if (h, w) == (rows, cols):
        return image
    if h % rows == 0 and w % cols == 0:
        return F.avg_pool2d(image, (h // rows, w // cols))
    return F.adaptive_avg_pool2d(image, cells)


def nested_cell_means(image: torch.Tensor, grids: Sequence[tuple[int, int]]) -> dict[tuple[int, int], torch.Tensor]:
    """:func:`cell_means` of ``image`` on each grid, finest first, a coarser grid pooled from a finer one
    it divides exactly (a 16 px cell is the mean of its 4 × 4 px cells): the picture is read once for
    nested grids (Laplacian pools 4 and 16 px), not once per grid. Each grid's cells are those of
    :func:`cell_means` on the image; only the rounding of the sums differs."""
    out: dict[tuple[int, int], torch.Tensor] = {}
    for cells in sorted(set(grids), key=lambda g: -g[0] * g[1]):
        source = image
        for finer, pooled in out.items():
            if (
                finer[0] % cells[0] == 0
                and finer[1] % cells[1] == 0
                and (image.shape[-2] % finer[0] == 0 and image.shape[-1] % finer[1] == 0)
            ):
                source = pooled
                break
        out[cells] = cell_means(source, cells)
    return out


def pooled_laplacian(image: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """Δ(P(x)): the image (B, C, H, W) averaged over a grid of ``cells`` (rows, columns; area pooling,
    any ratio), then the 4-neighbour Laplacian of each channel, on the grid's inside only (no padding):
    (B, C, rows − 2, columns − 2). A cell's value is Σ of its 4 neighbours − 4 × its own; it is 0 on a
    smooth (locally linear) region whatever its colour, large on an edge or a spot.

    >>> pooled_laplacian(torch.tensor([[[[0., 0, 0], [0, 1, 0], [0, 0, 0]]]]), (3, 3))  # a lone spot
    tensor([[[[-4.]]]])
    """
    p = cell_means(image, cells)
    # the kernel _LAPLACIAN_KERNEL as shifted slices: on grids this small, a fraction of a grouped
    # convolution's cost (with its backward) on the CPU, the same sums
    inner = p[..., 1:-1, 1:-1]
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:] - 4 * inner


def laplacian_loss(laplacian: torch.Tensor, target: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
    """L_lap = 1/(C R W) Σ g · (Δ(P(x)) − Δ(P(c)))², the mean squared difference of two pooled Laplacians
    (:func:`pooled_laplacian`; per batch item summed), Li et al. (2017), "Laplacian-steered neural style
    transfer". It charges for edges and spots the output has where the photograph is smooth at the
    pooling's scale (and for the photograph's edges lost), nothing for a smooth region's colour.

    ``gate`` (B, 1, R, W) in [0, 1] (:func:`laplacian_gate`) weighs each cell's squared difference (all
    channels alike): the term then holds the photograph's structure where it has some and leaves its
    smooth regions to the style. None: every cell 1, Li et al.'s term."""
    dtype = torch.promote_types(laplacian.dtype, torch.float32)
    if gate is None:
        return F.mse_loss(laplacian.to(dtype), target.to(dtype), reduction="mean") * laplacian.shape[0]
    squared = (laplacian.to(dtype) - target.to(dtype)).pow(2) * gate.to(dtype)
    return squared.sum() / squared[0].numel()


# The least pooled Laplacian energy (Σ over the colour channels, RGB in [0, 1]) a gated cell must reach
# to count as structure, whatever the picture's mean: a photograph with none at all (a flat or ramped
# test card) gets no term rather than one that its own round-off energy normalises. The twelve
# benchmark photographs' thresholds (T × their mean) are at least 27 times this.
GATE_MIN_ENERGY = 1e-3


def laplacian_gate(target: torch.Tensor, threshold: float, floor: float = 0.0) -> torch.Tensor | None:
    """Where the photograph has structure, per cell of a pooled Laplacian Δ(P(c)) (B, C, R, W): its
    energy Σ_c Δ² averaged over the cell's 3 × 3 neighbourhood (the cells inside the grid), over
    ``threshold`` × that energy's mean over the picture, clamped to [0, 1]: (B, 1, R, W). A cell at or
    above ``threshold`` × the picture's mean energy counts fully, a smooth one (a sky, the inside of an
    eye) not at all, those between in proportion. The neighbourhood takes in both sides of an edge (Δ
    is ± across it and 0 on it). Relative to the picture's own mean, so a faint photograph's structure
    is held as a bold one's is, down to :data:`GATE_MIN_ENERGY` (below it, nothing is structure).
    ``threshold`` 0: None (every cell 1, :func:`laplacian_loss` ungated).
    With a ``floor`` f in [0, 1] the gate is f + (1 − f) × that: a smooth cell keeps f of the term.

    >>> t = torch.zeros(1, 1, 3, 6); t[..., 1, 1] = 3.0  # energy 9 in one cell; the mean 9/18 = 0.5
    >>> laplacian_gate(t, 4.0)[0, 0]  # 9 over 4, 6 or 9 neighbours, over 4 × 0.5
    tensor([[1.0000, 0.7500, 0.7500, 0.0000, 0.0000, 0.0000],
            [0.7500, 0.5000, 0.5000, 0.0000, 0.0000, 0.0000],
            [1.0000, 0.7500, 0.7500, 0.0000, 0.0000, 0.0000]])
    """
    if threshold <= 0:
        return None
    energy = target.float().pow(2).sum(1, keepdim=True)
    local = F.avg_pool2d(energy, 3, stride=1, padding=1, count_include_pad=False)
    mean = energy.mean(dim=(1, 2, 3), keepdim=True)
    gate = (local / (threshold * mean).clamp_min(GATE_MIN_ENERGY)).clamp(0.0, 1.0)
    return gate if floor <= 0 else floor + (1.0 - floor) * gate


# Rec. 601 luma weights: the coarse tone term compares brightness, not colour (the style's palette is free)
_LUMA = (0.299, 0.587, 0.114)


def coarse_tone(means: torch.Tensor) -> torch.Tensor:
    """The luminance of a grid of cell means (B, 3, R, W) (:func:`cell_means`; a 1-channel image as it
    is) less its mean over the grid: (B, 1, R, W). A picture whose large light and dark masses are the
    photograph's has the photograph's coarse tone, whatever its overall brightness or palette.

    >>> coarse_tone(torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]], [[1.0, 0.0]]]]))  # white beside black
    tensor([[[[ 0.5000, -0.5000]]]])
    """
    if means.shape[1] == 3:
        w = torch.tensor(_LUMA, dtype=means.dtype, device=means.device).view(1, 3, 1, 1)
        luma = (means * w).sum(1, keepdim=True)
    else:
        luma = means.mean(1, keepdim=True)
    return luma - luma.mean(dim=(2, 3), keepdim=True)


def lowpass_loss(tone: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_low = 1/(R W) Σ (T(x) − T(c))², the mean squared difference of two coarse tones
    (:func:`coarse_tone`; per batch item summed): it charges for large light or dark masses the output
    has and the photograph has not (a dome, a patch of another brightness, a disc the size of a cell),
    and for the photograph's own large masses lost; nothing for an overall shift of brightness."""
    dtype = torch.promote_types(tone.dtype, torch.float32)
    return F.mse_loss(tone.to(dtype), target.to(dtype), reduction="mean") * tone.shape[0]


# The least coarse tone variance the low-pass term's normaliser takes (luminance in [0, 1]): a
# photograph of one even tone gets a term that a 1 % tone change makes 1, not one its round-off inflates.
LOWPASS_MIN_VARIANCE = 1e-4


def laplacian_cells(height: int, width: int, pool: float) -> tuple[int, int]:
    """The grid a Laplacian term of ``pool`` output pixels per cell uses for a (height, width) output
    (at least 3 × 3, at most one cell per pixel)."""
    return max(3, min(height, round(height / pool))), max(3, min(width, round(width / pool)))


def gram_per_pixel(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Gram matrix divided by the number of positions it sums over: comparable across sizes.

    With a ``mask`` (B, 1, H, W) in [0, 1] this is the guided Gram of Gatys et al. (2017):
    G = (F∘m)(F∘m)ᵀ / Σm², so the statistics describe only the masked region.
    """
    if mask is None:
        h, w = features.shape[-2:]
        return gram_matrix(features) / (h * w)
    return gram_matrix(features * mask) / (mask**2).sum().clamp_min(1e-8)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A guide mask (B, 1, H, W) resampled to a layer's H×W (area average keeps soft edges)."""
    return F.interpolate(mask, size=size, mode="area") if mask.shape[-2:] != size else mask


@dataclass
class StyleTarget:
    """One style tap's target: per-pixel Gram ``a``, for guided transfer the output's mask (``None``:
    everywhere), and the weight of its style relative to an equal blend."""

    a: torch.Tensor
    mask: torch.Tensor | None = None
    weight: float = 1.0
    gaussian: GaussianTarget | None = None  # style_loss="wasserstein": the mean and covariance instead


@dataclass(frozen=True)
class Weights:
    """How the terms are weighed: the seed's α, β, γ and w_l as given, and, separately, the
    per-pair normalisers N that the default divides each term by (all 1 with ``normalize`` off).

    The optimised total is ``α/N_c · L_content + β · Σ_l (w_l/N_l) · L_style^l + γ/N_tv · L_tv``.
    """

    alpha: float
    beta: float
    gamma: float
    layer_weights: dict[str, float]
    content_norm: float = 1.0
    style_norms: dict[str, float] = field(default_factory=dict)
    tv_norm: float = 1.0
    # λ of the Laplacian content term (0: off, the seed's objective) and each pooling's normaliser
    # {pool: N_p}; the term is λ · mean_p L_lap,p / N_p.
    laplacian: float = 0.0
    laplacian_norms: dict[float, float] = field(default_factory=dict)
    # The term's gate (objective.laplacian_gate): 0, every cell alike; t > 0, only where the photograph
    # has structure (cells at or above t × its mean energy fully, smooth ones not at all).
    laplacian_gate: float = 0.0
    laplacian_gate_floor: float = 0.0
    # μ of the coarse tone term (objective.lowpass_loss; 0: off) and its normaliser N_low
    lowpass: float = 0.0
    lowpass_norm: float = 1.0

    @property
    def content_factor(self) -> float:
        return self.alpha / self.content_norm

    @property
    def tv_factor(self) -> float:
        return self.gamma / self.tv_norm

    def style_factor(self, layer: str) -> float:
        return self.beta * self.layer_weights[layer] / self.style_norms.get(layer, 1.0)

    def laplacian_factor(self, pool: float) -> float:
        """λ / (number of poolings · N_p): the weight of one pooling's L_lap in the total."""
        return self.laplacian / max(1, len(self.laplacian_norms)) / self.laplacian_norms.get(pool, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """α, β, γ, ``layer_weights`` {layer: w_l} as given, and ``normalizers`` {content, style: {layer: N_l}, tv};
        with the Laplacian term on, also its λ (``laplacian``) and ``normalizers["laplacian"]`` {pool: N_p}."""
        style_norms = {k: self.style_norms.get(k, 1.0) for k in self.layer_weights}
        out = {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "layer_weights": dict(self.layer_weights),
               "normalizers": {"content": self.content_norm, "style": style_norms, "tv": self.tv_norm}}  # fmt: skip
        if self.laplacian > 0:  # only where the term is on: a seed run's report is as before
            out["laplacian"] = self.laplacian
            out["laplacian_gate"] = self.laplacian_gate
            out["laplacian_gate_floor"] = self.laplacian_gate_floor
            out["normalizers"]["laplacian"] = {f"{p:g}": n for p, n in self.laplacian_norms.items()}
        if self.lowpass > 0:
            out["lowpass"] = self.lowpass
            out["normalizers"]["lowpass"] = self.lowpass_norm
        return out


WEIGHTED = "weighted:"  # the prefix of each term's share of the total, as weighed


def style_key(layer: str) -> str:
    """The name a style layer's own term has in a loss report: ``style:relu1_2``."""
    return f"style:{layer}"


class Objective:
    """The seed's terms and their weighted total for one content, a blend of styles, at one scale.

    Calling it gives the raw terms (``content``, each ``style:<layer>``, their seed sum ``style``
    = Σ_l w_l L_style^l, ``tv``) and the ``total`` that is optimised, weighed by :class:`Weights`.

    ``output_area`` is H·W of the *output*: the style term is evaluated as if at the final output's
    resolution, so β means the same at every scale and for style images of any size (a departure
    that reduces to the seed's formula exactly when the scale is the output's and the style image
    has the output's size).
    """

    def __init__(
        self,
        net: VGGFeatures,
        content: torch.Tensor,
        styles: Sequence[torch.Tensor],
        *,
        content_layer: str,
        style_layers: Sequence[str],
        weights: Weights,
        blend_weights: Sequence[float],
        output_area: float,
        style_masks: Sequence[torch.Tensor | None] | None = None,
        output_masks: Sequence[torch.Tensor | None] | None = None,
        tile: int | None = None,
        keep_tiles: int = 1,
        recompute: bool | None = None,
        style_loss: str = "gram",
        laplacian_cells: dict[float, tuple[int, int]] | None = None,
        lowpass_cells: tuple[int, int] | None = None,
    ) -> None:
        self.net = net
        # Untiled, whether the image's evaluation recomputes its activations in the backward (None: the
        # network's pixel threshold); the problem decides it by the memory free (tiling.recompute_for).
        self.recompute = recompute
        # "gram": the seed's term; "wasserstein": W2 between the features' Gaussians.
        self.style_loss = style_loss
        # With ``tile`` (pixels), the network runs tile by tile, exactly (painterly.tiling): targets too;
        # pass 1's last ``keep_tiles`` tiles keep their graphs for pass 2 (tiling.keep_for).
        self.tiler = None
        if tile:
            from .tiling import Tiler

            self.tiler = Tiler(net, tile)
            self.tiler.keep = keep_tiles
        self.content_layer = content_layer
        self.style_layers = list(style_layers)
        self.weights = weights
        # Output pixel count relative to this scale's; style areas scale with it at every tap.
        self.area_ratio = output_area / (content.shape[-2] * content.shape[-1])
        # A large tiled scale keeps the content image instead of its target, which each tile
        # recomputes (painterly.tiling.RECOMPUTE_TARGET_ABOVE); content_numel is the target's size.
        self.content_source: torch.Tensor | None = None
        self.content_dtype: torch.dtype | None = None
        self.content_numel = 0
        with torch.no_grad():
            self.content_target = self._content_target(content) if weights.alpha > 0 else None
            if self.content_target is not None:
                self.content_numel = self.content_target[0].numel()
            self.targets = self._style_targets(styles, blend_weights, style_masks, output_masks)
            # The Laplacian term's targets Δ(P(c)), on each pooling's grid of the *output* (the same
            # cells at every scale, so λ means the same at every scale); whole-image, like TV.
            self.laplacian_targets = {}
            if weights.laplacian > 0:
                self.laplacian_targets = {p: pooled_laplacian(content, cells) for p, cells in laplacian_cells.items()}
            # where each pooling's term acts (None: everywhere), from this scale's target
            gate, floor = weights.laplacian_gate, weights.laplacian_gate_floor
            self.laplacian_gates = {p: laplacian_gate(t, gate, floor) for p, t in self.laplacian_targets.items()}
            # the coarse tone term's target T(c), on the output's grid like the Laplacian's
            self.lowpass_cells = lowpass_cells if weights.lowpass > 0 and lowpass_cells else None
            self.lowpass_target = None
            if self.lowpass_cells is not None:
                self.lowpass_target = coarse_tone(cell_means(content, self.lowpass_cells))
        self.tiled = None
        if self.tiler is not None:
            from .tiling import TiledEvaluation

            self.tiled = TiledEvaluation(self, self.tiler, tuple(content.shape[-2:]))

    def _content_target(self, content: torch.Tensor) -> torch.Tensor:
        from .tiling import content_target_dtype

        pixels = content.shape[-2] * content.shape[-1]
        if self.tiler is None:
            target = self.net(content)[self.content_layer].detach()
            return target.to(content_target_dtype(target.dtype, pixels))
        from .tiling import RECOMPUTE_TARGET_ABOVE

        layer = self.content_layer
        dtype = content_target_dtype(self.tiler.target_dtype, pixels)
        names = self.net.names
        at = names.index(layer)
        if pixels > RECOMPUTE_TARGET_ABOVE and at < self.tiler.head:
            convs = [m for m in list(self.net.features)[: at + 1] if isinstance(m, torch.nn.Conv2d)]
            channels = convs[-1].out_channels
            h, w = self.tiler.layer_size(layer, *content.shape[-2:])
            self.content_source, self.content_dtype = content, dtype
            self.content_numel = channels * h * w
            return None
        out = None
        for t, feats in self.tiler.features_by_core(content, [layer]):
            if layer not in feats:
                continue
            if t is None:
                return feats[layer].to(dtype)
            if out is None:
                size = self.tiler.layer_size(layer, *content.shape[-2:])
                # in the taps' layout (channels-last): a target in NCHW made each tile's F − P a mixed-layout
                # subtraction, ~10x slower (BENCHMARKS.md, "Print size, twelfth session")
                layout = torch.channels_last if _is_channels_last(feats[layer]) else torch.contiguous_format
                out = torch.empty((*feats[layer].shape[:2], *size), dtype=dtype, device=feats[layer].device,
                                  memory_format=layout)  # fmt: skip
            out[..., self.tiler.full(layer, t)[0], self.tiler.full(layer, t)[1]] = feats[layer]
            del feats  # before the next tile's forward: one tile's taps at a time
        return out

    @property
    def has_content_target(self) -> bool:
        """Whether there is a content target, stored or (tiled, large) recomputed tile by tile."""
        return self.content_target is not None or self.content_source is not None

    def _statistics(self, image: torch.Tensor, mask: torch.Tensor | None, means: bool = False):
        """Per-pixel Gram of ``image`` at every style tap, under ``mask`` (image-space) if given, and
        with ``means`` each filter's mean μ too (the W2 term's), from the same forward pass:
        ``(grams, means or None)``."""
        if self.tiler is None:
            feats = self._features(image)
            at = {t: None if mask is None else resize_mask(mask, feats[t].shape[-2:]) for t in self.style_layers}
            grams = {layer: gram_per_pixel(feats[layer], at[layer]) for layer in self.style_layers}
            mus = {layer: feature_mean(feats[layer], at[layer]) for layer in self.style_layers} if means else None
            return grams, mus
        gram_sums: dict[str, torch.Tensor] = {}
        mean_sums: dict[str, torch.Tensor] = {}
        grams: dict[str, torch.Tensor] = {}
        mus: dict[str, torch.Tensor] = {}
        masks = {}
        for layer in self.style_layers:
            at = self.tiler.layer_size(layer, *image.shape[-2:])
            masks[layer] = None if mask is None else resize_mask(mask, at)
        for t, feats in self.tiler.features_by_core(image, self.style_layers):
            for layer, f in feats.items():
                m = masks[layer]
                if t is None:
                    whole = None if m is None else resize_mask(m, f.shape[-2:])
                    grams[layer] = gram_per_pixel(f, whole)
                    if means:
                        mus[layer] = feature_mean(f, whole)
                    continue
                rows, cols = self.tiler.full(layer, t)
                fm = f if m is None else f * m[..., rows, cols]
                g = gram_matrix(fm)
                gram_sums[layer] = g if layer not in gram_sums else gram_sums[layer] + g
                if means:  # μ = Σ F·m² / Σ m²
                    mu = (f.float() if m is None else f.float() * m[..., rows, cols] ** 2).sum((2, 3))
                    mean_sums[layer] = mu if layer not in mean_sums else mean_sums[layer] + mu
            del feats, f  # before the next tile's forward: one tile's taps at a time
        for layer in gram_sums:
            m = masks[layer]
            at = self.tiler.layer_size(layer, *image.shape[-2:])
            denom = at[0] * at[1] if m is None else (m**2).sum().clamp_min(1e-8)
            grams[layer] = gram_sums[layer] / denom
            if means:
                mus[layer] = mean_sums[layer] / denom
        return grams, (mus if means else None)

    def _style_targets(self, styles, blend_weights, style_masks, output_masks) -> list[list[StyleTarget]]:
        """Per style tap, a list of targets: one for an unguided blend, one per region when guided."""
        total = float(sum(blend_weights))
        weights = [w / total for w in blend_weights]
        smasks = list(style_masks or [None] * len(styles)) if output_masks is not None else [None] * len(styles)
        # W2 needs the means too; several styles blend by mean and second raw moment, which (unlike
        # covariances) combine linearly (crowsonkb's rule). One forward per style gives both.
        w2 = self.style_loss == "wasserstein"
        stats = [self._statistics(s, m, means=w2) for s, m in zip(styles, smasks)]
        grams = [g for g, _ in stats]
        means = [mu for _, mu in stats] if w2 else None
        per_layer: list[list[StyleTarget]] = []
        for layer in self.style_layers:
            if output_masks is None:
                # Blend of several styles: the weighted mean of their per-pixel Grams (JJ's rule).
                a = sum(w * g[layer] for w, g in zip(weights, grams))
                gaussian = None
                if means is not None:
                    gaussian = GaussianTarget.of(sum(w * m[layer] for w, m in zip(weights, means)), a)
                per_layer.append([StyleTarget(a, gaussian=gaussian)])
            else:
                # Guided (Gatys et al. 2017): one term per style, its Gram taken under its output mask
                # (None: the whole image); the target is the style's Gram under its own mask, or over
                # the whole style image when it has none. Positions under no mask get no style term.
                # Blend weights scale each style's term relative to an equal blend (n·w = 1 each).
                entries = []
                for i, (g, w, omask) in enumerate(zip(grams, weights, output_masks)):
                    if w == 0:
                        continue
                    gaussian = None
                    if means is not None:
                        gaussian = GaussianTarget.of(means[i][layer], g[layer])
                    entries.append(StyleTarget(g[layer], omask, w * len(grams), gaussian))
                per_layer.append(entries)
        return per_layer

    def _layer_term(self, f: torch.Tensor, targets: list[StyleTarget]) -> torch.Tensor:
        area = f.shape[-2] * f.shape[-1] * self.area_ratio
        term = f.new_zeros(())
        for t in targets:
            mask = None if t.mask is None else resize_mask(t.mask, f.shape[-2:])
            if t.gaussian is not None:
                part = wasserstein_loss(feature_mean(f, mask), gram_per_pixel(f, mask), t.gaussian) * t.weight
            else:
                # Compare per-pixel Grams scaled to the output's H·W: the seed's G and A.
                part = style_loss(gram_per_pixel(f, mask) * area, t.a * area, area) * t.weight
            term = term + (part if mask is None else part * mask.mean())  # a region counts by its share
        return term

    def _features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network's taps of ``image``, recomputing as ``self.recompute`` says (any module that maps
        an image to its taps works where it is None)."""
        return self.net(image) if self.recompute is None else self.net(image, recompute=self.recompute)

    def style_terms(self, image: torch.Tensor) -> list[torch.Tensor]:
        """L_style^l for each style tap, unweighted."""
        feats = self._features(image)
        return [self._layer_term(feats[layer], t) for layer, t in zip(self.style_layers, self.targets)]

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The raw terms and the weighted total for ``image`` (B, 3, H, W) in [0, 1]."""
        w = self.weights
        zero = image.new_zeros(())
        # Total variation first: its backward then runs after the network's (autograd runs the later
        # node first), so nothing of it is held while a tiled evaluation's pass 2 runs.
        tv = tv_loss(image) if w.gamma > 0 else zero
        if self.tiled is not None:
            values = self.tiled(image).unbind(0)  # [content, style_1, ...], computed tile by tile
            terms = {"content": values[0]}
            style_values = values[1:]
        else:
            feats = self._features(image)
            terms = {"content": content_loss(feats[self.content_layer], self.content_target) if w.alpha > 0 else zero}
            style_values = [
                self._layer_term(feats[layer], targets) if w.beta > 0 else zero
                for layer, targets in zip(self.style_layers, self.targets)
            ]
        style = weighted_style = zero
        for layer, term in zip(self.style_layers, style_values):
            terms[style_key(layer)] = term
            style = style + w.layer_weights[layer] * term
            weighted_style = weighted_style + w.style_factor(layer) * term
        terms["style"] = style
        terms["tv"] = tv
        laplacian = weighted_laplacian = zero
        # the grid inside which each pooling's Δ was taken; nested grids pooled from the finer one
        grids = {pool: (t.shape[-2] + 2, t.shape[-1] + 2) for pool, t in self.laplacian_targets.items()}
        wanted = list(grids.values()) + ([self.lowpass_cells] if self.lowpass_cells is not None else [])
        means = nested_cell_means(image, wanted) if wanted else {}
        for pool, target in self.laplacian_targets.items():
            term = laplacian_loss(pooled_laplacian(means[grids[pool]], grids[pool]), target, self.laplacian_gates[pool])
            laplacian = laplacian + term
            weighted_laplacian = weighted_laplacian + w.laplacian_factor(pool) * term
        if self.laplacian_targets:  # the term only where it is on: a seed run reports the seed's terms
            terms["laplacian"] = laplacian
            terms[WEIGHTED + "laplacian"] = weighted_laplacian
        weighted_lowpass = zero
        if self.lowpass_target is not None:
            terms["lowpass"] = lowpass_loss(coarse_tone(means[self.lowpass_cells]), self.lowpass_target)
            weighted_lowpass = terms[WEIGHTED + "lowpass"] = w.lowpass / w.lowpass_norm * terms["lowpass"]
        # each term as it enters the total (α/N_c · L_c, Σ β w_l/N_l · L_l, γ/N_tv · L_tv): the raw
        # terms differ by orders of magnitude, these say which one the optimiser is working on
        terms[WEIGHTED + "content"] = w.content_factor * terms["content"]
        terms[WEIGHTED + "style"] = weighted_style
        terms[WEIGHTED + "tv"] = w.tv_factor * terms["tv"]
        seed = terms[WEIGHTED + "content"] + weighted_style + terms[WEIGHTED + "tv"]
        terms["total"] = seed + weighted_laplacian + weighted_lowpass
        return terms


# laplacian_pools are output pixels per cell at an output of this longest side.
LAPLACIAN_REFERENCE = 512

# The normalisers are measured at this longest side (or the output's, if smaller): big enough to
# be representative, small enough to cost one cheap forward pass even for print-size outputs.
NORMALIZE_REFERENCE = 512


@dataclass
class Problem:
    """Everything a run's objective needs, built once: network, images in the network's colour
    space, style blend, masks and the :class:`Weights`. :meth:`objective_at` gives the objective
    at any size; stylize and score both use it, so they cannot disagree."""

    settings: Settings
    net: VGGFeatures
    content: torch.Tensor  # at the output's size, as the network sees it (luminance if asked)
    styles: list[torch.Tensor]
    blend: tuple[float, ...]
    masks: list[torch.Tensor | None] | None
    device: torch.device
    weights: Weights = field(init=False)

    @classmethod
    def build(cls, net: VGGFeatures, content: torch.Tensor, styles: Sequence[torch.Tensor], s: Settings,
              masks: Sequence[torch.Tensor | None] | None, device: torch.device) -> Problem:  # fmt: skip
        """From images already read (``content`` at the output's size) and resolved settings."""
        if not styles:
            raise InputError("at least one style image is needed")
        s.check_styles(len(styles))
        blend = s.style_blend_weights or (1.0,) * len(styles)
        if masks is not None and len(masks) != len(styles):
            raise InputError(f"{len(masks)} masks given for {len(styles)} style images")
        styles = list(styles)
        s = s.with_color_for(all(color.is_grey(x) for x in styles), color.is_grey(content))  # "auto" made concrete
        if s.preserve_color == "histogram":
            styles = [color.match_color(x, content) for x in styles]
        if s.preserve_color == "luminance":
            styles = [color.match_luminance(x, content) for x in styles]
            content = color.luminance(content)
        problem = cls(s, net, content, styles, tuple(blend), None if masks is None else list(masks), device)
        problem.weights = problem._measure_weights()
        return problem

    def _style_images(self, size: tuple[int, int]) -> list[torch.Tensor]:
        """The styles at this scale: longest side = style size (default output size × style scale)
        times this scale's share of the output, so strokes keep their size relative to the output
        at every scale of the pyramid."""
        s = self.settings
        final = s.style_size or s.size * s.style_scale
        side = final * max(size) / max(self.content.shape[-2:])
        out = []
        for x in self.styles:
            # Never smaller than the network can take: the shorter side keeps at least min_size.
            least = self.net.min_size * max(x.shape[-2:]) / min(x.shape[-2:])
            out.append(resize(x, max(round(side), math.ceil(least))).to(self.device))
        return out

    def objective_at(self, size: tuple[int, int], weights: Weights | None = None) -> Objective:
        s = self.settings
        out_masks = None
        if self.masks is not None and any(m is not None for m in self.masks):  # all None: a plain blend
            out_masks = [None if m is None else resize_to(m, size).clamp(0, 1).to(self.device) for m in self.masks]
        height, width = self.content.shape[-2:]
        from .tiling import keep_for, recompute_for, tile_for

        tile = tile_for(s, size, self.device)
        content = self.content
        # At the content's own size the content itself, not a clamped copy, where it needs no clamp: a
        # large tiled scale keeps it in place of the content target (12 B per pixel, not a further copy).
        if tuple(size) != tuple(content.shape[-2:]) or not (0 <= float(content.min()) and float(content.max()) <= 1):
            content = resize_to(content, size)
        return Objective(
            self.net, content.to(self.device), self._style_images(size),
            content_layer=s.content_layer, style_layers=s.style_layers, weights=weights or self.weights,
            blend_weights=self.blend, output_area=float(height * width), output_masks=out_masks,
            tile=tile, keep_tiles=keep_for(s, size, self.device, tile) if tile else 1,
            recompute=None if tile else recompute_for(s, size, self.device),
            style_loss=s.style_loss, laplacian_cells=self.laplacian_cells(), lowpass_cells=self.lowpass_cells(),
        )  # fmt: skip

    def laplacian_cells(self) -> dict[float, tuple[int, int]]:
        """{pool: grid} of the Laplacian term: ``laplacian_pools`` are output pixels per cell at a 512 px
        output, scaled with the output's longest side (the same cells, relative to the picture, at any size)."""
        s = self.settings
        height, width = self.content.shape[-2:]
        if not s.laplacian_weight:
            return {}
        per_px = max(height, width) / LAPLACIAN_REFERENCE
        return {float(p): laplacian_cells(height, width, p * per_px) for p in s.laplacian_pools}

    def lowpass_cells(self) -> tuple[int, int] | None:
        """The coarse tone term's grid (``lowpass_pool`` output pixels per cell at 512 px, scaled with the
        output), or None where the term is off."""
        s = self.settings
        if not s.lowpass_weight:
            return None
        height, width = self.content.shape[-2:]
        return laplacian_cells(height, width, s.lowpass_pool * max(height, width) / LAPLACIAN_REFERENCE)

    def _measure_weights(self) -> Weights:
        """The settings' α, β, γ, w_l and, with ``normalize`` (the default), each term's own scale for
        this image pair, measured once at a reference size, so one set of defaults works for any
        network, image pair and output size:

        * content by the mean square of the content image's features at the content tap,
        * each style layer by its loss between the content image and the style at the output's H·W
          (the Gram term, or with ``style_loss="wasserstein"`` the W2 term: either way a normalised
          layer term is 1 at the content image and 0 where the style is matched, so β weighs the
          same share of the objective with either loss, though W₂², quadratic in the features, falls
          more slowly than the quartic Gram term as the match improves),
        * total variation by the number of values 3·H·W of the output,
        * the Laplacian term (``laplacian_weight`` > 0), per pooling, by the mean square of the content
          image's own pooled Laplacian, under the term's gate if it has one (1 at an output without
          structure at that scale).

        Departure from the seed, which weighs raw terms; ``normalize=False`` leaves every N at 1.
        """
        s = self.settings
        given = Weights(
            s.content_weight,
            s.style_weight,
            s.tv_weight,
            dict(zip(s.style_layers, s.style_layer_weights)),
            laplacian=s.laplacian_weight,
            laplacian_norms=dict.fromkeys(self.laplacian_cells(), 1.0),
            laplacian_gate=s.laplacian_gate,
            laplacian_gate_floor=s.laplacian_gate_floor,
            lowpass=s.lowpass_weight,
        )
        if not s.normalize:
            return given
        height, width = self.content.shape[-2:]
        longest = min(NORMALIZE_REFERENCE, max(height, width))
        longest = max(longest, math.ceil(self.net.min_size * max(height, width) / min(height, width)))  # thin ones
        ref = scaled(height, width, longest)
        unit = Weights(1.0, 1.0, 0.0, dict.fromkeys(s.style_layers, 1.0))
        with torch.no_grad():
            objective = self.objective_at(ref, unit)
            content = resize_to(self.content, ref).to(self.device)
            # the content's own features (a reference tiled and over RECOMPUTE_TARGET_ABOVE stores none)
            own = objective.content_target
            own = self.net(content)[s.content_layer] if own is None else own
            content_norm = float(own.float().pow(2).mean())
            per_layer = objective.style_terms(content)
            # the content's own pooled Laplacian energy (under the gate, if any): 1 for an output with no
            # structure at that scale
            lap_norms = {}
            for p, c in self.laplacian_cells().items():
                target = pooled_laplacian(content, c)
                gate = laplacian_gate(target, s.laplacian_gate, s.laplacian_gate_floor)
                lap_norms[p] = float(laplacian_loss(torch.zeros_like(target), target, gate))
            # the content's own coarse tone variance: 1 for an output of one even tone
            cells = self.lowpass_cells()
            lowpass_norm = 1.0
            if cells is not None:
                tone = coarse_tone(cell_means(content, cells))
                lowpass_norm = max(float(tone.float().pow(2).mean()), LOWPASS_MIN_VARIANCE)
        return dataclasses.replace(
            given,
            content_norm=max(content_norm, 1e-12),
            style_norms={layer: max(float(v), 1e-12) for layer, v in zip(s.style_layers, per_layer)},
            tv_norm=float(3 * height * width),
            laplacian_norms={p: max(v, 1e-12) for p, v in lap_norms.items()},
            lowpass_norm=lowpass_norm,
        )
