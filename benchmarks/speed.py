"""``python -m benchmarks.speed``: painterly against the plain recipe, in one run, into BENCHMARKS.md.

Sections: machine; throughput of one VGG19 forward and backward against this machine's matmul;
time to quality at 512 px with vgg16-hed (plain recipe for N evaluations, then painterly's default
schedule, extended past its default length only to find when it reaches the plain recipe's loss);
the loss-against-seconds plot; side-by-side pictures at equal time and equal loss; peak memory by
output size. Every loss is painterly.score of a saved 8-bit image, same Settings for both. The
generated part of BENCHMARKS.md lies between two markers; text outside them is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import painterly
from painterly.config import Settings

from . import memory, throughput
from .recipes import painterly_run, plain_recipe, score_image, time_to_quality
from .report import plot_curves, side_by_side

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "src" / "painterly" / "examples"
START, END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
GIB = 2**30


def _machine() -> list[str]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((int(ln.split()[1]) * 1024 for ln in _read("/proc/meminfo") if ln.startswith("MemTotal")), 0)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}, "
        f"AMX {'yes' if amx else 'no'}; memory {mem / GIB:.1f} GiB",
        f"- torch {torch.__version__}, Python {platform.python_version()}, painterly {painterly.__version__}",
        f"- load average at start: {os.getloadavg()[0]:.2f} (this machine is shared; CPU seconds are given beside wall "
        "seconds because other processes stretch wall time much more than CPU time)",
    ]


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _throughput(repeats: int) -> list[str]:
    rows = [
        "| arithmetic | matmul GFLOP/s (best / median) | VGG19 fwd+bwd GFLOP/s (best / median) | VGG / matmul (best) |",
        "|---|---|---|---|",
    ]
    runs = [("float32, NCHW (plain layout)", torch.float32, False), ("float32, channels-last", torch.float32, True)]
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        runs.append(("bfloat16, channels-last (AMX)", torch.bfloat16, True))
    for label, dtype, channels_last in runs:
        r = throughput.measure(repeats=repeats, dtype=dtype, channels_last=channels_last)
        mm, vgg = r["matmul"], r["vgg"]
        rows.append(
            f"| {label} | {mm.best:.0f} / {mm.median:.0f} | {vgg.best:.0f} / {vgg.median:.0f} "
            f"({vgg.gflop:.0f} GFLOP in {vgg.best_s:.2f} s) | **{vgg.best / mm.best:.0%}** |"
        )
    return rows


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _race(style: str, s: Settings, evaluations: int, extra: int, folder: Path, img_dir: Path) -> dict:
    content, style_path = EXAMPLES / "tubingen.jpg", EXAMPLES / f"{style}.jpg"
    plain_s = dataclasses.replace(s, precision="float32")
    _say(f"{style}: plain recipe, {evaluations} evaluations")
    base = plain_recipe(content, style_path, plain_s, evaluations)
    target = score_image(base.result, content, style_path, s, folder)
    default_final = s.iterations
    _say(f"{style}: painterly (plain recipe scored {target:.4f} in {base.wall[-1]:.0f} s)")
    fast = painterly_run(content, style_path, dataclasses.replace(s, iterations=default_final + extra), target,
                         stop_after=default_final)  # fmt: skip
    end = fast.final_from + default_final - 1  # the default schedule's last evaluation
    default_score = score_image(fast.images[end], content, style_path, s, folder)
    reached = time_to_quality(fast, target, content, style_path, s, folder)
    base_equal = base.first_reaching(default_score)  # plain recipe's time to painterly's default quality
    out = {
        "style": style, "base": base, "fast": fast, "target": target, "end": end, "default_score": default_score,
        "reached": reached, "base_equal": base_equal,
    }  # fmt: skip
    marks = {f"default ends ({default_score:.3f})": (fast.wall[end - 1], default_score)}
    if reached:
        marks[f"reaches plain's {target:.3f}"] = (fast.wall[reached[0] - 1], reached[1])
    out["plot"] = plot_curves(base, fast, target, marks, img_dir / f"loss_vs_seconds_{style}.png")
    at_time = max((i for i in base.images if base.wall[i - 1] <= fast.wall[end - 1]), default=min(base.images))
    panels = [
        (f"plain recipe at equal time\n{base.wall[at_time - 1]:.0f} s, eval {at_time}", base.images[at_time]),
        (f"painterly default\n{fast.wall[end - 1]:.0f} s, loss {default_score:.3f}", fast.images[end]),
    ]
    if base_equal is not None:
        near = min(base.images, key=lambda i: abs(i - base_equal))
        panels.append((f"plain recipe at equal loss\n{base.wall[near - 1]:.0f} s, eval {near}", base.images[near]))
    panels.append((f"plain recipe, {evaluations} evals\n{base.wall[-1]:.0f} s, loss {target:.3f}", base.result))
    out["pictures"] = side_by_side(panels, img_dir / f"compare_{style}.jpg", width=256)
    return out


def _race_rows(races: list[dict], evaluations: int) -> list[str]:
    rows = [
        f"| style | plain, {evaluations} evals: s wall / CPU, loss | painterly default: s wall / CPU, loss "
        "| painterly to plain's loss: s wall / CPU | **time-to-quality ratio** wall / CPU "
        "| plain to painterly-default loss: s | equal-loss ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in races:
        base, fast, end = r["base"], r["fast"], r["end"]
        plain = f"{base.wall[-1]:.0f} / {base.cpu[-1]:.0f}, {r['target']:.4f}"
        default = f"{fast.wall[end - 1]:.0f} / {fast.cpu[end - 1]:.0f}, {r['default_score']:.4f}"
        if r["reached"]:
            i = r["reached"][0]
            tq = f"{fast.wall[i - 1]:.0f} / {fast.cpu[i - 1]:.0f} (final-scale eval {i - fast.final_from + 1})"
            ratio = f"**{base.wall[-1] / fast.wall[i - 1]:.2f}x** / {base.cpu[-1] / fast.cpu[i - 1]:.2f}x"
        else:
            best = min(fast.loss[fast.final_from - 1 :])
            tq = f"not reached in {len(fast.loss) - fast.final_from + 1} final evals (best {best:.4f})"
            ratio = "n/a"
        if r["base_equal"]:
            j = r["base_equal"]
            eq = f"{base.wall[j - 1]:.0f} (eval {j})"
            wall, cpu = base.wall[j - 1] / fast.wall[end - 1], base.cpu[j - 1] / fast.cpu[end - 1]
            eq_ratio = f"{wall:.2f}x wall / {cpu:.2f}x CPU"
        else:
            eq, eq_ratio = "not reached", "> " + f"{base.wall[-1] / fast.wall[end - 1]:.2f}x"
        rows.append(f"| {r['style']} | {plain} | {default} | {tq} | {ratio} | {eq} | {eq_ratio} |")
    if len(races) > 1:
        ratios = [r["base"].wall[-1] / r["fast"].wall[r["reached"][0] - 1] for r in races if r["reached"]]
        if ratios:
            rows.append(f"\nMedian time-to-quality ratio (wall): **{statistics.median(ratios):.2f}x**")
    return rows


def _memory_rows(sizes: list[int]) -> list[str]:
    rows = [
        "| output | peak RSS measured | + L-BFGS history still to come | full-run bound | wall s (2 final evals) |",
        "|---|---|---|---|---|",
    ]
    for size in sizes:
        _say(f"peak memory at {size} px")
        r = memory.measure(size)
        if "error" in r:
            rows.append(f"| {size} px | failed: {r['error']} | | | |")
            continue
        peak, later = r["peak_bytes"] / GIB, r["history_to_come_bytes"] / GIB
        rows.append(
            f"| {r['width']}x{r['height']} | {peak:.2f} GiB | {later:.2f} GiB ({r['history_pairs']} pairs) "
            f"| **{peak + later:.2f} GiB** | {r['seconds']:.0f} |"
        )
    return rows


def write(path: Path, lines: list[str]) -> None:
    old = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    head, _, rest = old.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(head + START + "\n" + "\n".join(lines) + "\n" + END + tail)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n")[0])
    p.add_argument("--styles", default="starry_night", help="comma-separated shipped styles, or 'all'")
    p.add_argument("--evaluations", type=int, default=300, help="plain recipe's evaluations")
    p.add_argument("--extra", type=int, default=300, help="final-scale evaluations painterly may add to reach it")
    p.add_argument("--sizes", default="512,1024,2048,4096", help="output sizes for peak memory ('' to skip)")
    p.add_argument("--repeats", type=int, default=8, help="throughput repeats (the best is reported)")
    p.add_argument("--size", type=int, default=512, help="output size of the race (512 is the target's)")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img" / "bench")
    args = p.parse_args(argv)
    styles = ["starry_night", "the_scream", "shipwreck"] if args.styles == "all" else args.styles.split(",")
    args.img_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    s = Settings(model="vgg16-hed", size=args.size)
    lines = ["## Machine", "", *_machine(), ""]
    painterly.score(EXAMPLES / "tubingen.jpg", EXAMPLES / "tubingen.jpg", EXAMPLES / "starry_night.jpg", s)  # warm
    _say("throughput")
    lines += ["## Throughput: one forward and backward of VGG19 at 512x512", "", *_throughput(args.repeats), ""]
    races = []
    with tempfile.TemporaryDirectory() as tmp:
        for style in styles:
            races.append(_race(style, s, args.evaluations, args.extra, Path(tmp), args.img_dir))
    rel = lambda q: q.relative_to(args.out.parent).as_posix()  # noqa: E731
    lines += [f"## Time to quality at {args.size} px (vgg16-hed, tubingen.jpg)", ""]
    lines += [*_race_rows(races, args.evaluations), ""]
    for r in races:
        lines += [f"![loss against seconds, {r['style']}]({rel(r['plot'])})", "",
                  f"![equal time and equal loss, {r['style']}]({rel(r['pictures'])})", ""]  # fmt: skip
    sizes = [int(x) for x in args.sizes.split(",") if x]
    if sizes:
        lines += ["## Peak memory by output size (default settings, final scale, 2 evaluations)", ""]
        lines += [*_memory_rows(sizes), ""]
    lines += [f"Benchmark wall time: {(time.perf_counter() - started) / 60:.1f} min; "
              f"load average at the end: {os.getloadavg()[0]:.2f}."]  # fmt: skip
    write(args.out, lines)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
