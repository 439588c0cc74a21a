"""The taper by eye: one run of the 0.5 schedule, the final scale saved at the counts other exponents give it.

``python -m benchmarks.taper OUTDIR [SIZE] [--content IMAGE] [--style IMAGE]`` (default 2048 px,
tubingen in starry_night's style; an IMAGE is a path, or a name in the package's examples or in
``../shared/images``): ``--model vgg16-hed``, otherwise the defaults but the taper exponent,
:data:`painterly.plan.FINE_EXPONENT` (0.5, the default until the ninth session, the longest
schedule). L-BFGS here takes one fixed step per evaluation and a scale's output is its last
evaluated image, so the final scale's image after k evaluations of this run *is*
the output of a run whose final scale gets k: one run gives the final scale at the counts exponents
1.5, 1.0 and 0.5 would give it (:func:`snapshots`; tubingen at 2048 px 29, 50 and 87, grace_hopper
24, 44 and 81), each saved as ``OUTDIR/final-K.png`` with its loss terms and the run's elapsed time (and, past the
middle one, every :data:`LATEST_EVERY` evaluations as ``final-latest.png``, for a run cut short).
The scale before it runs the 0.5 schedule's count in all three (tubingen's 1448 px scale 41, where exponent 1.5
would give it 27 and 1.0 33; grace_hopper's 38, 22 and 29); its image after each of those counts is
saved (``OUTDIR/prev-K.pt``, the exact float32 pixels) for ``branch``.

``python -m benchmarks.taper branch OUTDIR K N [SIZE]``: the final scale run N evaluations from
``prev-K.pt`` carried up as the run carries a scale up (bicubic, clamped, plus the content's detail
when ``carry_detail`` is on), on the pair (and size) ``OUTDIR/taper.json`` names: with K, N = 27, 29
(tubingen) or 22, 24 (grace_hopper) the exact 1.5 schedule's final scale, its ladder shared with the
main run. ``branch OUTDIR 41 1`` (grace_hopper: ``38 1``) checks the method: its one evaluation's
terms must equal the main run's first evaluation at the final scale. Prints one JSON line (and
writes ``OUTDIR/taper.json`` or ``OUTDIR/branch-K-N.json``).

``python -m benchmarks.taper grid OUTDIR OUT.jpg [NAMES] [--content IMAGE]``: the 100 % crops
(:data:`CROPS`, chosen for the pair's content, placed for 2048 px and scaled with the pictures'
size) of the pictures ``OUTDIR/NAME.png`` side by side (default: the three snapshots).
``python -m benchmarks.taper estimate [SIZE [EXPONENT]]``: the CLI's time model for a
default (vgg19) picture of SIZE px (default 4096) at that taper.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "painterly" / "examples"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"  # ../shared/images beside the checkout
EXPONENTS = (1.5, 1.0, 0.5)
PAIR = ("tubingen.jpg", "starry_night.jpg")
LATEST_EVERY = 5  # past the middle snapshot, the final scale is also saved every this many evaluations


def image_path(name: str) -> Path:
    """IMAGE as given if it is a file, else the package example or the ``../shared/images`` picture of that name."""
    for path in (Path(name), EXAMPLES / name, SHARED / name):
        if path.is_file():
            return path
    raise SystemExit(f"taper: no image {name} (not a file, nor in {EXAMPLES} or {SHARED})")


def _settings(size: int):
    from painterly.config import Settings
    from painterly.plan import FINE_EXPONENT

    # the longest of the three schedules (0.5, the default until the ninth session): its run holds the others
    return Settings(model="vgg16-hed", size=size, taper_exponent=FINE_EXPONENT)


def plans(size: int, shape: tuple[int, int]) -> dict:
    """Each exponent's scale plan at SIZE px for a content of (height, width) ``shape``:
    {exponent: [(height, width, evaluations), ...]}."""
    from painterly.plan import plan_scales

    s = _settings(size).resolved()
    return {e: [(*p.size, p.evaluations) for p in plan_scales(dataclasses.replace(s, taper_exponent=e), shape)]
            for e in EXPONENTS}  # fmt: skip


def _counts(size: int, content: str = PAIR[0]) -> dict:
    """:func:`plans` for the picture ``content``."""
    from painterly.image import load_image

    return plans(size, tuple(load_image(image_path(content)).shape[-2:]))


def snapshots(counts: dict) -> tuple[list[int], list[int], list[int]]:
    """What the run of the 0.5 schedule (``counts[0.5]``, from :func:`plans`) saves: the evaluations
    before each scale (its iteration offsets), the final scale's counts under every exponent, and the
    scale before it's, each sorted."""
    today = counts[0.5]
    offsets = [sum(p[2] for p in today[:i]) for i in range(len(today))]
    final_at = sorted({c[-1][2] for c in counts.values()})
    prev_at = sorted({c[-2][2] for c in counts.values()})
    return offsets, final_at, prev_at


def _terms(losses: dict) -> dict:
    return {k: losses[k] for k in ("total", "content", "style", "tv") if k in losses}


def main(outdir: str, size: int = 2048, content: str = PAIR[0], style: str = PAIR[1]) -> dict:
    from painterly.threads import configure_threads

    plan = configure_threads()
    import torch

    import painterly
    from painterly.image import save_image

    out_dir = Path(outdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = _counts(size, content)
    offsets, final_at, prev_at = snapshots(counts)
    last, prev = len(offsets) - 1, len(offsets) - 2
    out: dict = {"size": size, "content": content, "style": style, "counts": {str(e): c for e, c in counts.items()},
                 "threads": plan.threads, "snapshots": {}, "previous": {}, "elapsed": []}  # fmt: skip

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
        elif step.scale == last and done > final_at[-2] and done % LATEST_EVERY == 0:
            save_image(step.image, out_dir / "final-latest.png")  # a run cut short still has its furthest point
            out["latest"] = {"done": done, **record}
        if step.scale == last and done == 1:
            out["final_first"] = record
        print(f"scale {step.scale} eval {done} t {step.elapsed:.0f}s total {step.losses['total']:.5g}", flush=True)
        (out_dir / "taper.json").write_text(json.dumps(out))

    began = time.perf_counter()
    result = painterly.stylize(image_path(content), image_path(style), _settings(size), callback=callback)
    out["seconds"] = time.perf_counter() - began
    out["evaluations"] = result.evaluations
    (out_dir / "taper.json").write_text(json.dumps(out))
    return out


def _run_of(out_dir: Path) -> dict:
    """The main run's record in OUTDIR (its pair and size; last session's tubingen run has no pair)."""
    path = out_dir / "taper.json"
    run = json.loads(path.read_text()) if path.is_file() else {}
    return {"size": run.get("size", 2048), "content": run.get("content", PAIR[0]), "style": run.get("style", PAIR[1])}


def branch(outdir: str, k: int, n: int, size: int | None = None) -> dict:
    """The final scale, N evaluations, from the previous scale's image after K (see the module's text)."""
    from painterly.threads import configure_threads

    plan = configure_threads()
    import torch

    import painterly
    from painterly.image import load_image, resize, resize_to, save_image
    from painterly.optimize import upsample

    out_dir = Path(outdir)
    run = _run_of(out_dir)
    size = size or run["size"]
    s = _settings(size).resolved()
    coarse = torch.load(out_dir / f"prev-{k}.pt")
    counts = _counts(size, run["content"])[0.5]
    final = tuple(counts[-1][:2])
    image = upsample(coarse, final)
    if s.carry_detail:  # as painterly.api's detail(): what the content loses between the two sizes
        content = resize(load_image(image_path(run["content"])), s.size)
        detail = resize_to(content, final) - upsample(resize_to(content, tuple(coarse.shape[-2:])), final)
        image = (image + detail).clamp(0, 1)
    out: dict = {**run, "size": size, "from": k, "evaluations": n, "threads": plan.threads,
                 "steps": []}  # fmt: skip

    def callback(step) -> None:
        out["steps"].append({"done": step.iteration, **_terms(step.losses), "elapsed": step.elapsed})
        print(f"branch eval {step.iteration} t {step.elapsed:.0f}s total {step.losses['total']:.5g}", flush=True)

    began = time.perf_counter()
    result = painterly.stylize(image_path(run["content"]), image_path(run["style"]), s, scales=(size,),
                               iterations=n, taper=False, init_image=image, callback=callback)  # fmt: skip
    out["seconds"] = time.perf_counter() - began
    save_image(result.image, out_dir / f"branch-{k}-{n}.png")
    (out_dir / f"branch-{k}-{n}.json").write_text(json.dumps(out))
    return out


# 100 % crops of a 2048 px output, (left, top) of CROP px squares, by the content's name.
# tubingen (2048x1536): the sky's swirls, the houses' windows (the yellow and the pink house), the
# church tower's spire. grace_hopper (1748x2048, 3.41x the 512x600 photograph): her right eye behind
# the glasses, the nose's tip and the mouth, the flat blue background right of the cap.
CROPS = {
    "tubingen": {"sky": (700, 120), "windows": (1620, 560), "tower": (1210, 250)},
    "grace_hopper": {"eye": (606, 538), "nose-mouth": (742, 767), "background": (1391, 555)},
}
CROP = 256


def grid(outdir: str, out: str, names: str | None = None, content: str | None = None) -> None:
    """One JPEG: a row per crop of :data:`CROPS` (of ``content``, else the run's content), a column
    per picture ``OUTDIR/NAME.png`` (default: the run's snapshots, fewest evaluations first),
    labelled. The crops are placed for a 2048 px picture and scale with the pictures' longest side
    (a 4096 px picture's crops are 512 px, at the same places), so each stays at 100 %."""
    from PIL import Image, ImageDraw

    out_dir = Path(outdir)
    crops = CROPS[Path(content or _run_of(out_dir)["content"]).stem]
    if names is None:
        path = out_dir / "taper.json"
        saved = sorted(int(k) for k in json.loads(path.read_text())["snapshots"]) if path.is_file() else [29, 50, 87]
        names = ",".join(f"final-{k}" for k in saved)
    pictures = [Image.open(out_dir / f"{n}.png").convert("RGB") for n in names.split(",")]
    k = max(pictures[0].size) / 2048
    side = round(CROP * k)
    label = 18
    sheet = Image.new("RGB", (side * len(pictures), label + side * len(crops)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, (name, picture) in enumerate(zip(names.split(","), pictures)):
        draw.text((c * side + 4, 3), name, fill="black")
        for r, (left, top) in enumerate(crops.values()):
            x, y = round(left * k), round(top * k)
            sheet.paste(picture.crop((x, y, x + side, y + side)), (c * side, label + r * side))
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


def _options(args: list[str]) -> tuple[list[str], dict]:
    """``--content X`` / ``--style Y`` out of ARGS: (the rest, {"content": X, "style": Y})."""
    rest, pair = [], {}
    it = iter(args)
    for a in it:
        if a in ("--content", "--style"):
            pair[a[2:]] = next(it, None) or sys.exit(f"taper: {a} needs an image")
        else:
            rest.append(a)
    return rest, pair


if __name__ == "__main__":
    a, pair = _options(sys.argv[1:])
    if a and a[0] == "branch":
        print(json.dumps(branch(a[1], int(a[2]), int(a[3]), *(int(x) for x in a[4:5]))))
    elif a and a[0] == "grid":
        grid(*a[1:4], content=pair.get("content"))
    elif a and a[0] == "estimate":
        print(json.dumps(estimate(*(int(x) for x in a[1:2]), *(float(x) for x in a[2:3]))))
    else:
        print(json.dumps(main(a[0], *(int(x) for x in a[1:2]), **pair)))
