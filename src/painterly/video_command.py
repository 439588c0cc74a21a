"""``painterly video IN OUT STYLE [STYLE ...]``: parsing, the frames folder, resuming, progress.

Nothing is lost on a long run: each frame is written (atomically, 8-bit PNG) into a frames folder
as soon as it is done: ``OUT.frames/`` beside a clip, OUT itself when OUT is a folder. The folder
also holds ``painterly-video.json``, the settings and the digests of the inputs, so ``--resume``
continues exactly that run at its first missing frame and refuses to mix two runs. When every
frame is there the clip is encoded (with IN's audio) and the frames folder removed. Ctrl-C or
SIGTERM stops after the current evaluation; the frames done so far stay.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from . import flags
from .errors import InputError, as_exit_code
from .files import atomic_write, writable_folder
from .signals import StopOnSignal
from .video import FRAME_ITERATIONS, TEMPORAL_WEIGHT, Previous, fit, stylize_frames
from .videoio import FOLDER_RATE, VIDEO_EXTENSIONS, frame_files, is_video_file, probe, read_frames, write_video

FRAME_NAME = "frame_{:06d}.png"  # numbered from 1, as ffmpeg's image2 muxer does
RECORD = "painterly-video.json"  # the run a frames folder belongs to, so a resume cannot mix two runs


def build_parser() -> argparse.ArgumentParser:
    p = flags.Parser(
        prog="painterly video",
        description="Stylise a clip (MP4, MOV, MKV, WebM, GIF) or a folder of frames, frame by frame, with "
        "temporal consistency (Ruder et al. 2016). Frames are written as they finish into OUT.frames/ (OUT "
        "itself when it is a folder), so --resume continues a stopped or killed run.",
    )
    p.add_argument("input", metavar="IN", help="the clip, or a folder of frames")
    p.add_argument("output", metavar="OUT", help="a clip (" + " ".join(VIDEO_EXTENSIONS) + ") or a folder for frames")
    p.add_argument("styles", nargs="+", metavar="STYLE", help="style image(s)")
    flags.add_settings_flags(p)
    p.add_argument(
        "--temporal-weight",
        type=flags.number(float),
        default=TEMPORAL_WEIGHT,
        metavar="W",
        help="weight of the temporal term; 0 stylises every frame independently (default: %(default)s)",
    )
    p.add_argument(
        "--frame-iterations",
        type=flags.count,
        default=FRAME_ITERATIONS,
        metavar="N",
        help="evaluations for each frame after the first, final scale only (default: %(default)s)",
    )
    p.add_argument("--mask", action="append", default=None, metavar="FILE|FOLDER",
                   help="one per style: an image for every frame, or a folder with one image per frame; "
                        "'none' = everywhere")  # fmt: skip
    p.add_argument(
        "--fps",
        type=_rate,
        default=None,
        metavar="RATE",
        help=f"frame rate of a folder of frames (default: {FOLDER_RATE})",
    )
    p.add_argument("--max-frames", type=flags.count, default=None, metavar="N", help="only the first N frames")
    p.add_argument("--resume", action="store_true", help="continue a stopped run at its first missing frame")
    p.add_argument("--keep-frames", action="store_true", help="keep OUT.frames/ after encoding OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--threads",
        type=flags.count,
        default=None,
        metavar="N",
        help="CPU threads (default: the free cores)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _rate(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected frames per second, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected frames per second > 0, got {text!r}")
    return value


def main(argv: Sequence[str]) -> int:
    """``painterly video IN OUT STYLE [STYLE ...]``; returns the exit code (one line and 2 for bad input)."""
    argv = list(argv)
    return as_exit_code(lambda: _run(build_parser().parse_args(argv)), debug="--debug" in argv)


def _run(args: argparse.Namespace) -> int:
    from .image import example_path, load_image, save_image

    settings = flags.settings_from(args).resolved()
    if not (args.temporal_weight >= 0 and args.temporal_weight != float("inf")):
        raise InputError(f"--temporal-weight must be a finite number >= 0, got {args.temporal_weight!r}")
    source = Path(args.input).expanduser()
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    info = probe(source, rate=args.fps)
    count = min(info.frames, args.max_frames or info.frames)
    out = Path(args.output).expanduser()
    folder = _frames_folder(out)
    styles = [example_path(s) for s in args.styles]
    for style in styles:
        if not Path(style).is_file():
            raise InputError(f"style {style}: no such file")
    masks = _masks(args.mask, count)
    record = {
        "settings": {k: v for k, v in settings.to_dict().items() if k != "device"},
        "temporal_weight": args.temporal_weight, "frame_iterations": args.frame_iterations, "frames": count,
        "rate": str(info.rate), "input": _digest(source), "styles": [_digest(Path(s)) for s in styles],
        "masks": None if args.mask is None else [m if m is None else _digest(Path(m)) for m in _mask_values(args.mask)],
    }  # fmt: skip
    done = _prepare(folder, record, args.resume)
    from .threads import configure_threads

    configure_threads(args.threads)  # this process is the command's: one thread per free core (#17)

    previous = None
    if 0 < done < count and args.temporal_weight > 0:
        last = next(_frames(source, done - 1, args.max_frames))
        previous = Previous(fit(last, settings.size), load_image(folder / FRAME_NAME.format(done)))
    progress = _Progress(count, done, quiet=args.quiet)
    from .device import reuse_freed_memory

    with StopOnSignal(progress.write, "stopping; the frames done so far are kept") as stop, reuse_freed_memory():
        frames = stylize_frames(
            _frames(source, done, count), styles, settings, temporal_weight=args.temporal_weight,
            frame_iterations=args.frame_iterations, masks=masks, start=done, previous=previous, stop=stop.stop,
        )  # fmt: skip
        for frame in frames:
            save_image(frame.image, folder / FRAME_NAME.format(frame.index + 1))
            progress.frame_done(frame.result.losses)
            if frame.result.message:
                progress.write(f"painterly: frame {frame.index + 1}: {frame.result.message}")
        progress.close()
        if stop.stop.is_set():
            made = len(_done_frames(folder))
            print(f"painterly: stopped after {made} of {count} frames, kept in {folder} (continue with --resume)",
                  file=sys.stderr)  # fmt: skip
            return stop.exit_code()
    made = len(_done_frames(folder))
    if made < count:  # the container promised more packets than its decoder gave frames
        print(f"painterly: {source} gave {made} frames, not {count}", file=sys.stderr)
        count = made
    files = [folder / FRAME_NAME.format(i + 1) for i in range(count)]
    if folder == out:
        (folder / RECORD).unlink(missing_ok=True)
        if not args.quiet:
            print(f"painterly: wrote {count} frames to {out}", file=sys.stderr)
        return 0
    write_video(out, (load_image(f) for f in files), info.rate, audio_from=source if source.is_file() else None)
    if not args.keep_frames:
        shutil.rmtree(folder)
    if not args.quiet:
        print(f"painterly: wrote {out} ({count} frames at {float(info.rate):.4g} fps)", file=sys.stderr)
    return 0


def _frames_folder(out: Path) -> Path:
    """Where frames go: ``OUT.frames/`` beside a clip, OUT itself when it is (to be) a folder."""
    if is_video_file(out):
        if out.is_dir():
            raise InputError(f"{out}: is a folder; give a clip's file name or a folder without an extension")
        problem = writable_folder(out.parent)
        if problem:
            raise InputError(f"{out}: {problem}")
        return out.with_name(out.name + ".frames")
    if out.suffix and not out.is_dir():
        raise InputError(f"{out}: unknown video extension {out.suffix!r}; use one of {', '.join(VIDEO_EXTENSIONS)} "
                         "or a folder (no extension) for frames")  # fmt: skip
    if not out.parent.is_dir():
        raise InputError(f"{out}: the folder {out.parent} does not exist")
    return out


def _prepare(folder: Path, record: dict[str, Any], resume: bool) -> int:
    """Create or check the frames folder; the number of frames already done (the first missing one)."""
    path = folder / RECORD
    if path.exists():
        if not resume:
            raise InputError(f"{folder} holds a stopped run: add --resume to continue it, or delete it to start over")
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: unreadable ({err}); delete {folder} to start over") from None
        differ = sorted(k for k in record if old.get(k) != record[k])
        if differ:
            raise InputError(f"{folder} holds a run with other {', '.join(differ)}: "
                             "resume with the same inputs and flags, or delete it to start over")  # fmt: skip
    else:
        if resume:
            raise InputError(f"--resume: {folder} holds no stopped run ({RECORD} is missing)")
        if folder.is_dir() and frame_files(folder):
            raise InputError(f"{folder} already holds images; give an empty or new folder")
        folder.mkdir(exist_ok=True)
        problem = writable_folder(folder)
        if problem:
            raise InputError(problem)
        atomic_write(path, json.dumps(record, indent=1))
    return len(_done_frames(folder))


def _done_frames(folder: Path) -> list[Path]:
    """Frames 1, 2, ... up to the first missing one (later ones, if any, are made again)."""
    out = []
    while (folder / FRAME_NAME.format(len(out) + 1)).is_file():
        out.append(folder / FRAME_NAME.format(len(out) + 1))
    return out


def _frames(source: Path, start: int, stop: int | None) -> Any:
    import itertools

    return itertools.islice(read_frames(source), start, stop)


def _mask_values(values: list[str]) -> list[str | None]:
    return [None if v.lower() == "none" else v for v in values]


def _masks(values: list[str] | None, count: int) -> Any:
    """``masks(index)`` for stylize_frames: each ``--mask`` an image for every frame or a folder of one per frame."""
    if values is None:
        return None
    per_style: list[Any] = []
    for value in _mask_values(values):
        if value is None or Path(value).is_file():
            per_style.append(value)
        elif Path(value).is_dir():
            files = frame_files(value)
            if len(files) < count:
                raise InputError(f"--mask {value}: {len(files)} images for {count} frames")
            per_style.append(files)
        else:
            raise InputError(f"--mask {value}: no such file or folder")
    return lambda index: [m[index] if isinstance(m, list) else m for m in per_style]


def _digest(path: Path) -> str:
    """SHA-256 of a file, or of a folder's frame names and bytes."""
    h = hashlib.sha256()
    for file in frame_files(path) if path.is_dir() else [path]:
        h.update(file.name.encode() if path.is_dir() else b"")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class _Progress:
    """Frames done and time left: a tqdm bar on a terminal, a plain line per frame elsewhere."""

    def __init__(self, total: int, done: int, *, quiet: bool) -> None:
        self.total, self.done, self.quiet = total, done, quiet
        self.started, self.made = time.monotonic(), 0
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, unit="frame", dynamic_ncols=True)

    def frame_done(self, losses: dict[str, float]) -> None:
        self.done, self.made = self.done + 1, self.made + 1
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items() if k != "total"}, refresh=False)
            self.bar.update(1)
        elif not self.quiet:
            each = (time.monotonic() - self.started) / self.made
            left = each * (self.total - self.done)
            left_text = f"{left:.0f} s" if left < 120 else f"{left / 60:.0f} min"
            self.write(f"painterly: frame {self.done}/{self.total}, {each:.1f} s a frame, about {left_text} left")

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
