"""The command line under bad input: one plain line, a non-zero exit, no traceback, no file.

Runs ``main([...])`` in-process on tiny images with seeded random weights; the signal tests,
which need a real process, are in test_robust.py.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import painterly.api
import painterly.files
import painterly.objective
from imagefiles import encoded, png_header_only
from painterly.cli import main
from painterly.errors import InputError
from painterly.image import load_image, resize
from painterly.objective import Objective
from painterly.optimize import Step
from painterly.progress import ProgressBar
from test_image import swapped_red_green_profile

FAST = ["--weights", "random", "--model", "vgg16", "--size", "32", "--iterations", "1", "--coarse-iterations", "1"]
# A network cut after relu2_1 is ten times cheaper; SEED_LAYERS restores the seed's five (min side 16).
FAST += ["--style-layers", "relu1_1,relu2_1", "--content-layer", "relu2_1"]
SEED_LAYERS = ["--style-layers", "seed", "--content-layer", "seed"]


class Case:
    """A scratch folder with good inputs; ``argv`` builds a command line from its parts."""

    def __init__(self, tmp_path: Path, pair: tuple[str, str]) -> None:
        self.dir = tmp_path
        self.content, self.style = pair
        self.out = tmp_path / "out.png"

    def file(self, name: str, data: bytes) -> str:
        (self.dir / name).write_bytes(data)
        return str(self.dir / name)

    def argv(self, *extra: str, content: str | None = None, style: str | None = None, out=None) -> list[str]:
        return [content or self.content, style or self.style, "-o", str(out or self.out), *FAST, *extra]


def png_bytes(array: np.ndarray) -> bytes:
    return encoded(Image.fromarray(array), "PNG")


NOISE = (np.random.default_rng(5).random((40, 48, 3)) * 255).astype(np.uint8)
GOOD_PNG = png_bytes(NOISE)  # noise: barely compressible, so byte 240 is well inside the pixel data


def _torch_file(c: Case, name: str, obj) -> str:
    torch.save(obj, c.dir / name)
    return str(c.dir / name)


def _truncated_zip(c: Case) -> str:
    path = Path(_torch_file(c, "half.pth", {"features.0.weight": torch.zeros(64, 3, 3, 3)}))
    path.write_bytes(path.read_bytes()[:300])
    return str(path)


def _unwritable(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("painterly.files.open", refuse, raising=False)


def bad(name: str, build, pattern: str, code: int = 2, patch=None):
    """A row: argv from a Case, the regex the one error line must match, the exit code, a monkeypatch."""
    return pytest.param(build, code, pattern, patch, id=name)


def _thin(c: Case) -> str:
    return c.file("thin.png", png_bytes(np.zeros((4, 200, 3), np.uint8)))


def _corrupt(c: Case) -> str:
    return c.file("bad.png", GOOD_PNG[:100] + bytes(200) + GOOD_PNG[300:])


def _wrong_shape(c: Case) -> str:
    return _torch_file(c, "s.pth", {"0.weight": torch.zeros(8, 3, 3, 3)})


BAD_INPUTS = [
    bad("missing-file", lambda c: c.argv(content=str(c.dir / "nope.png")), r"nope\.png: no such file"),
    bad("directory", lambda c: c.argv(content=str(c.dir)), r": is a folder, not an image"),
    bad("empty-file", lambda c: c.argv(content=c.file("empty.png", b"")), r"empty\.png: is an empty file"),
    bad("truncated", lambda c: c.argv(style=c.file("cut.png", GOOD_PNG[:300])), r"cut\.png: .*truncated"),
    bad("corrupt", lambda c: c.argv(content=_corrupt(c)), r"bad\.png: cannot be decoded"),
    bad("not-an-image", lambda c: c.argv(content=c.file("notes.jpg", b"notes\n" * 50)), r"notes\.jpg: is not a PNG"),
    bad(
        "too-thin-for-the-network",
        lambda c: c.argv(*SEED_LAYERS, content=_thin(c)),
        r"thin\.png is 32x1, smaller than the 16 px the network needs; raise --size",
    ),
    bad("size-below-minimum", lambda c: c.argv("--size", "8"), r"--size must be an integer >= 16, got 8"),
    bad(
        "decompression-bomb",
        lambda c: c.argv(content=c.file("bomb.png", png_header_only(20_000, 20_000))),
        r"bomb\.png: refused as a possible decompression bomb",
    ),
    bad(
        "over-max-pixels",
        lambda c: c.argv("--max-pixels", "1000"),
        r"content\.png: is 48x40 = 1,920 pixels, over the limit of 1,000",
    ),
    bad("missing-output-folder", lambda c: c.argv(out=c.dir / "no" / "out.png"), r"the folder .*no does not exist"),
    bad("output-under-a-file", lambda c: c.argv(out=Path(c.file("afile", b"x")) / "o.png"), r"afile does not exist"),
    bad("unwritable-output", lambda c: c.argv(), r"out\.png: the folder .* is not writable", patch=_unwritable),
    bad("unknown-output-format", lambda c: c.argv(out=c.dir / "out.xyz"), r"unknown image extension '\.xyz'"),
    bad("16-bit-jpeg", lambda c: c.argv("--bit-depth", "16", out=c.dir / "o.jpg"), r"16-bit output needs \.png"),
    bad(
        "unknown-layer",
        lambda c: c.argv("--style-layers", "relu1_1,relu9_9"),
        r"unknown layer 'relu9_9' for vgg16; valid layers: conv1_1, ",
    ),
    bad("unknown-content-layer", lambda c: c.argv("--content-layer", "fc7"), r"unknown layer 'fc7'"),
    bad(
        "negative-weight",
        lambda c: c.argv("--style-weight", "-1"),
        r"--style-weight must be a finite number >= 0, got -1",
    ),
    bad("nan-weight", lambda c: c.argv("--tv-weight", "nan"), r"--tv-weight must be a finite number >= 0, got nan"),
    bad(
        "non-numeric-weight",
        lambda c: c.argv("--content-weight", "lots"),
        r"argument --content-weight: expected a number, got 'lots' \(see painterly --help\)$",
    ),
    bad(
        "negative-layer-weight",
        lambda c: c.argv("--style-layer-weights", "1,-2"),
        r"--style-layer-weights values must be finite numbers >= 0, got -2",
    ),
    bad("unknown-model", lambda c: c.argv("--model", "vgg99"), r"argument --model: invalid choice: 'vgg99'"),
    bad("missing-output-flag", lambda c: [c.content, c.style], r"the following arguments are required: -o"),
    bad("weights-missing", lambda c: c.argv("--weights", str(c.dir / "gone.pth")), r"gone\.pth does not exist"),
    bad(
        "weights-corrupt",
        lambda c: c.argv("--weights", c.file("w.pth", bytes(4096))),
        r"weights file .*w\.pth is not a torch weights file",
    ),
    bad("weights-truncated", lambda c: c.argv("--weights", _truncated_zip(c)), r"half\.pth is a damaged or truncated"),
    bad(
        "weights-not-a-state-dict",
        lambda c: c.argv("--weights", _torch_file(c, "list.pth", [1, 2])),
        r"list\.pth holds a list, not a state dict",
    ),
    bad(
        "weights-wrong-shape",
        lambda c: c.argv("--weights", _wrong_shape(c)),
        r"s\.pth: entry 'features\.0\.weight' has shape \(8, 3, 3, 3\), vgg16 needs \(64, 3, 3, 3\)",
    ),
    bad("bad-mask", lambda c: c.argv("--mask", c.file("mask.png", b"GIF89a nonsense")), r"mask\.png: "),
    bad("checkpoint-every-negative", lambda c: c.argv("--checkpoint-every", "-5"), r"expected a number of seconds"),
    bad("threads-zero", lambda c: c.argv("--threads", "0"), r"--threads: expected a whole number >= 1, got '0'"),
    bad("resume-without-checkpoint", lambda c: c.argv("--resume"), r"no checkpoint to resume from at .*out\.png\.ckpt"),
    bad(
        "damaged-checkpoint",
        lambda c: c.argv("--resume", "--checkpoint", c.file("x.ckpt", b"PK\x03\x04junk")),
        r"checkpoint .*x\.ckpt is damaged",
    ),
    bad(
        "stale-checkpoint",
        lambda c: c.argv("--checkpoint", c.file("old.ckpt", b"x")),
        r"old\.ckpt holds an interrupted run: add --resume",
    ),
    bad(
        "checkpoint-folder-missing",
        lambda c: c.argv("--checkpoint", str(c.dir / "no" / "x.ckpt")),
        r"checkpoint .*x\.ckpt: the folder .* does not exist",
    ),
]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if not ln.startswith("painterly: scale ")]  # progress (not a tty)
    assert len(lines) == 1, err
    assert lines[0].startswith("painterly: error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("build, code, pattern, patch", BAD_INPUTS)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path, tiny_pair, capsys, monkeypatch, build, code, pattern, patch
):
    case = Case(tmp_path, tiny_pair)
    argv = build(case)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    if patch is not None:
        patch(monkeypatch)
    assert main(argv) == code
    assert re.search(pattern, one_error_line(capsys))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no output, no checkpoint, no temporary file


def test_debug_lets_the_traceback_through(tmp_path, tiny_pair):
    case = Case(tmp_path, tiny_pair)
    with pytest.raises(InputError, match="no such file"):
        main(case.argv("--debug", content=str(tmp_path / "nope.png")))


def test_a_good_run_writes_the_picture_and_no_checkpoint(tmp_path, tiny_pair, capsys):
    case = Case(tmp_path, tiny_pair)
    assert main(case.argv()) == 0
    assert Image.open(case.out).size == (32, 27)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    # the seed's three terms, then the Laplacian term (on by default since issue 12's session 5)
    line = (
        r"painterly: wrote .*out\.png in [\d.]+ s \(1 evaluations; content \d+%, style \d+%, tv \d+%, "
        r"laplacian \d+%, total \S+\)"
    )
    *progress, last = capsys.readouterr().err.splitlines()
    assert re.fullmatch(line, last)
    assert progress and all(p.startswith("painterly: scale 1/1 32x27, eval 1/1") for p in progress)  # not a terminal


@pytest.mark.parametrize(
    "error",
    [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried"),
     MemoryError()],
    ids=["cuda", "cpu-allocator", "python"],
)  # fmt: skip
def test_out_of_memory_names_the_size_that_failed_and_what_to_try(tmp_path, tiny_pair, capsys, monkeypatch, error):
    real = painterly.objective.Problem.objective_at

    def objective_at(self, size, *args):
        if size == (40, 48):  # the second scale: the first (24 px) fits
            raise error
        return real(self, size, *args)

    monkeypatch.setattr(painterly.objective.Problem, "objective_at", objective_at)
    case = Case(tmp_path, tiny_pair)
    assert main(case.argv("--size", "48", "--scales", "24,48")) == 3
    line = one_error_line(capsys)
    assert "out of memory at 48x40 px" in line and "try a smaller --size (e.g. 34)" in line
    assert "--history-size" in line and "--optimizer adam" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_bug_is_not_mistaken_for_out_of_memory(tmp_path, tiny_pair, monkeypatch):
    def broken(self, size, *args):
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(painterly.objective.Problem, "objective_at", broken)
    with pytest.raises(RuntimeError, match="shapes do not match"):
        main(Case(tmp_path, tiny_pair).argv())


def test_a_loss_that_stays_non_finite_stops_with_a_message_and_the_last_good_image(
    tmp_path, tiny_pair, capsys, monkeypatch
):
    real = Objective.__call__

    def poisoned(self, image):
        terms = real(self, image)
        return {**terms, "total": terms["total"] * float("nan")}

    monkeypatch.setattr(Objective, "__call__", poisoned)
    case = Case(tmp_path, tiny_pair)
    assert main(case.argv("--iterations", "5")) == 2
    line = one_error_line(capsys)
    assert "the loss stayed non-finite after 4 retries at 32x27" in line and "wrote it to" in line
    written = load_image(case.out)  # the last good image is the start: the content itself
    expected = resize(load_image(case.content), 32)
    assert written.shape == (1, 3, 27, 32) and (written - expected).abs().max() < 0.51 / 255


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def steps(n: int = 3) -> list[Step]:
    losses = {"content": 0.5, "style": 12.5, "tv": 0.03, "total": 13.0}
    return [Step(i, 12, 0, 2, (40, 48), losses, 0.1 * i, torch.zeros(1, 3, 40, 48)) for i in range(1, n + 1)]


def test_progress_bar_shows_evaluations_scale_and_loss_terms():
    screen = Terminal()
    bar = ProgressBar(file=screen)
    for step in steps():
        bar(step)
    bar.close()
    text = screen.getvalue()
    assert "scale 1/2 48x40" in text and "3/12" in text and "eval" in text
    assert "content=0.5" in text and "style=12.5" in text and "tv=0.03" in text and "total=13" in text


def test_progress_bar_is_silent_when_quiet():
    quiet = Terminal()
    bar = ProgressBar(disable=True, file=quiet)
    for step in steps():
        bar(step)
    bar.close()
    assert quiet.getvalue() == ""


def test_progress_off_a_terminal_is_a_plain_line_per_scale_every_so_often_and_at_the_end():
    log = io.StringIO()
    bar = ProgressBar(file=log, log_every=0.45)
    losses = {"content": 0.5, "style": 12.5, "total": 13.0}
    # 12 evaluations 0.1 s apart: scale 1 for 5 of them, then scale 2
    for i in range(1, 13):
        scale, size = (0, (20, 24)) if i <= 5 else (1, (40, 48))
        bar(Step(i, 12, scale, 2, size, losses, 0.1 * i, torch.zeros(1, 3, *size)))
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [ln.split(",")[0] for ln in lines] == [
        "painterly: scale 1/2 24x20",  # eval 1: a scale starts
        "painterly: scale 2/2 48x40",  # eval 6: the next scale starts
        "painterly: scale 2/2 48x40",  # eval 11: 0.45 s since the last line
        "painterly: scale 2/2 48x40",  # eval 12: the end
    ]
    assert "eval 6/12 (50%)" in lines[1] and "content 0.5 style 12.5 total 13" in lines[1]
    assert "eval 11/12" in lines[2] and "eval 12/12 (100%)" in lines[3]


def test_progress_shows_each_term_as_its_share_of_the_weighted_total():
    log = io.StringIO()
    # raw style 2e8 beside content 3: as weighed they are 30 % and 60 % of the total 10; a video's
    # temporal term arrives weighted and takes its share too
    losses = {"content": 3.0, "style": 2e8, "tv": 0.01, "temporal": 0.5, "total": 10.0,
              "weighted:content": 3.0, "weighted:style": 6.0, "weighted:tv": 0.5, "style:relu1_2": 1e8}  # fmt: skip
    bar = ProgressBar(file=log)
    bar(Step(1, 1, 0, 1, (20, 24), losses, 0.1, torch.zeros(1, 3, 20, 24)))
    bar.close()
    assert log.getvalue().rstrip().endswith("content 30% style 60% tv 5% temporal 5% total 10")
    from painterly import objective, progress

    assert progress.WEIGHTED == objective.WEIGHTED  # one prefix, spelt twice only to keep progress torch-free


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_progress_on_a_terminal_and_quiet(tmp_path, tiny_pair, monkeypatch, quiet):
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    assert main(Case(tmp_path, tiny_pair).argv("--iterations", "2", *(["--quiet"] if quiet else []))) == 0
    text = screen.getvalue()
    if quiet:
        assert text == ""
    else:
        assert "2/2" in text and "scale 1/1 32x27" in text and "total=" in text and "painterly: wrote" in text


# ---------------------------------------------------------------------------- odd but valid inputs
def _save(im: Image.Image, path: Path, **options) -> Path:
    im.save(path, **options)
    return path


def _rotated_jpeg(d: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    return _save(Image.fromarray(np.zeros((40, 48, 3), np.uint8)), d / "phone.jpg", exif=exif, quality=95)


def _half_transparent(d: Path) -> Path:
    rgba = np.zeros((40, 48, 4), np.uint8)
    rgba[:, 24:, 3] = 255  # left half fully transparent black, right half opaque black
    return _save(Image.fromarray(rgba), d / "alpha.png")


ODD_INPUTS = {  # id: (make the file, expected output (H, W))
    "grayscale": (lambda d: _save(Image.fromarray(NOISE[..., 0]), d / "gray.png"), (40, 48)),
    "palette": (lambda d: _save(Image.fromarray(NOISE).convert("P"), d / "palette.png"), (40, 48)),
    "cmyk-jpeg": (lambda d: _save(Image.fromarray(NOISE).convert("CMYK"), d / "cmyk.jpg", quality=95), (40, 48)),
    "16-bit": (lambda d: _save(Image.fromarray(NOISE[..., 0].astype(np.uint16) * 257), d / "deep.png"), (40, 48)),
    "alpha": (_half_transparent, (40, 48)),
    "exif-rotated": (_rotated_jpeg, (48, 40)),
    "icc-profile": (
        lambda d: _save(Image.fromarray(NOISE), d / "icc.png", icc_profile=swapped_red_green_profile()),
        (40, 48),
    ),  # fmt: skip
    # With the seed's layers (min side 16) the 160-px coarse scale (160x8) is skipped, not refused.
    "very-wide": (lambda d: _save(Image.fromarray(np.resize(NOISE, (16, 320, 3))), d / "wide.png"), (16, 320)),
    "very-tall": (lambda d: _save(Image.fromarray(np.resize(NOISE, (320, 16, 3))), d / "tall.png"), (320, 16)),
}


@pytest.mark.parametrize("make, shape", ODD_INPUTS.values(), ids=ODD_INPUTS.keys())
def test_odd_but_valid_content_goes_through_the_trusted_loader(tmp_path, tiny_pair, make, shape):
    """With no evaluations the output is the content as loaded (orientation, colours, alpha applied)."""
    path = make(tmp_path)
    size = str(max(shape))
    argv = [str(path), tiny_pair[1], "-o", str(tmp_path / "out.png"), *FAST, "--size", size, "--iterations", "0"]
    if path.stem in ("wide", "tall"):
        argv += [*SEED_LAYERS, "--iterations", "1", "--coarse-iterations", "1"]
    assert main([*argv, "--quiet"]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (*shape, 3)
    loaded = load_image(path)
    if path.stem not in ("wide", "tall"):  # no evaluation, at its own size: exactly the loader's pixels
        expected = np.round(loaded[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        assert np.array_equal(out, expected)
    if path.name in ("gray.png", "deep.png"):
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
        assert np.array_equal(out[..., 0], NOISE[..., 0])
    if path.name == "alpha.png":  # composited on white, as documented in load_image
        assert (out[:, :24] == 255).all() and (out[:, 24:] == 0).all()
    if path.name == "icc.png":  # red and green swap places when converted to sRGB
        assert np.corrcoef(out[..., 1].ravel(), NOISE[..., 0].ravel())[0, 1] > 0.95


def test_odd_style_image_runs(tmp_path, tiny_pair):
    """A 16-bit grayscale style and a wide palette style, blended, optimise fine."""
    gray16 = _save(Image.fromarray(NOISE[..., 0].astype(np.uint16) * 257), tmp_path / "s16.png")
    palette = _save(Image.fromarray(np.resize(NOISE, (20, 300, 3))).convert("P"), tmp_path / "sp.png")
    argv = [tiny_pair[0], str(gray16), str(palette), "-o", str(tmp_path / "out.png"), *FAST, "--iterations", "3"]
    assert main([*argv, "--quiet"]) == 0
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (27, 32, 3)


def test_threads_sets_torchs_thread_count_for_the_run(tmp_path, tiny_pair, monkeypatch):
    asked = []
    monkeypatch.setattr(torch, "set_num_threads", asked.append)
    assert main(Case(tmp_path, tiny_pair).argv("--threads", "1", "--quiet")) == 0
    assert asked == [1]
