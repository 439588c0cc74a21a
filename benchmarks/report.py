"""Figures for BENCHMARKS.md: the loss-against-seconds plot and labelled side-by-side pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .recipes import Trace


def plot_curves(base: Trace, fast: Trace, target: float, marks: dict[str, tuple[float, float]], path: Path) -> Path:
    """Loss (log scale) against wall seconds; painterly's coarse scales as a shaded span."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    ax.plot(base.wall, base.loss, color="#888888", lw=1.6, label="plain recipe (1 scale, float32 L-BFGS)")
    k = fast.final_from - 1
    coarse_end = fast.wall[k - 1] if k > 0 else 0.0
    ax.axvspan(0, coarse_end, color="#f4c77d", alpha=0.35, lw=0, label="painterly: coarse scales")
    ax.plot(fast.wall[k:], fast.loss[k:], color="#c0392b", lw=1.8, label="painterly: final scale")
    ax.axhline(target, color="#444444", lw=0.8, ls="--", label=f"plain recipe after {len(base.loss)} evals")
    for label, (x, y) in marks.items():
        ax.plot([x], [y], "o", color="black", ms=4)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_yscale("log")
    lowest = min([target, *fast.loss[k:], *(y for _, y in marks.values())])
    ax.set_ylim(lowest * 0.95, 3 * target)  # the tail is where the race is decided
    ax.set_xlim(0, max(base.wall[-1], fast.wall[-1]) * 1.02)
    ax.set_xlabel("wall seconds (same machine, one run)")
    ax.set_ylabel("loss at 512 px (seed objective)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _to_pil(image: torch.Tensor) -> Image.Image:
    array = (image[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(array)


def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans from matplotlib's own fonts (always there with matplotlib), else PIL's default."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except (ImportError, OSError):
        return ImageFont.load_default()


def side_by_side(panels: list[tuple[str, torch.Tensor]], path: Path, width: int = 400) -> Path:
    """Images in a row, each scaled to ``width`` px with its label in a bar underneath; JPEG."""
    tiles = []
    for label, image in panels:
        tile = _to_pil(image)
        tile = tile.resize((width, round(tile.height * width / tile.width)), Image.LANCZOS)
        tiles.append((label, tile))
    font, bar = _font(13), 38
    height = max(t.height for _, t in tiles) + bar
    sheet = Image.new("RGB", (width * len(tiles) + 4 * (len(tiles) - 1), height), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (label, tile) in enumerate(tiles):
        x = n * (width + 4)
        sheet.paste(tile, (x, 0))
        for line_no, line in enumerate(label.split("\n")[:2]):
            draw.text((x + 4, tile.height + 3 + 16 * line_no), line, fill="black", font=font)
    sheet.save(path, quality=72, optimize=True)
    return path
