"""Command line: parsing and nothing else. Flags and defaults come from :class:`Settings`.

``painterly CONTENT STYLE [STYLE ...] -o OUT`` stylises; ``painterly score``, ``painterly
experiment`` and ``painterly serve`` are sub-commands. ``main`` returns the exit code; only this
module exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import flags
from .errors import InputError, PainterlyError, as_exit_code
from .flags import Parser, add_settings_flags, settings_from
from .signals import StopOnSignal

SUBCOMMANDS = ("score", "experiment", "serve", "weights", "batch", "video")
# Settings that the objective alone depends on (what ``score`` accepts).
OBJECTIVE_FIELDS = (
    "style_size", "style_scale", "content_weight", "style_weight", "tv_weight", "content_layer",
    "style_layers", "style_layer_weights", "style_blend_weights", "preserve_color", "model", "weights",
    "device", "seed", "normalize", "max_pixels", "laplacian_weight", "laplacian_pools",
    "laplacian_gate", "laplacian_gate_floor", "lowpass_weight", "lowpass_pool",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="painterly",
        description="Paint CONTENT in the style of STYLE (Gatys et al.). "
        "Sub-commands: score, experiment, serve, weights, batch, video (painterly SUBCOMMAND --help); --version.",
    )
    p.add_argument("content", nargs="?", help="content image (a file or example:NAME)")
    p.add_argument("styles", nargs="*", metavar="style", help="style image(s)")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .webp, .tif)")
    p.add_argument("--config", metavar="FILE",
                   help="replay a run: a picture painterly wrote (its settings and inputs are recorded in it) or "
                        "a JSON file of settings; flags and images given here take precedence")  # fmt: skip
    add_settings_flags(p)
    p.add_argument("--mask", action="append", default=None, metavar="FILE",
                   help="one per style, in order: where that style applies (white); 'none' = everywhere")  # fmt: skip
    p.add_argument("--save-every", type=int, default=0, metavar="N", help="write OUT_<iteration> every N evaluations")
    p.add_argument("--checkpoint", default=None, metavar="FILE", help="checkpoint path (default: OUT.ckpt)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    p.add_argument("--checkpoint-every", type=flags.seconds, default=300.0, metavar="SECONDS",
                   help="also write the checkpoint this often while running, so even a killed run can be "
                        "resumed (default: %(default)s; 0: only when stopped)")  # fmt: skip
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="16 for .png/.tif (default: 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=flags.count, default=None, metavar="N",
                   help="CPU threads (default: one per core that other programs leave free)")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _score_parser() -> argparse.ArgumentParser:
    text = ("Print the objective's terms for IMAGE as JSON: the seed's raw terms (each style layer by name), "
            "the weights and normalisers applied, and the total optimised.")  # fmt: skip
    p = Parser(prog="painterly score", description=text)
    p.add_argument("image")
    p.add_argument("--content", required=True)
    p.add_argument("--style", required=True, action="append", help="style image (repeat for several)")
    p.add_argument("--mask", action="append", default=None, metavar="FILE")
    p.add_argument("--size", type=flags.number(int), default=None, metavar="SIZE",
                   help="resize IMAGE to this longest side first (default: score it at its own size)")  # fmt: skip
    p.add_argument("--debug", action="store_true")
    add_settings_flags(p, OBJECTIVE_FIELDS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    # MKL's default kernels are not bit-reproducible from one process to the next: two runs of one
    # command drifted apart by up to 28 of 255 levels over 40 evaluations, and a --resume would too.
    # AUTO selects deterministic kernels (no measurable cost on this CPU); MKL reads it at first use.
    os.environ.setdefault("MKL_CBWR", "AUTO")
    if argv == ["--version"]:  # answered before anything imports torch
        print(f"painterly {_version()}")
        return 0
    if argv and argv[0] in SUBCOMMANDS:
        return as_exit_code(lambda: _subcommand(argv[0], argv[1:]), debug=debug)
    return as_exit_code(lambda: _stylize(build_parser().parse_args(argv)), debug=debug)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("painterly")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown (not installed)"


def _subcommand(name: str, argv: list[str]) -> int:
    if name == "score":
        args = _score_parser().parse_args(argv)
        from .api import score

        report = score(args.image, args.content, args.style, settings_from(args), masks=_masks(args.mask),
                       size=args.size)  # fmt: skip
        print(json.dumps(report, indent=2))
        return 0
    if name == "batch":
        from .batch import main as batch_main

        return batch_main(argv)
    if name == "experiment":
        from .experiments import main as experiment_main

        return experiment_main(argv)
    if name == "weights":
        from .weights_cli import main as weights_main

        return weights_main(argv)
    if name == "video":
        from .video_command import main as video_main

        return video_main(argv)
    from .studio import main as studio_main

    return studio_main(argv)


def _masks(values: list[str] | None) -> list[str | None] | None:
    return None if values is None else [None if v.lower() == "none" else v for v in values]


def _run_inputs(args: argparse.Namespace) -> tuple[Any, str, list[str], list[str | None] | None]:
    """Settings, content, styles and masks of the run: the flags, over a ``--config`` record if given."""
    from .config import Settings

    record: dict[str, Any] = {}
    if args.config:
        record = _read_config(args.config)
    given = {k: v for k, v in vars(settings_from(args)).items() if k in vars(args)}
    settings = dataclasses.replace(Settings.from_dict(record.get("settings", {})), **given)
    content = args.content or record.get("content")
    styles = args.styles or record.get("styles") or []
    if content is None or not styles:
        raise InputError("the following arguments are required: content, style (or --config FILE that names them)")
    masks = _masks(args.mask) if args.mask is not None else record.get("masks")
    return settings.resolved(), content, list(styles), masks


def _read_config(path: str) -> dict[str, Any]:
    """A run record from a picture painterly wrote, or from a JSON file (a record, or settings alone)."""
    from .image import read_metadata

    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"--config {path}: no such file")
    if file.suffix.lower() != ".json":
        record = read_metadata(file)
        if record is None:
            raise InputError(f"--config {path}: the picture holds no painterly record (was it written by painterly?)")
        return record
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"--config {path} is not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise InputError(f"--config {path} must hold a JSON object")
    return data if "settings" in data else {"settings": data}


def run_record(settings: Any, content: Any, styles: Sequence[Any], masks: Sequence[Any] | None) -> dict[str, Any]:
    """What an output records about the run that made it: enough for ``--config`` to make it again."""
    from . import __version__

    return {
        "painterly": __version__,
        "settings": settings.to_dict(),
        "content": str(content),
        "styles": [str(x) for x in styles],
        "masks": None if masks is None else [None if m is None else str(m) for m in masks],
    }


def _stylize(args: argparse.Namespace) -> int:
    from .threads import configure_threads, match_checkpoint

    configure_threads(args.threads)  # first: OpenMP's spinning can only be set before torch loads
    from .api import stylize
    from .checkpoint import check_checkpoint_path, load_checkpoint, remove_checkpoint, save_checkpoint
    from .device import reuse_freed_memory
    from .image import check_output_path, save_image
    from .progress import ProgressBar, Saver

    # Everything that can be checked is checked before any work: a bad flag, an unwritable output
    # or a stale checkpoint should cost a second, not an hour.
    settings, content, styles, masks = _run_inputs(args)
    out = check_output_path(args.output, bit_depth=args.bit_depth)
    ckpt = check_checkpoint_path(Path(args.checkpoint).expanduser() if args.checkpoint else Path(f"{out}.ckpt"))
    if args.resume:
        resume = load_checkpoint(ckpt)
        match_checkpoint(resume, args.threads)
    elif ckpt.exists():
        raise InputError(f"{ckpt} holds an interrupted run: add --resume to continue it, or delete it to start over")
    else:
        resume = None
    record = run_record(settings, content, styles, masks)
    bar = ProgressBar(disable=args.quiet)
    saver = Saver(out, args.save_every, args.bit_depth)
    what = "stopping after this evaluation to save the image and a checkpoint"
    with StopOnSignal(bar.write, what) as signals:
        try:
            with reuse_freed_memory():  # this process is ours: keep freed memory for the next evaluation
                result = stylize(
                    content, styles, settings, masks=masks, stop=signals.stop, resume=resume,
                    callback=lambda step: (bar(step), saver(step)), checkpoint_every=args.checkpoint_every,
                    on_checkpoint=(lambda state: save_checkpoint(state, ckpt)) if args.checkpoint_every > 0 else None,
                )  # fmt: skip
        finally:
            bar.close()
        signals.saving()
        state = result.checkpoint()
        if state is not None:  # the checkpoint first: with it, even a failed image write loses nothing
            save_checkpoint(state, ckpt)
        save_image(result.image, out, bit_depth=args.bit_depth, metadata=record)
    if result.message:  # the optimisation gave up (a loss that stayed non-finite)
        raise PainterlyError(f"{result.message}; wrote it to {out}")
    if result.interrupted:
        print(f"painterly: stopped; saved {out} and {ckpt} (continue with --resume)", file=sys.stderr)
        return signals.exit_code()
    remove_checkpoint(ckpt)
    if not args.quiet:
        from .progress import shown_terms

        terms = ", ".join(f"{k} {v}" for k, v in shown_terms(result.losses).items())
        print(f"painterly: wrote {out} in {result.seconds:.1f} s ({result.evaluations} evaluations; {terms})",
              file=sys.stderr)  # fmt: skip
    return 0
