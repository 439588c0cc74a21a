"""The taper by eye: one run of today's schedule, the final scale saved at the counts other exponents give it.

``python -m benchmarks.taper OUTDIR [SIZE]`` (default 2048 px): tubingen in starry_night's style,
``--model vgg16-hed``, otherwise the defaults (taper exponent :data:`painterly.plan.FINE_EXPONENT`).
L-BFGS here takes one fixed step per evaluation and a scale's output is its last evaluated image, so
the final scale's image after k evaluations of this run *is* the output of a run whose final scale
gets k: one run gives the final scale at the counts exponents 1.5, 1.0 and 0.5 would give it (at
2048 px 29, 50 and 87), each saved as ``OUTDIR/final-K.png`` with its loss terms and the run's
elapsed time. The scale before it runs today's count in all three (at 2048 px the 1448 px scale's
41; exponent 1.5 would give it 27, 1.0 33); its image after each of those counts is saved
(``OUTDIR/prev-K.pt``, the exact float32 pixels) for ``branch``.

``python -m benchmarks.taper branch OUTDIR K N [SIZE]``: the final scale run N evaluations from
``prev-K.pt`` carried up as the run carries a scale up (bicubic, clamped, plus the content's detail
when ``carry_detail`` is on): with K, N = 27, 29 the exact 1.5 schedule's final scale, its ladder
shared with the main run. ``branch OUTDIR 41 1`` checks the method: its one evaluation's terms must
equal the main run's first evaluation at the final scale. Prints one JSON line (and writes
``OUTDIR/taper.json`` or ``OUTDIR/branch-K-N.json``).

``python -m benchmarks.taper grid OUTDIR OUT.jpg [NAMES]``: the 100 % crops (:data:`CROPS`) of the
pictures ``OUTDIR/NAME.png`` side by side. ``python -m benchmarks.taper estimate [SIZE [EXPONENT]]``:
the CLI's time model for a default (vgg19) picture of SIZE px (default 4096) at that taper.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "painterly" / "examples"
EXPONENTS = (1.5, 1.0, 0.5)


def _settings(size: int):
    from painterly.config import Settings

    return Settings(model="vgg16-hed", size=size)


def _counts(size: int) -> dict:
    """Each exponent's scale plan at SIZE px: {exponent: [(height, width, evaluations), ...]}."""
    from painterly.image import load_image
    from painterly.plan import plan_scales

    s = _settings(size).resolved()
    shape = tuple(load_image(EXAMPLES / "tubingen.jpg").shape[-2:])
    return {e: [(*p.size, p.evaluations) for p in plan_scales(dataclasses.replace(s, taper_exponent=e), shape)]
            for e in EXPONENTS}  # fmt: skip


def _terms(losses: dict) -> dict:
    return {k: losses[k] for k in ("total", "content", "style", "tv") if k in losses}


def main(outdir: str, size: int = 2048) -> dict:
    from painterly.threads import configure_threads

    plan = configure_threads()
    import torch

    import painterly
    from painterly.image import save_image

    out_dir = Path(outdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = _counts(size)
    today = counts[0.5]
    offsets = [sum(p[2] for p in today[:i]) for i in range(len(today))]
    last, prev = len(today) - 1, len(today) - 2
    final_at = sorted({c[last][2] for c in counts.values()})
    prev_at = sorted({c[prev][2] for c in counts.values()})
    out: dict = {"size": size, "counts": {str(e): c for e, c in counts.items()}, "threads": plan.threads,
                 "snapshots": {}, "previous": {}, "elapsed": []}  # fmt: skip

    def callback(step) -> None:
        done = step.iteration - offsets[step.scale]
        out["elapsed"].append([step.scale, done, round(step.elapsed, 2)])
        record = {"elapsed": step.elapsed, **_terms(step.losses)}
        if step.scale == last and done in final_at:
            save_image(step.image, out_dir / f"final-{done}.png")
            out["snapshots"][str(done)] = record
        elif step.scale == prev and done in prev_at:
            torch.save(step.image, out_dir / f"prev-{done}.pt")
            out["previous"][str(done)] = record
        if step.scale == last and done == 1:
            out["final_first"] = record
        print(f"scale {step.scale} eval {done} t {step.elapsed:.0f}s total {step.losses['total']:.5g}", flush=True)
        (out_dir / "taper.json").write_text(json.dumps(out))

    began = time.perf_counter()
    result = painterly.stylize(EXAMPLES / "tubingen.jpg", EXAMPLES / "starry_night.jpg", _settings(size),
                               callback=callback)  # fmt: skip
    out["seconds"] = time.perf_counter() - began
    out["evaluations"] = result.evaluations
    (out_dir / "taper.json").write_text(json.dumps(out))
    return out


def branch(outdir: str, k: int, n: int, size: int = 2048) -> dict:
    """The final scale, N evaluations, from the previous scale's image after K (see the module's text)."""
    from painterly.threads import configure_threads

    plan = configure_threads()
    import torch

    import painterly
    from painterly.image import load_image, resize, resize_to, save_image
    from painterly.optimize import upsample

    out_dir = Path(outdir)
    s = _settings(size).resolved()
    coarse = torch.load(out_dir / f"prev-{k}.pt")
    counts = _counts(size)[0.5]
    final = tuple(counts[-1][:2])
    image = upsample(coarse, final)
    if s.carry_detail:  # as painterly.api's detail(): what the content loses between the two sizes
        content = resize(load_image(EXAMPLES / "tubingen.jpg"), s.size)
        detail = resize_to(content, final) - upsample(resize_to(content, tuple(coarse.shape[-2:])), final)
        image = (image + detail).clamp(0, 1)
    out: dict = {"size": size, "from": k, "evaluations": n, "threads": plan.threads, "steps": []}

    def callback(step) -> None:
        out["steps"].append({"done": step.iteration, **_terms(step.losses), "elapsed": step.elapsed})
        print(f"branch eval {step.iteration} t {step.elapsed:.0f}s total {step.losses['total']:.5g}", flush=True)

    began = time.perf_counter()
    result = painterly.stylize(EXAMPLES / "tubingen.jpg", EXAMPLES / "starry_night.jpg", s, scales=(size,),
                               iterations=n, taper=False, init_image=image, callback=callback)  # fmt: skip
    out["seconds"] = time.perf_counter() - began
    save_image(result.image, out_dir / f"branch-{k}-{n}.png")
    (out_dir / f"branch-{k}-{n}.json").write_text(json.dumps(out))
    return out


# 100 % crops of a 2048x1536 output, (left, top) of CROP px squares: the sky's swirls, the houses'
# windows (the yellow and the pink house), the church tower's spire.
CROPS = {"sky": (700, 120), "windows": (1620, 560), "tower": (1210, 250)}
CROP = 256


def grid(outdir: str, out: str, names: str = "final-29,final-50,final-87") -> None:
    """One JPEG: a row per crop of :data:`CROPS`, a column per picture ``OUTDIR/NAME.png``, labelled."""
    from PIL import Image, ImageDraw

    pictures = [Image.open(Path(outdir) / f"{n}.png").convert("RGB") for n in names.split(",")]
    label = 18
    sheet = Image.new("RGB", (CROP * len(pictures), label + CROP * len(CROPS)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, (name, picture) in enumerate(zip(names.split(","), pictures)):
        draw.text((c * CROP + 4, 3), name, fill="black")
        for r, (left, top) in enumerate(CROPS.values()):
            sheet.paste(picture.crop((left, top, left + CROP, top + CROP)), (c * CROP, label + r * CROP))
    sheet.save(out, quality=85)


def estimate(size: int = 4096, exponent: float = 0.5) -> dict:
    """The CLI's time model (``painterly.api.time_model``) for a default picture of SIZE px (vgg19,
    tubingen in starry_night's style; random weights: the time does not depend on them), at taper
    exponent ``exponent``: its per-pixel rate from a timed 512 px evaluation and each scale's seconds."""
    from painterly.threads import configure_threads

    plan = configure_threads()
    import painterly
    from painterly.api import build_problem, time_model
    from painterly.image import load_image, resize
    from painterly.plan import modelled_seconds, plan_scales

    s = painterly.Settings(size=size, weights="random", taper_exponent=exponent).resolved()
    content = resize(load_image(EXAMPLES / "tubingen.jpg"), size)
    problem = build_problem(content, [str(EXAMPLES / "starry_night.jpg")], s)
    seconds_at = time_model(problem)
    plans = plan_scales(s, tuple(content.shape[-2:]))
    scales = [{"size": p.size, "evaluations": p.evaluations, "seconds": p.evaluations * seconds_at(p.size)}
              for p in plans]  # fmt: skip
    ref = seconds_at((384, 512)) / (384 * 512)
    return {"size": size, "exponent": exponent, "model": s.model, "threads": plan.threads,
            "us_per_pixel": ref * 1e6, "scales": scales, "seconds": modelled_seconds(plans, seconds_at)}  # fmt: skip


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "branch":
        print(json.dumps(branch(a[1], int(a[2]), int(a[3]), *(int(x) for x in a[4:5]))))
    elif a and a[0] == "grid":
        grid(*a[1:4])
    elif a and a[0] == "estimate":
        print(json.dumps(estimate(*(int(x) for x in a[1:2]), *(float(x) for x in a[2:3]))))
    else:
        print(json.dumps(main(a[0], *(int(x) for x in a[1:2]))))
