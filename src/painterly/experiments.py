"""The seed's two promised experiments, for any image pair: ``painterly experiment init|beta|plot``.

* ``init``: the same budget started from noise and from the content image, with snapshots.
* ``beta``: a sweep of β (the style weight) over orders of magnitude.

Each run is one call of :func:`painterly.stylize` (the engine, not a copy of it). Every output and
snapshot is saved in the output folder, the numbers go to ``init.json`` / ``beta.json``, and the
figures are drawn from those files alone, so ``painterly experiment plot DIR`` re-draws them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import InputError
from .files import atomic_write
from .optimize import Step

# The seed's setting (one scale) at a size that finishes in minutes on a laptop CPU.
EXPERIMENT_SIZE = 256
EXPERIMENT_ITERATIONS = 150
# β spans the range where the normalised objective goes from "the content image" to "all style";
# the default β (config.STYLE_WEIGHT = 100) sits inside it.
DEFAULT_BETAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
INITS = ("noise", "content")
TERMS = ("content", "style", "tv", "total")
TERM_TITLES = {
    "content": r"content  $L_{content}$",
    "style": r"style  $\sum_l w_l L^l_{style}$",
    "tv": r"total variation  $L_{tv}$",
    "total": r"total  $\alpha L_{content} + \beta L_{style} + \gamma L_{tv}$",
}
PANEL_INCHES = 2.5  # width of one picture in a grid: a 256 px output at FIGURE_DPI is shown ~1:1
FIGURE_DPI = 100
JPEG_QUALITY = 75  # figures are for looking at: a few hundred KB for all of them, no visible blocking
Progress = Callable[[str], Callable[[Step], None] | None]


# ------------------------------------------------------------------------------------ running
def experiment_settings(**overrides: Any) -> Settings:
    """Settings for an experiment's runs: ``overrides`` over the experiments' own defaults.

    Unless ``scales`` is given the run has the seed's single scale (no coarse-to-fine), so noise
    and content starts are compared at the same resolution from the first evaluation.
    """
    base: dict[str, Any] = {"size": EXPERIMENT_SIZE, "iterations": EXPERIMENT_ITERATIONS, **overrides}
    base.setdefault("scales", (base["size"],))
    return Settings(**base).resolved()


def evaluations(s: Settings, content: str | Path | None = None) -> int:
    """Evaluations a run with these settings makes in all scales on this content (default: a square)."""
    from .image import as_image
    from .plan import evaluations as count
    from .plan import plan_scales

    shape = (s.size, s.size) if content is None else as_image(str(content), "content", s.max_pixels).shape[-2:]
    return count(plan_scales(s, tuple(shape)))


def default_snapshots(total: int) -> tuple[int, ...]:
    """The start, then roughly 1/15, 1/5, 1/2 and all of the budget: early changes are fastest."""
    return tuple(sorted({max(1, min(total, round(total * f))) for f in (0, 1 / 15, 1 / 5, 1 / 2, 1)}))


def run_init(content: str, style: str, out_dir: str | Path, *, snapshots: Sequence[int] | None = None,
             progress: Progress | None = None, **overrides: Any) -> dict[str, Any]:  # fmt: skip
    """Noise vs content initialisation with one budget; returns the record written to ``init.json``.

    ``content`` and ``style`` are image files or ``example:NAME``; ``overrides`` are
    :class:`Settings` fields; ``progress(run_name)`` may return a callback for that run's steps.
    """
    if "init" in overrides:
        raise InputError("--init is what the init experiment varies; leave it out")
    s = experiment_settings(**overrides)
    total = evaluations(s, content)
    snaps = tuple(sorted(set(snapshots))) if snapshots else default_snapshots(total)
    bad = [k for k in snaps if not 1 <= k <= total]
    if bad:
        raise InputError(f"--snapshots {bad[0]} is outside 1..{total}, the evaluations of each run")
    out, reference = _prepare(out_dir, content, style, s)
    runs = [
        _run(content, style, dataclasses.replace(s, init=init), out, f"init-{init}", {"init": init}, snaps, progress)
        for init in INITS
    ]
    return _finish(out, "init", content, style, s, runs, reference, snapshots=list(snaps))


def run_beta(content: str, style: str, out_dir: str | Path, *, betas: Sequence[float] = DEFAULT_BETAS,
             progress: Progress | None = None, **overrides: Any) -> dict[str, Any]:  # fmt: skip
    """One run per β (same start, same budget); returns the record written to ``beta.json``."""
    if "style_weight" in overrides:
        raise InputError("--style-weight is what the beta experiment varies; give --betas instead")
    betas = sorted({float(b) for b in betas})
    if not betas:
        raise InputError("--betas needs at least one value")
    s = experiment_settings(**overrides)
    runs_settings = [dataclasses.replace(s, style_weight=b).resolved() for b in betas]  # validates each β
    out, reference = _prepare(out_dir, content, style, s)
    runs = [
        _run(content, style, rs, out, f"beta-{b:g}", {"style_weight": b}, (), progress)
        for b, rs in zip(betas, runs_settings)
    ]
    default = Settings().resolved().style_weight
    return _finish(out, "beta", content, style, s, runs, reference, betas=betas, default_beta=default)


def _prepare(out_dir: str | Path, content: str, style: str, s: Settings) -> tuple[Path, dict[str, float]]:
    """Check what could fail after a long run (folder, matplotlib); save the inputs; measure the
    yardsticks: the content term of the style picture and the style term of the content picture.

    An output's *content error* is its content term over the style picture's, its *style error*
    its style term over the content picture's: 0 means "matches that target", 1 "as far from it as
    the other input is". Unlike raw terms they compare across models, layers and normalisation.
    """
    from .api import score
    from .image import example_path, load_image, resize, resize_to, save_image

    _matplotlib()
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    pictures = {}
    for name, path in (("content", content), ("style", style)):
        pictures[name] = resize(load_image(example_path(str(path))), s.size)
        save_image(pictures[name], out / f"input-{name}.png")
    size = pictures["content"].shape[-2:]
    reference = {
        "content": score(resize_to(pictures["style"], size), str(content), [str(style)], s)["content"],
        "style": score(pictures["content"], str(content), [str(style)], s)["style"],
    }
    return out, reference


def _run(content, style, s: Settings, out: Path, name: str, varied: dict, snaps, progress) -> dict[str, Any]:
    from .api import stylize
    from .image import save_image

    shots: dict[str, str] = {}
    show = progress(name) if progress else None

    def callback(step: Step) -> None:
        if step.iteration in snaps:
            path = save_image(step.image, out / f"{name}_{step.iteration:05d}.png")
            shots[str(step.iteration)] = path.name
        if show is not None:
            show(step)

    result = stylize(str(content), [str(style)], s, callback=callback)  # str: example:NAME works too
    save_image(result.image, out / f"{name}.png")
    return {
        "name": name,
        "settings": varied,
        "image": f"{name}.png",
        "snapshots": shots,
        "final": {k: result.losses[k] for k in TERMS},
        "weights": result.weights,  # α, β, γ and w_l as applied
        "seconds": result.seconds,
        "evaluations": result.evaluations,
        "message": result.message,
        "history": result.history,
    }


def _finish(out: Path, name: str, content, style, s: Settings, runs: list[dict], reference, **extra) -> dict[str, Any]:
    for run in runs:
        run["errors"] = _errors(run["final"], reference)
    record = {"experiment": name, "content": str(content), "style": str(style), "settings": s.to_dict(),
              "reference": reference, **extra, "runs": runs}  # fmt: skip
    atomic_write(out / f"{name}.json", json.dumps(record, indent=1))
    draw(record, out)
    return record


# ------------------------------------------------------------------------------------ drawing
def draw(record: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the figures of a record (as read from ``init.json`` or ``beta.json``) into ``out_dir``."""
    out = Path(out_dir)
    make = init_figures if record["experiment"] == "init" else beta_figures
    paths = []
    for name, fig in make(record, out).items():
        path = out / f"{record['experiment']}-{name}.jpg"
        options = {"quality": JPEG_QUALITY, "optimize": True, "progressive": True}
        atomic_write(path, lambda fh: fig.savefig(fh, format="jpeg", dpi=FIGURE_DPI, pil_kwargs=options))
        paths.append(path)
    return paths


def init_figures(record: dict[str, Any], out: Path) -> dict[str, Any]:
    """``grid``: snapshots of each start (rows) at the same evaluations (columns); ``losses``."""
    snaps = record["snapshots"]

    def caption(run: dict[str, Any], k: int) -> str:
        when = "start" if k == 1 else f"evaluation {k}"
        return f"init={run['settings']['init']}, {when}\ntotal loss {run['history'][k - 1]['total']:.3g}"

    cells = [[(out / run["snapshots"][str(k)], caption(run, k)) for k in snaps] for run in record["runs"]]
    labels = [f"from {'noise' if r['settings']['init'] == 'noise' else 'the content image'}" for r in record["runs"]]
    grid = _grid(out, cells, labels, f"Noise vs content initialisation, same budget · {_setup(record)}")
    curves = _curves(record, [f"init={r['settings']['init']}" for r in record["runs"]], marks=snaps)
    return {"grid": grid, "losses": curves}


def beta_figures(record: dict[str, Any], out: Path) -> dict[str, Any]:
    """``grid``: the output for each β; ``losses``; ``tradeoff``: content and style errors vs β."""
    items = []
    for run in record["runs"]:
        b = run["settings"]["style_weight"]
        mark = " (default)" if b == record.get("default_beta") else ""
        e = run["errors"]
        items.append(
            (out / run["image"], f"β = {b:g}{mark}\nerror: content {e['content']:.2g} · style {e['style']:.2g}")
        )
    rows = 2 if len(items) > 1 else 1
    cols = math.ceil(len(items) / rows)
    cells = [items[r * cols : (r + 1) * cols] for r in range(rows)]
    grid = _grid(out, cells, None, f"Effect of β, the style weight · {_setup(record)}")
    curves = _curves(record, [f"β = {r['settings']['style_weight']:g}" for r in record["runs"]], colormap="viridis")
    return {"grid": grid, "losses": curves, "tradeoff": _tradeoff(record)}


def _setup(record: dict[str, Any]) -> str:
    s = record["settings"]
    sizes = "+".join(str(v) for v in s["scales"]) if s.get("scales") else str(s["size"])
    run = record["runs"][0]
    fixed = f"β={s['style_weight']:g}, " if record["experiment"] != "beta" else ""
    init = f"init={s['init']}, " if record["experiment"] != "init" else ""
    pair = " × ".join(Path(record[k].removeprefix("example:")).stem for k in ("content", "style"))
    return f"{pair}, {s['model']}, {sizes} px, {init}{fixed}{run['evaluations']} evaluations of {s['optimizer']}"


def _errors(terms: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """Content and style terms over their yardsticks (see :func:`_prepare`)."""
    return {k: terms[k] / max(reference[k], 1e-30) for k in ("content", "style")}


def _grid(out: Path, cells: list[list[tuple[Path, str]]], row_labels: list[str] | None, title: str) -> Any:
    """The inputs in a column on the left; ``cells`` (rows of (picture, caption)) on the right."""
    from matplotlib.figure import Figure
    from PIL import Image

    rows, cols = len(cells), max(len(r) for r in cells)
    with Image.open(cells[0][0][0]) as first:
        height = PANEL_INCHES * first.height / first.width + 0.45  # room for a two-line caption
    width = max((cols + 1) * PANEL_INCHES + 0.6, 9.0)  # never narrower than the title
    fig = Figure(figsize=(width, max(rows, 2) * height + 0.5), layout="constrained")
    fig.suptitle(title, fontsize=10)
    left, right = fig.subfigures(1, 2, width_ratios=[1, cols], wspace=0.03)
    left.suptitle("inputs", fontsize=9, color="0.35")
    for ax, name, caption in zip(left.subplots(2, 1), ("content", "style"), ("content image", "style image")):
        _show(ax, out / f"input-{name}.png", caption)
    axes = right.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            if c < len(cells[r]):
                _show(axes[r][c], *cells[r][c])
            else:
                axes[r][c].set_axis_off()
        if row_labels:
            axes[r][0].set_ylabel(row_labels[r], fontsize=10)
    return fig


def _show(ax: Any, path: Path, caption: str) -> None:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        ax.imshow(np.asarray(im.convert("RGB")))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(caption, fontsize=8, linespacing=1.3)


def _curves(record: dict[str, Any], labels: list[str], marks: Sequence[int] = (), colormap: str | None = None) -> Any:
    """Every term against evaluations, log scale, one line per run (zeros are left out)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    runs = record["runs"]
    fig = Figure(figsize=(13, 3.4), layout="constrained")
    fig.suptitle(f"Loss terms during optimisation · {_setup(record)}", fontsize=10)
    axes = fig.subplots(1, len(TERMS))
    colors = [colormaps[colormap](i / max(1, len(runs) - 1)) for i in range(len(runs))] if colormap else None
    for ax, term in zip(axes, TERMS):
        for i, (run, label) in enumerate(zip(runs, labels)):
            x = [h["iteration"] for h in run["history"]]
            y = [h[term] if h[term] > 0 else float("nan") for h in run["history"]]
            ax.plot(x, y, label=label, color=colors[i] if colors else None, linewidth=1.4)
        for k in marks:
            ax.axvline(k, color="0.8", linewidth=0.8, linestyle=":", zorder=0)
        ax.set_yscale("log")
        ax.set_title(TERM_TITLES[term], fontsize=9)
        ax.set_xlabel("evaluation", fontsize=8)
        ax.tick_params(which="both", labelsize=7)
        ax.grid(True, which="major", alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=8, frameon=False)
    return fig


def _tradeoff(record: dict[str, Any]) -> Any:
    """Final content and style errors against β: where each target wins."""
    from matplotlib.figure import Figure

    runs = record["runs"]
    betas = [r["settings"]["style_weight"] for r in runs]
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    fig.suptitle(f"After the same budget, against β · {_setup(record)}", fontsize=9)
    ax = fig.subplots()
    labels = {"content": "content error: content term ÷ the style picture's",
              "style": "style error: style term ÷ the content picture's"}  # fmt: skip
    for term, color in (("content", "C0"), ("style", "C1")):
        ax.plot(betas, [r["errors"][term] for r in runs], "o-", color=color, label=labels[term])
    ax.axhline(1, color="0.5", linewidth=0.8)
    ax.text(betas[0], 1, " as far as the other picture", va="bottom", fontsize=7, color="0.4")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if record.get("default_beta") is not None:
        ax.axvline(record["default_beta"], color="0.6", linestyle="--", linewidth=0.8)
        ax.text(record["default_beta"], ax.get_ylim()[0], " default β", fontsize=7, color="0.4", va="bottom")
    ax.set_xlabel("β (style weight)", fontsize=9)
    ax.tick_params(which="both", labelsize=7)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def _matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("matplotlib is missing (the figures need it): pip install matplotlib") from None


# ------------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    from .flags import Parser, add_settings_flags, number_list

    p = Parser(
        prog="painterly experiment",
        description="Reproduce the seed's experiments for any image pair: figures, outputs and a JSON record in DIR.",
    )
    sub = p.add_subparsers(dest="experiment", required=True, metavar="{init,beta,plot}")
    helps = {
        "init": "start from noise and from the content image with the same budget; snapshots along the way",
        "beta": "one run per style weight β, over orders of magnitude",
    }
    for name, text in helps.items():
        sp = sub.add_parser(name, help=text, description=f"{text}. Defaults differ from the main command: "
                            f"--size {EXPERIMENT_SIZE}, --iterations {EXPERIMENT_ITERATIONS}, one scale.")  # fmt: skip
        sp.add_argument("content", help="content image")
        sp.add_argument("style", help="style image")
        sp.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for figures, outputs and JSON")
        add_settings_flags(sp)
        own = {"size": EXPERIMENT_SIZE, "iterations": EXPERIMENT_ITERATIONS, "scales": "the size alone"}
        for action in sp._actions:  # the experiments' own defaults, where they differ from the main command's
            if action.dest in own:
                action.help = f"{action.help.split(' (default')[0]} (default: {own[action.dest]})"
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
        sp.add_argument("--debug", action="store_true", help="show tracebacks")
        if name == "init":
            text = "evaluations to show (default: start, 1/15, 1/5, 1/2 and all of the budget)"
            sp.add_argument("--snapshots", type=number_list(int), default=None, metavar="N,N,...", help=text)
        else:
            text = f"style weights to try (default: {','.join(f'{b:g}' for b in DEFAULT_BETAS)})"
            sp.add_argument("--betas", type=number_list(float), default=DEFAULT_BETAS, metavar="B,B,...", help=text)
    sp = sub.add_parser("plot", help="re-draw the figures from DIR/init.json and DIR/beta.json")
    sp.add_argument("dir", help="an experiment's output folder")
    sp.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if args.experiment == "plot":
        return _replot(Path(args.dir))
    names = {f.name for f in dataclasses.fields(Settings)}
    overrides = {k: v for k, v in vars(args).items() if k in names}

    def progress(name: str) -> Callable[[Step], None] | None:
        if args.quiet:
            return None
        from .progress import ProgressBar

        bar = ProgressBar()
        print(f"painterly: {name}", file=sys.stderr)

        def show(step: Step) -> None:
            bar(step)
            if step.iteration == step.total:
                bar.close()

        return show

    if args.experiment == "init":
        record = run_init(
            args.content, args.style, args.output, snapshots=args.snapshots, progress=progress, **overrides
        )
    else:
        record = run_beta(args.content, args.style, args.output, betas=args.betas, progress=progress, **overrides)
    if not args.quiet:
        for run in record["runs"]:
            terms = ", ".join(f"{k} {v:.4g}" for k, v in run["final"].items())
            note = f"; {run['message']}" if run["message"] else ""
            took = f"{run['evaluations']} evaluations in {run['seconds']:.1f} s"
            print(f"painterly: {run['name']}: {took} ({terms}){note}", file=sys.stderr)
        print(f"painterly: wrote {args.output}/{args.experiment}.json and its figures", file=sys.stderr)
    return 0


def _replot(folder: Path) -> int:
    records = [folder / f"{name}.json" for name in ("init", "beta") if (folder / f"{name}.json").is_file()]
    if not records:
        raise InputError(f"{folder} holds neither init.json nor beta.json; run an experiment into it first")
    _matplotlib()
    for path in records:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
        draw(record, folder)
    return 0
