"""``python -m benchmarks.video``: flicker with and without the temporal term, on a clip whose flow is known.

The clip is a slow pan and zoom over a still photograph (Tübingen, CC BY 3.0, shipped with
painterly), so the true flow between frames is known exactly. Both runs use the same Settings and
the same frames; the only difference is ``temporal_weight`` (0 = independent frames, each with the
full schedule). Reported:

* temporal warping error (Lai et al. 2018): mean over frames t ≥ 2 of the mean squared difference
  between output t and output t-1 warped by the *exact* content flow, over the pixels the exact
  forward-backward check keeps (here: those that were inside frame t-1);
* the style term per frame (``painterly.score`` of each saved 8-bit frame, unweighted Σ w_l L_style);
* seconds per frame, as a ratio (this machine is shared: absolute seconds say little);
* how well DIS recovers the known flow (median end-point error).

It writes ``docs/video/`` (a strip of frames, a side-by-side GIF, results.json) and prints a
Markdown table for docs/video.md and BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import painterly
from painterly import flow
from painterly.config import Settings
from painterly.files import atomic_write
from painterly.image import load_image, resize, to_pil
from painterly.video import FRAME_ITERATIONS, TEMPORAL_WEIGHT, Previous, fit, stylize_frames

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "src" / "painterly" / "examples"
OUT = ROOT / "docs" / "video"
ASPECT = 3 / 4


def camera(frames: int, width: int) -> list[tuple[float, float, float]]:
    """(scale, x offset, y offset) per frame, in source pixels: source point p = offset + scale · u for
    frame point u (pixel centres at x + 0.5). The source is the photograph at 1.25 × the frame's width;
    the window narrows from the frame's width to 90 % of it (a zoom in) while it pans right and down."""
    out = []
    for t in range(frames):
        f = t / max(frames - 1, 1)
        window = width * (1.0 - 0.1 * f)
        cx, cy = width * (0.59 + 0.08 * f), width * ASPECT * (0.62 + 0.02 * f)
        out.append((window / width, cx - window / 2, cy - window * ASPECT / 2))
    return out


def render(source: torch.Tensor, cam: tuple[float, float, float], width: int) -> torch.Tensor:
    """One frame: the source sampled at offset + scale · u, bicubic (the scale is ≤ 1: no aliasing)."""
    height = round(width * ASPECT)
    scale, ox, oy = cam
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    px, py = ox + scale * xs, oy + scale * ys
    grid = torch.stack([px / source.shape[-1] * 2 - 1, py / source.shape[-2] * 2 - 1], dim=-1)[None]
    return F.grid_sample(source, grid.float(), mode="bicubic", align_corners=False).clamp(0, 1)


def exact_flow(a: tuple[float, float, float], b: tuple[float, float, float], width: int) -> torch.Tensor:
    """The true flow from the frame shot with camera ``a`` to the one shot with ``b``: a(u) = b(u + flow)."""
    height = round(width * ASPECT)
    (sa, ax, ay), (sb, bx, by) = a, b
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    u = (ax + sa * xs - bx) / sb - xs
    v = (ay + sa * ys - by) / sb - ys
    return torch.stack([u, v], dim=-1).float()


def run(
    frames: list[torch.Tensor],
    style: torch.Tensor,
    s: Settings,
    weight: float,
    frame_iterations: int,
    first: tuple[torch.Tensor, float] | None = None,
):
    """Outputs and seconds per frame; ``first`` (output, seconds) reuses a first frame made already,
    which is the same with and without the temporal term (the same settings, from the content)."""
    outputs, seconds, previous = [], [], None
    if first is not None:
        outputs, seconds, previous = [first[0]], [first[1]], Previous(fit(frames[0], s.size), first[0])
    start = time.perf_counter()
    for frame in stylize_frames(frames[len(outputs) :], style, s, temporal_weight=weight,
                                frame_iterations=frame_iterations, start=len(outputs), previous=previous):  # fmt: skip
        outputs.append(frame.image)
        seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        print(f"  frame {frame.index + 1}/{len(frames)}: {seconds[-1]:.1f} s, {frame.result.evaluations} evaluations",
              flush=True)  # fmt: skip
    return outputs, seconds


def warping_errors(outputs: list[torch.Tensor], flows: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    return [flow.warping_error(outputs[t], outputs[t - 1], bw, flow.consistency(bw, fw))
            for t, (bw, fw) in enumerate(flows, 1)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--size", type=int, default=256)
    p.add_argument(
        "--temporal-weights",
        type=lambda t: [float(v) for v in t.split(",")],
        default=[TEMPORAL_WEIGHT],
        help="comma-separated; each gets its own run (the table reports the first)",
    )
    p.add_argument("--frame-iterations", type=int, default=FRAME_ITERATIONS)
    p.add_argument("--iterations", type=int, default=100, help="final-scale evaluations of a full schedule")
    p.add_argument("--coarse-iterations", type=int, default=50)
    p.add_argument("--model", default="vgg16-hed")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    width = args.size
    source = resize(load_image(EXAMPLES / "tubingen.jpg"), round(width * 1.25))
    style = load_image(EXAMPLES / "starry_night.jpg")
    cams = camera(args.frames, width)
    frames = [render(source, c, width) for c in cams]
    flows = [(exact_flow(cams[t], cams[t - 1], width), exact_flow(cams[t - 1], cams[t], width))
             for t in range(1, len(cams))]  # fmt: skip
    dis = [flow.optical_flow(frames[t], frames[t - 1]) for t in range(1, len(frames))]
    inside = [flow.consistency(bw, fw).bool() for bw, fw in flows]
    epe = statistics.median(float((d - bw).norm(dim=-1)[m].median()) for d, (bw, _), m in zip(dis, flows, inside))

    # Two scales (128, 256) with the given evaluations: a full schedule that fits a shared 2-core CPU.
    s = Settings(size=width, model=args.model, scale_step=2.0, start_size=width // 2, iterations=args.iterations,
                 coarse_iterations=args.coarse_iterations)  # fmt: skip
    print(f"independent frames ({args.frames} frames, {width} px)", flush=True)
    independent, t_ind = run(frames, style, s, 0.0, args.frame_iterations)
    runs = {}
    for weight in args.temporal_weights:
        print(f"temporal term, weight {weight}", flush=True)
        runs[weight] = run(frames, style, s, weight, args.frame_iterations, first=(independent[0], t_ind[0]))

    def style_terms(outputs: list[torch.Tensor]) -> list[float]:
        return [painterly.score(o, f, style, s)["style"] for o, f in zip(outputs, frames)]

    record = {
        "frames": args.frames, "size": width, "model": args.model, "temporal_weights": args.temporal_weights,
        "frame_iterations": args.frame_iterations, "schedule": s.scale_sizes(), "iterations": args.iterations,
        "coarse_iterations": args.coarse_iterations, "dis_median_epe_px": epe,
        "warping_error": {"content": warping_errors(frames, flows), "independent": warping_errors(independent, flows)},
        "style": {"independent": style_terms(independent)}, "seconds": {"independent": t_ind},
    }  # fmt: skip
    for weight, (outputs, seconds) in runs.items():
        record["warping_error"][str(weight)] = warping_errors(outputs, flows)
        record["style"][str(weight)] = style_terms(outputs)
        record["seconds"][str(weight)] = seconds
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "results.json", json.dumps(record, indent=1))
    _pictures(frames, independent, runs[args.temporal_weights[0]][0], args.out)
    for weight in args.temporal_weights:
        print(f"\ntemporal weight {weight}, {args.frame_iterations} evaluations a frame after the first:")
        print(_table(record, str(weight)))
    return 0


def _table(r: dict, key: str) -> str:
    mean = statistics.fmean
    w, st, sec = (
        {"temporal": r[k][key], **{n: v for n, v in r[k].items() if n in ("content", "independent")}}
        for k in ("warping_error", "style", "seconds")
    )
    # Frame 1 is the same picture in both runs: every measure is over frames 2..N.
    n = r["frames"]
    ratio_w = mean(w["temporal"]) / mean(w["independent"])
    ratio_s = [a / b for a, b in zip(st["temporal"][1:], st["independent"][1:])]
    style = mean(st["temporal"][1:]) / mean(st["independent"][1:])
    seconds = statistics.median(sec["temporal"][1:]) / statistics.median(sec["independent"][1:])
    rows = [
        f"| frames 2..{n} | independent frames | temporal term | ratio |",
        "|---|---|---|---|",
        f"| warping error, mean (the content clip's own: {mean(w['content']):.2e}) | {mean(w['independent']):.2e} | "
        f"{mean(w['temporal']):.2e} | **{ratio_w:.3f}** |",
        f"| style term per frame, mean | {mean(st['independent'][1:]):.4f} | {mean(st['temporal'][1:]):.4f} | "
        f"**{style:.3f}** (per frame {min(ratio_s):.3f} to {max(ratio_s):.3f}) |",
        f"| seconds per frame, median | 1 | | **{seconds:.2f}** |",
    ]  # fmt: skip
    epe = r["dis_median_epe_px"]
    return "\n".join(rows) + f"\n\nDIS flow against the exact flow: median end-point error {epe:.3f} px"


def _pictures(frames, independent, temporal, out: Path) -> None:
    """A strip (rows: content, independent, temporal; four frames) and a side-by-side GIF."""
    from PIL import Image

    from painterly.videoio import write_video

    picks = sorted({0, len(frames) // 3, 2 * len(frames) // 3, len(frames) - 1})
    h, w = frames[0].shape[-2:]
    strip = Image.new("RGB", (w * len(picks), h * 3), "white")
    for row, clip in enumerate((frames, independent, temporal)):
        for col, t in enumerate(picks):
            strip.paste(to_pil(clip[t]), (col * w, row * h))
    atomic_write(out / "strip.jpg", lambda fh: strip.save(fh, format="JPEG", quality=85))
    pairs = [torch.cat([a, b], dim=-1) for a, b in zip(independent, temporal)]
    from fractions import Fraction

    write_video(out / "compare.gif", pairs + pairs[::-1][1:-1], Fraction(8))  # there and back: loops smoothly


if __name__ == "__main__":
    raise SystemExit(main())
