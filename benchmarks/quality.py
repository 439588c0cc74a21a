"""``python -m benchmarks.quality``: the default against the plain recipe and candidate settings, on pairs
chosen to disagree, judged by measures anyone can recompute (``painterly.quality``), into docs/quality.md.

The development set is built from ``/work/shared/images`` only (``PAINTERLY_IMAGES`` to point
elsewhere): crops, flips and grayscale versions make new pairs. Each painting is cached under
``.cache/quality/`` (ignored by git) by a hash of its inputs and settings, with the last image of
every scale beside it, so a rerun paints only what changed and the coarse scales can be looked at
one by one. Options run subsets cheaply::

    python -m benchmarks.quality                                   # every pair, every candidate, 512 px
    python -m benchmarks.quality --pairs portrait_scream,sky_coins --candidates default,start256 --size 384
    python -m benchmarks.quality --write                           # also rewrite docs/quality.md and its grids

Measures (docs/quality.md says why): *content* (gradient correlation at 2-8 px blur, 1 = the
photograph), *region* (its weakest 4×4 cell), *invented* (coarse luminance the content cannot
explain, 0 = none) and *style* (the seed's style term relative to the content image's, on
vgg16-hed with the seed's taps: 1 = none taken, 0 = the style's statistics). *work* counts a run's
evaluations weighted by their pixels, in final-scale evaluations; *s* is its optimisation seconds
over the default's for the same pair in the same run of this machine (shared, so noisy).
"""

# ruff: noqa: E402  (torch is imported after configure_threads, which must run first)
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from painterly.threads import configure_threads

# Before torch loads: OpenMP's short spin and one thread per free core, as the painterly command
# runs (this machine is shared; two spinning threads beside a neighbour run several times slower).
THREADS = configure_threads(int(os.environ["PAINTERLY_THREADS"]) if os.environ.get("PAINTERLY_THREADS") else None)

import torch

import painterly
from painterly import color
from painterly.config import Settings
from painterly.device import resolve_device, reuse_freed_memory
from painterly.files import atomic_write
from painterly.image import load_image, resize, resize_to, save_image
from painterly.network import resolve_precision
from painterly.plan import plan_scales
from painterly.quality import measure, style_taken

from .report import side_by_side

ROOT = Path(__file__).resolve().parents[1]
IMAGES = Path(os.environ.get("PAINTERLY_IMAGES", "/work/shared/images"))
CACHE = ROOT / ".cache" / "quality"
DOC = ROOT / "docs" / "quality.md"
GRIDS = ROOT / "docs" / "img" / "quality"
VERSION = 1  # bump when a painting made by the same settings would differ (invalidates the cache)
# SOURCES.md: golden_gate.jpg is of unknown origin, for tests only; its pairs get numbers, no grid in docs.
NOT_SHIPPABLE = {"golden_gate.jpg"}


@dataclass(frozen=True)
class Source:
    """An image of the set: a file, optionally cropped (left, top, right, bottom as fractions),
    mirrored left-right, made grayscale."""

    file: str
    crop: tuple[float, float, float, float] | None = None
    flip: bool = False
    gray: bool = False

    def load(self) -> torch.Tensor:
        image = load_image(IMAGES / self.file)
        if self.crop is not None:
            h, w = image.shape[-2:]
            left, top, right, bottom = self.crop
            image = image[..., round(top * h) : round(bottom * h), round(left * w) : round(right * w)]
        if self.flip:
            image = image.flip(-1)
        if self.gray:
            y = 0.299 * image[:, 0:1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:3]
            image = y.repeat(1, 3, 1, 1)
        return image.contiguous()

    def key(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


HOPPER = Source("grace_hopper.jpg")
FACE = Source("grace_hopper.jpg", crop=(0.22, 0.06, 0.82, 0.56))
TUB = Source("tubingen.jpg")
STARRY, SCREAM, SHIP = Source("starry_night.jpg"), Source("the_scream.jpg"), Source("shipwreck.jpg")
GRASS, COINS = Source("grass.png"), Source("coins.png")

# name -> (content, style, what the pair tests). Chosen to disagree: a face forgives nothing a
# landscape does; objects need outlines; a smooth sky shows every invented patch.
PAIRS: dict[str, tuple[Source, Source, str]] = {
    "portrait_scream": (HOPPER, SCREAM, "portrait in a busy scene, sharp high-contrast style"),
    "face_starry": (FACE, STARRY, "close face, swirls"),
    "face_shipwreck": (FACE, SHIP, "close face, soft style"),
    "coins_shipwreck": (Source("coins.png"), SHIP, "objects on a plain ground, grayscale photo, soft style"),
    "tubingen_starry": (TUB, STARRY, "the landscape the old defaults were chosen on"),
    "town_scream": (Source("tubingen.jpg", crop=(0.45, 0.05, 1.0, 0.8)), SCREAM, "architecture, sharp style"),
    "sky_coins": (Source("tubingen.jpg", crop=(0.0, 0.0, 0.75, 0.5)), COINS, "large smooth sky, stone-like texture"),
    "bridge_grass": (Source("golden_gate.jpg"), GRASS, "large smooth sky and water, fibrous texture"),
    "retina_starry": (Source("retina.jpg"), STARRY, "an odd subject"),
    "wide_shipwreck": (Source("tubingen.jpg", crop=(0.0, 0.42, 1.0, 0.68)), SHIP, "very wide strip (5:1)"),
    "tall_starry": (Source("grace_hopper.jpg", crop=(0.38, 0.0, 0.62, 1.0)), STARRY, "very tall strip (1:5)"),
    "gray_grass": (Source("grace_hopper.jpg", flip=True, gray=True), GRASS, "grayscale portrait, mirrored, texture"),
}

PLAIN = "plain"  # the plain recipe at the default's time (one scale, float32, L-BFGS history 100)
# name -> Settings overrides (on Settings(model="vgg16-hed", size=SIZE)); "default" is today's.
CANDIDATES: dict[str, dict] = {
    "default": {},
    "before": {"start_size": 128},  # the default before issue 12
    PLAIN: {"scales": None, "precision": "float32", "history_size": 100},
    "start256": {"start_size": 256},
    "start256_pad": {"start_size": 256, "padding": "replicate-first"},
    "start256_avg": {"start_size": 256, "iterate_average": 0.9},
    "coarse20": {"coarse_iterations": 20},
    "beta30": {"style_weight": 30.0},
    "layers_flat": {"style_layer_weights": (1.0, 1.0, 1.0, 1.0, 1.0)},
    "layers_deep": {"style_layer_weights": (0.25, 0.5, 1.0, 1.0, 1.0)},
    "content_gatys": {"content_layer": "gatys"},
    "lr05": {"learning_rate": 0.5},
    # α at every scale: in a look at the coarse scales only (--scales) this is a coarse content weight.
    "alpha5": {"content_weight": 5.0},
    "alpha20": {"content_weight": 20.0},
    "before_alpha5": {"start_size": 128, "content_weight": 5.0},
    "before_alpha20": {"start_size": 128, "content_weight": 20.0},
    # The five options of issue 12, one at a time on today's ladder.
    "carry": {"carry_detail": True},
    "avg": {"iterate_average": 0.9},
    "w2_b10": {"style_loss": "wasserstein", "style_weight": 10.0},
    "w2_b30": {"style_loss": "wasserstein", "style_weight": 30.0},
    "ccw5": {"coarse_content_weight": 5.0},
    "pad": {"padding": "replicate-first"},
    "tv10": {"tv_weight": 10.0},
    "style08": {"style_scale": 0.8},
    "style05": {"style_scale": 0.5},
    "content_r22": {"content_layer": "relu2_2"},
    # A strip's first scale: 256 px on the longest side leaves a 5:1 strip 50 px tall (a 2:1 sky 128).
    "start362": {"start_size": 362},
    "start512": {"start_size": 512},
    "start512_st06": {"start_size": 512, "style_scale": 0.6},
    # Every scale of the ladder whatever the picture's shape: the default before plan.least_coarse_side.
    "full_ladder": {"scales": (256, 362, 512)},
    "color_none": {"preserve_color": "none"},  # the default before auto: a grey style's Gram term greys the picture
    "hist": {"preserve_color": "histogram"},  # a user's option, as a reference: the style recoloured first
    # Session 3: a Laplacian content term (Li et al. 2017) at λ, pools 4 and 16 px (at 512 px), ungated
    # (every cell alike, as in sessions 3 and 4, whatever today's default gate).
    "lap03": {"laplacian_weight": 0.3, "laplacian_gate": 0.0},
    "lap1": {"laplacian_weight": 1.0, "laplacian_gate": 0.0},
    "lap3": {"laplacian_weight": 3.0, "laplacian_gate": 0.0},
    "lap10": {"laplacian_weight": 10.0, "laplacian_gate": 0.0},
    # Session 4: no Laplacian term whatever the default (the default before session 5).
    "lap0": {"laplacian_weight": 0.0},
    # Session 5: the term only where the photograph has structure (objective.laplacian_gate); lap1g1 is
    # the default since session 5.
    "lap1g1": {"laplacian_weight": 1.0, "laplacian_gate": 1.0},
    "lap1g05": {"laplacian_weight": 1.0, "laplacian_gate": 0.5},
    "lap1g2": {"laplacian_weight": 1.0, "laplacian_gate": 2.0},
    "lap1g1f01": {"laplacian_weight": 1.0, "laplacian_gate": 1.0, "laplacian_gate_floor": 0.1},
    "lap1g1f02": {"laplacian_weight": 1.0, "laplacian_gate": 1.0, "laplacian_gate_floor": 0.2},
    # Session 6: a coarse tone term (objective.lowpass_loss) at μ beside today's gated Laplacian term, and
    # with a floor on the gate (the floor charges the sky's invented rims, the tone term the dome it made).
    "low1": {"lowpass_weight": 1.0},
    "low3": {"lowpass_weight": 3.0},
    "low1f01": {"lowpass_weight": 1.0, "laplacian_gate_floor": 0.1},
    # Session 7: the fine ripple. The coarse scales' result blurred (σ px of that scale) before it is carried
    # up; the coarse scales without the shallow style layers (relu1_2, relu2_2 at 0 below the final scale).
    "blur07": {"carry_blur": 0.7},
    "blur1": {"carry_blur": 1.0},
    "coarse_deep": {"coarse_style_layer_weights": (0.0, 0.0, 0.25, 0.125, 0.0625)},
    # Session 8: the shallow layers partly on at the coarse scales (coarse_deep's flares on the coins, its
    # smaller swirls): relu1_2, relu2_2 at 0.3 and at 0.5 of the default's w_l, the deep three as the default.
    "coarse_soft": {"coarse_style_layer_weights": (0.3, 0.15, 0.25, 0.125, 0.0625)},
    "coarse_half": {"coarse_style_layer_weights": (0.5, 0.25, 0.25, 0.125, 0.0625)},
    # The default before --coarse-shallow-weight 0.3 (session 8's lead): the final scale's w_l at every scale.
    "shallow1": {"coarse_shallow_weight": 1.0},
}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def settings_for(candidate: str, size: int) -> Settings:
    overrides = dict(CANDIDATES[candidate])
    if candidate == PLAIN:
        overrides["scales"] = (size,)
    return Settings(model="vgg16-hed", size=size, **overrides)


# Settings added after paintings were cached, at the value that changes nothing: left out of the
# cache key, so adding an option keeps every cached painting that does not use it.
NEUTRAL = {"style_loss": "gram", "iterate_average": 0.0, "padding": "zeros", "carry_detail": False,
           "coarse_content_weight": 1.0, "strength": None, "laplacian_weight": 0.0,
           "laplacian_pools": [4.0, 16.0], "laplacian_gate": 0.0,
           "laplacian_gate_floor": 0.0, "lowpass_weight": 0.0, "lowpass_pool": 16.0,
           "carry_blur": 0.0, "coarse_style_layer_weights": None}  # fmt: skip


def precision_key(s: Settings) -> str:
    """``auto`` keyed by the arithmetic it picks on this machine: bfloat16 on a CPU with AMX, float32
    elsewhere (a float32 ``auto`` keeps the key "auto", so paintings cached before stay). Without it an
    AMX machine and an AMD one would share cached paintings that differ."""
    if s.precision != "auto":
        return s.precision
    dtype = resolve_precision("auto", resolve_device(s.device))
    return "auto" if dtype == torch.float32 else f"auto:{str(dtype).removeprefix('torch.')}"


def taper_acts(s: Settings, shape: tuple[int, int]) -> bool:
    """Whether ``--taper`` changes the schedule of a run of ``s`` on a content of ``shape``."""
    r = s.resolved()
    return plan_scales(r, shape) != plan_scales(dataclasses.replace(r, taper=False), shape)


def settings_key(s: Settings, shape: tuple[int, int] | None = None) -> dict:
    """The settings that decide the painting, as the cache keys it; with the content's ``shape``, the
    taper's settings are dropped where the taper does not act (a 512 px run keeps its cached
    paintings when the default exponent changes)."""
    values = s.to_dict()
    values["precision"] = precision_key(s)
    # λ left to the default is keyed by its value: a candidate that names today's default λ is the default
    values["laplacian_weight"] = s.resolved().laplacian_weight
    if not values["laplacian_weight"]:  # no term: its gate and pools change nothing
        for k in ("laplacian_gate", "laplacian_gate_floor", "laplacian_pools"):
            values.pop(k, None)
    if shape is not None and not taper_acts(s, shape):
        for k in ("taper", "taper_exponent"):
            values.pop(k, None)
    return {k: v for k, v in values.items() if not (k in NEUTRAL and v == NEUTRAL[k])}


def planned_ladder(pair: str, s: Settings) -> list[list[int]]:
    """The (height, width) of each scale a run of ``s`` on this pair's content makes."""
    shape = tuple(PAIRS[pair][0].load().shape[-2:])
    return [list(p.size) for p in plan_scales(s.resolved(), shape)]


def work_of(result: painterly.Result, scales: int = 0) -> float:
    """Evaluations weighted by their pixels, in evaluations at the output's size (the first ``scales``
    scales only, if given)."""
    plans = plan_scales(result.settings, tuple(result.image.shape[-2:]))
    final = plans[-1].size[0] * plans[-1].size[1]
    counts: dict[int, int] = {}
    for h in result.history:
        if not scales or int(h["scale"]) < scales:
            counts[int(h["scale"])] = counts.get(int(h["scale"]), 0) + 1
    return sum(n * plans[i].size[0] * plans[i].size[1] / final for i, n in counts.items())


def paint(pair: str, candidate: str, size: int, budget: float | None = None, scales: int = 0,
          cached_only: bool = False) -> dict | None:  # fmt: skip
    """Paint (or read from the cache) one pair with one candidate; the record and the image path.

    The plain recipe runs until its optimisation time reaches ``budget`` seconds (the default's for
    this pair), then stops: equal time. With ``scales`` the run stops after that many scales (a
    look at what the coarse scales made, at a fraction of the cost) and that scale's image is judged."""
    content, style, _ = PAIRS[pair]
    # --preserve-color auto keyed as what it becomes on this pair, so it shares the paintings of
    # the explicit value (a grey style's default is the "lum" painting, a colour one's "none").
    photo, art = content.load(), style.load()
    s = settings_for(candidate, size).with_color_for(color.is_grey(art), color.is_grey(photo))
    shape = tuple(photo.shape[-2:])
    spec = {"version": VERSION, "content": content.key(), "style": style.key(), "settings": settings_key(s, shape)}
    if candidate == PLAIN:
        spec["settings"]["iterations"] = "until the default's seconds"
    if scales:
        spec["scales"] = scales
    ladder = planned_ladder(pair, s)
    if len(ladder) < len(s.resolved().scale_sizes()):  # a thin picture's coarse scales skipped (plan.least_coarse_side)
        spec["ladder"] = ladder
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    tail = f"-{size}{f'-s{scales}' if scales else ''}-{digest}"
    folder = CACHE / "paint" / pair / f"{candidate}{tail}"
    # The same settings under another candidate's name (today's default is tomorrow's "before").
    for record_path in [folder / "record.json", *sorted((CACHE / "paint" / pair).glob(f"*{tail}/record.json"))]:
        if record_path.exists():
            return {**json.loads(record_path.read_text()), "candidate": candidate}
    if cached_only:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    if candidate == PLAIN:
        assert budget is not None
        s = dataclasses.replace(s, iterations=100_000)
    stop = threading.Event()
    last: dict[int, torch.Tensor] = {}

    def callback(step: painterly.Step) -> None:
        if step.scale not in last:
            say(f"  scale {step.scale + 1}/{step.scales} ({step.size[1]}x{step.size[0]}) at {step.elapsed:.0f} s")
        last[step.scale] = step.image
        if (budget is not None and step.elapsed >= budget) or (scales and step.scale >= scales):
            stop.set()

    say(f"painting {pair} with {candidate} at {size} px")
    with reuse_freed_memory():
        result = painterly.stylize(photo, art, s, callback=callback, stop=stop)
    for i, image in sorted(last.items()):
        save_image(image, folder / f"scale{i}.png")
    save_image(last[scales - 1] if scales else result.image, folder / "out.png")
    record = {
        "pair": pair,
        "candidate": candidate,
        "size": size,
        "seconds": result.seconds,
        "evaluations": result.evaluations,
        "work": work_of(result, scales),
        "image": str(folder / "out.png"),
        "spec": spec,
    }
    record.update(judge(folder / "out.png", content, style))
    atomic_write(record_path, json.dumps(record, indent=1))
    say(f"  {result.evaluations} evaluations in {result.seconds:.0f} s: " + _numbers(record))
    return record


def judge(path: Path, content: Source, style: Source) -> dict[str, float]:
    """The measures of a saved 8-bit painting (as a user would keep it) against its content."""
    output = load_image(path)
    c = resize_to(content.load(), tuple(output.shape[-2:]))
    numbers = measure(output, c)
    # The seed's Gram term on the RGB painting whatever the candidate's colour option, so the column
    # compares across candidates and with the tables before --preserve-color auto.
    report = painterly.score(output, c, style.load(), Settings(model="vgg16-hed", preserve_color="none"))
    numbers["style"] = style_taken(report)
    return numbers


def _numbers(r: dict) -> str:
    return f"content {r['content']:.3f}, region {r['region']:.3f}, invented {r['invented']:.3f}, style {r['style']:.3f}"


def content_record(pair: str) -> dict:
    """The measures of the content image itself: the yardstick (content 1, invented 0, style 1)."""
    return {"content": 1.0, "region": 1.0, "invented": 0.0, "style": 1.0}


def grid(name: str, pair: str, records: list[dict], size: int, folder: Path) -> Path:
    content, style, _ = PAIRS[pair]
    panels = [("content", resize(content.load(), size)), ("style", resize(style.load(), size))]
    for r in records:
        label = f"{r['candidate']}  {r['work']:.0f} evals\nc {r['content']:.2f} r {r['region']:.2f} "
        label += f"i {r['invented']:.2f} s {r['style']:.2f}"
        panels.append((label, load_image(r["image"])))
    folder.mkdir(parents=True, exist_ok=True)
    return side_by_side(panels, folder / f"{name}.jpg", width=size)


def table(records: list[dict]) -> list[str]:
    """One row per painting, then the medians over pairs per candidate. Seconds are over the default's for
    the same pair, or where the default is not shown the first candidate's (its name in the header)."""
    names = [r["candidate"] for r in records]
    base = "default" if "default" in names or not names else names[0]
    default_s = {r["pair"]: r["seconds"] for r in records if r["candidate"] == base}
    lines = [
        f"| pair | candidate | content ↑ | weakest region ↑ | invented ↓ | style ↓ | work (evals) | s / {base}'s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        ratio = r["seconds"] / default_s[r["pair"]] if r["pair"] in default_s else float("nan")
        lines.append(
            f"| {r['pair']} | {r['candidate']} | {r['content']:.3f} | {r['region']:.3f} | {r['invented']:.3f} "
            f"| {r['style']:.3f} | {r['work']:.0f} | {ratio:.2f} |"
        )
    return lines


def summary(records: list[dict]) -> list[str]:
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["candidate"], []).append(r)
    lines = [
        "| candidate | pairs | content (median / worst) | weakest region (median / worst) | invented (median / worst) "
        "| style (median / worst) | work |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rs in by.items():

        def med(key: str, worst=min) -> str:
            values = [r[key] for r in rs]
            return f"{statistics.median(values):.3f} / {worst(values):.3f}"

        lines.append(
            f"| {name} | {len(rs)} | {med('content')} | {med('region')} | {med('invented', max)} "
            f"| {med('style', max)} | {statistics.median(r['work'] for r in rs):.0f} |"
        )
    return lines


def write_doc(lines: list[str], key: str) -> None:
    """Replace the tables between this run's markers (``<!-- quality:512:start -->``), added at the end if new."""
    start, end = f"<!-- quality:{key}:start -->", f"<!-- quality:{key}:end -->"
    old = DOC.read_text() if DOC.exists() else "# Picture quality\n"
    if start not in old:
        old = old.rstrip("\n") + f"\n\n{start}\n{end}\n"
    head, _, rest = old.partition(start)
    _, _, tail = rest.partition(end)
    atomic_write(DOC, head + start + "\n" + "\n".join(lines) + "\n" + end + tail)


STRIP = ("tubingen_starry", (0.0, 0.25, 0.5, 0.75, 1.0))


def strength_strip(size: int, strengths: tuple[float, ...]) -> Path:
    """docs/img/strength.jpg: one pair painted at each --strength (cached like the rest)."""
    pair = STRIP[0]
    panels = []
    for value in strengths:
        name = f"strength{value:g}"
        CANDIDATES.setdefault(name, {"strength": value})
        r = paint(pair, name, size)
        s = settings_for(name, size).resolved()
        label = f"--strength {value:g}\nβ {s.style_weight:.3g}, start {min(s.start_size, size)} px"
        panels.append((label, load_image(r["image"])))
    return side_by_side(panels, ROOT / "docs" / "img" / "strength.jpg", width=size)


def _suffix(scales: int) -> str:
    return "" if scales == 0 else "-coarse" if scales < 0 else f"-s{scales}"


def main(argv: list[str] | None = None) -> int:  # noqa: C901
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", default="", help=f"comma-separated subset of: {', '.join(PAIRS)}")
    p.add_argument("--candidates", default="", help=f"comma-separated subset of: {', '.join(CANDIDATES)}")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--scales", type=int, default=0,
                   help="stop after this many scales (the coarse ones); -1: before each ladder's last")  # fmt: skip
    p.add_argument("--strip", action="store_true", help="only make docs/img/strength.jpg (at --size)")
    p.add_argument("--cached", action="store_true", help="paint nothing: report the paintings already cached")
    p.add_argument("--write", action="store_true", help="rewrite this size's tables in docs/quality.md and its grids")
    p.add_argument("--tag", default="", help="a name for this comparison: its tables and grids are kept apart")
    args = p.parse_args(argv)
    if args.strip:
        strengths = tuple(float(x) for x in args.candidates.split(",") if x) or STRIP[1]
        say(f"wrote {strength_strip(args.size, strengths)}")
        return 0
    pairs = [x for x in args.pairs.split(",") if x] or list(PAIRS)
    candidates = [x for x in args.candidates.split(",") if x] or list(CANDIDATES)
    unknown = [x for x in pairs if x not in PAIRS] + [x for x in candidates if x not in CANDIDATES]
    if unknown:
        p.error(f"unknown pair or candidate: {', '.join(unknown)}")
    # The plain recipe is timed against the default: paint the default first.
    order = ["default", *(c for c in candidates if c != "default")]
    records: list[dict] = []
    for pair in pairs:
        done: dict[str, dict] = {}
        for candidate in order:
            if candidate not in candidates and not (candidate == "default" and PLAIN in candidates):
                continue
            budget = done["default"]["seconds"] if candidate == PLAIN and "default" in done else None
            if candidate == PLAIN and budget is None:
                continue
            scales = args.scales
            if scales < 0:  # what the coarse scales hand the final one, whatever the ladder
                scales = len(planned_ladder(pair, settings_for(candidate, args.size))) - 1
            record = paint(pair, candidate, args.size, budget, scales, args.cached)
            if record is not None:
                done[candidate] = record
        shown = [done[c] for c in candidates if c in done]
        records += shown
        if not shown:
            continue
        shipped = args.write and PAIRS[pair][0].file not in NOT_SHIPPABLE
        name = f"{pair}-{args.size}{_suffix(args.scales)}{f'-{args.tag}' if args.tag else ''}"
        grid(name, pair, shown, 240, GRIDS if shipped else CACHE / "grids")
    lines = [*summary(records), "", *table(records)]
    print("\n".join(lines))
    if args.write:
        write_doc(lines, f"{args.size}{_suffix(args.scales)}{f'-{args.tag}' if args.tag else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
