"""Measures of a stylised picture that anyone can recompute: content kept, style taken, invented structure.

They judge a picture as a viewer does, not as the optimiser does, so that a change to the defaults
that lowers the loss but paints a worse picture shows up (``benchmarks/quality.py``, docs/quality.md).
All work on luminance Y (Rec. 601) of images (1, 3, H, W) in [0, 1] of the same size, with lengths
given *at 512 px* (the longest side) and scaled to the picture's own size, so the numbers mean the
same for a wide strip and a square.

* :func:`content_kept`: the correlation of the luminance gradient fields of output and content after
  a Gaussian blur of σ = 2, 4 and 8 px, averaged. A brush-stroke texture (1-3 px) is blurred away, so
  what is compared is the structure a viewer reads: outlines, eyes, windows. It is 1 for the content
  itself, falls as structure is blurred, moved or drowned, and turns negative where light and dark
  swap (a white shirt painted black). Plain 2 px edge correlation cannot tell a portrait whose eyes
  survive from one painted over with texture: both lose their fine edges.
* :func:`weakest_region`: the same correlation at σ = 4 px in each cell of a 4×4 grid that holds
  structure (gradient energy at least a quarter of the cells' mean), the lowest cell. A face can
  survive while the objects beside it dissolve; the global mean hides that, the weakest cell does not.
* :func:`invented`: large-scale luminance the content does not explain. Both images are blurred at
  σ = 16 px (1/32 of the picture: anything smaller is brush work); the output's coarse luminance is
  fitted by a quadratic tone curve of the content's (so a style that darkens or brightens the whole
  picture, or compresses its range, is not penalised); the RMS of what the curve cannot explain,
  over the content's coarse luminance standard deviation, is the score. 0: every large light and
  dark area of the output is one of the content's, re-toned. It flags the invented blobs and
  streaks (a dark blob on a light wall) and patches of a different brightness with borders that
  follow nothing in the photograph; it also counts, honestly, a style's own large structures laid
  over the picture (Van Gogh's swirls), which is why it is read beside the pictures.

Style taken is the seed's own style term and needs the network: ``painterly.score`` of the output
against the content image's, per layer, averaged with the seed's layer weights
(:func:`style_taken`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from .image import gaussian_blur

REFERENCE_SIDE = 512  # lengths below are pixels at this longest side
CONTENT_SIGMAS = (2.0, 4.0, 8.0)
REGION_SIGMA = 4.0
REGION_GRID = 4
REGION_MIN_ENERGY = 0.25  # a cell counts if its content gradient energy is this share of the cells' mean
INVENTED_SIGMA = 16.0


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Y = 0.299 R + 0.587 G + 0.114 B as (1, 1, H, W); a one-channel image is returned as is."""
    if image.shape[1] == 1:
        return image.float()
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)
    return (image.float() * weights).sum(1, keepdim=True)


def gradients(y: torch.Tensor) -> torch.Tensor:
    """Central differences (1, 2, H-2, W-2): d/dx and d/dy of (1, 1, H, W)."""
    dx = (y[..., 1:-1, 2:] - y[..., 1:-1, :-2]) / 2
    dy = (y[..., 2:, 1:-1] - y[..., :-2, 1:-1]) / 2
    return torch.cat([dx, dy], 1)


def _scale(image: torch.Tensor) -> float:
    return max(image.shape[-2:]) / REFERENCE_SIDE


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Σ a·b / √(Σ a² Σ b²) over every value (0 when either is all zero)."""
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def _check(output: torch.Tensor, content: torch.Tensor) -> None:
    if output.shape[-2:] != content.shape[-2:]:
        raise ValueError(f"sizes differ: {tuple(output.shape[-2:])} and {tuple(content.shape[-2:])}")


def gradient_correlation(output: torch.Tensor, content: torch.Tensor, sigma: float) -> float:
    """Correlation of the luminance gradient fields after a blur of σ px (at 512 px)."""
    _check(output, content)
    s = sigma * _scale(content)
    return _correlation(gradients(gaussian_blur(luminance(output), s)), gradients(gaussian_blur(luminance(content), s)))


def content_kept(output: torch.Tensor, content: torch.Tensor, sigmas: tuple[float, ...] = CONTENT_SIGMAS) -> float:
    """Mean of :func:`gradient_correlation` over ``sigmas``: 1 for the content itself."""
    return sum(gradient_correlation(output, content, s) for s in sigmas) / len(sigmas)


def weakest_region(output: torch.Tensor, content: torch.Tensor, grid: int = REGION_GRID) -> float:
    """The lowest gradient correlation at σ = 4 px over the cells of a grid×grid split that hold structure."""
    _check(output, content)
    s = REGION_SIGMA * _scale(content)
    go, gc = gradients(gaussian_blur(luminance(output), s)), gradients(gaussian_blur(luminance(content), s))
    h, w = gc.shape[-2:]
    cells = []
    for i in range(grid):
        for j in range(grid):
            rows = slice(i * h // grid, (i + 1) * h // grid)
            cols = slice(j * w // grid, (j + 1) * w // grid)
            cells.append((go[..., rows, cols], gc[..., rows, cols]))
    energy = [float((c * c).mean()) for _, c in cells]
    mean = sum(energy) / len(energy)
    kept = [_correlation(o, c) for (o, c), e in zip(cells, energy) if e >= REGION_MIN_ENERGY * mean and e > 0]
    return min(kept) if kept else 1.0


def invented(output: torch.Tensor, content: torch.Tensor, sigma: float = INVENTED_SIGMA) -> float:
    """RMS of the output's coarse luminance unexplained by a quadratic tone curve of the content's,
    over the content's coarse luminance standard deviation (0: nothing large was invented)."""
    _check(output, content)
    s = sigma * _scale(content)
    yo = gaussian_blur(luminance(output), s).flatten().double()
    yc = gaussian_blur(luminance(content), s).flatten().double()
    spread = float(yc.std())
    if spread == 0:
        return 0.0
    z = (yc - yc.mean()) / spread
    basis = torch.stack([torch.ones_like(z), z, z * z], 1)
    fit = torch.linalg.lstsq(basis, yo[:, None]).solution
    residual = yo - (basis @ fit)[:, 0]
    return float(residual.pow(2).mean().sqrt()) / spread


def style_taken(report: Mapping) -> float:
    """From a ``painterly.score`` report (normalised, the seed's taps): Σ_l w_l L_l(output)/L_l(content) / Σ_l w_l.

    The normaliser of each style layer is its term for the content image itself, so this is the
    output's style term relative to the content image's: 1 = no style taken, 0 = the style's Gram matrices.
    """
    weights = report["weights"]["layer_weights"]
    norms = report["normalizers"]["style"]
    total = sum(weights.values())
    return sum(w * report["style_layers"][layer] / norms[layer] for layer, w in weights.items()) / total


def measure(output: torch.Tensor, content: torch.Tensor) -> dict[str, float]:
    """The three image measures of ``output`` against ``content`` (same size), by name."""
    return {
        "content": content_kept(output, content),
        "region": weakest_region(output, content),
        "invented": invented(output, content),
    }
