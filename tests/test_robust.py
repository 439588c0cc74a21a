"""Nothing lost: interrupted runs resume to the uninterrupted result, checkpoints are safe, a NaN
is survived. The signal tests interrupt a real ``python -m painterly`` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import painterly
import painterly.optimize
from painterly.checkpoint import load_checkpoint, save_checkpoint
from painterly.cli import main
from painterly.errors import InputError
from painterly.objective import Objective
from painterly.signals import StopOnSignal

# Two scales (24 and 48 px), a network cut after relu2_1: cheap, and every resume case is reachable.
RUN = dict(weights="random", model="vgg16", size=48, scales=(24, 48), coarse_iterations=4, iterations=6,
           style_layers=("relu1_1", "relu2_1"), content_layer="relu2_1")  # fmt: skip
CLI_RUN = ["--weights", "random", "--model", "vgg16", "--size", "48", "--scales", "24,48", "--coarse-iterations",
           "12", "--iterations", "12", "--style-layers", "relu1_1,relu2_1", "--content-layer", "relu2_1"]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tiny_pair):
    return {opt: painterly.stylize(*tiny_pair, optimizer=opt, **RUN) for opt in ("lbfgs", "adam")}


def stop_at(k: int):
    stop = threading.Event()

    def callback(step):
        if step.iteration == k:
            stop.set()

    return stop, callback


@pytest.mark.parametrize(
    "optimizer, k",
    [("lbfgs", 2), ("lbfgs", 4), ("lbfgs", 7), ("adam", 5)],
    ids=["lbfgs-mid-coarse-scale", "lbfgs-at-the-scale-change", "lbfgs-mid-final-scale", "adam"],
)
def test_resumed_run_ends_with_the_uninterrupted_pixels(tmp_path, tiny_pair, uninterrupted, optimizer, k):
    stop, callback = stop_at(k)
    part = painterly.stylize(*tiny_pair, optimizer=optimizer, callback=callback, stop=stop, **RUN)
    assert part.interrupted and part.evaluations == k and part.message == ""
    save_checkpoint(part.checkpoint(), tmp_path / "run.ckpt")  # through the file, as the CLI does
    steps = []
    rest = painterly.stylize(
        *tiny_pair, optimizer=optimizer, resume=load_checkpoint(tmp_path / "run.ckpt"), callback=steps.append, **RUN
    )
    full = uninterrupted[optimizer]
    assert not rest.interrupted and rest.evaluations == full.evaluations == 10
    assert [s.iteration for s in steps] == list(range(k + 1, 11))
    assert torch.equal(rest.image, full.image)
    assert [h["total"] for h in rest.history] == [h["total"] for h in full.history]


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_periodic_checkpoints_of_a_running_job_each_resume_to_the_uninterrupted_pixels(
    tmp_path, tiny_pair, uninterrupted, optimizer
):
    taken = []
    run = painterly.stylize(*tiny_pair, optimizer=optimizer, checkpoint_every=0, on_checkpoint=taken.append, **RUN)
    full = uninterrupted[optimizer]
    assert not run.interrupted and torch.equal(run.image, full.image)  # taking them changes nothing
    # after every evaluation but a scale's last (4 coarse + 6 final): 3 + 5 of them
    assert [c["position"]["iteration"] for c in taken] == [1, 2, 3, 5, 6, 7, 8, 9]
    for state in (taken[1], taken[4]):  # mid coarse scale, and just after the scale change
        save_checkpoint(state, tmp_path / "run.ckpt")
        rest = painterly.stylize(*tiny_pair, optimizer=optimizer, resume=load_checkpoint(tmp_path / "run.ckpt"), **RUN)
        assert rest.evaluations == 10 and torch.equal(rest.image, full.image)


def test_checkpoints_come_no_more_often_than_asked(tiny_pair):
    taken = []
    painterly.stylize(*tiny_pair, checkpoint_every=3600, on_checkpoint=taken.append, **RUN)
    assert taken == []


def test_a_checkpoint_resumes_only_its_own_settings_and_images(tiny_pair):
    stop, callback = stop_at(2)
    state = painterly.stylize(*tiny_pair, callback=callback, stop=stop, **RUN).checkpoint()
    with pytest.raises(InputError, match=r"other settings \(style_weight\)"):
        painterly.stylize(*tiny_pair, resume=state, **{**RUN, "style_weight": 5.0})
    with pytest.raises(InputError, match="other content, style or mask images"):
        painterly.stylize(tiny_pair[1], tiny_pair[1], resume=state, **RUN)
    assert painterly.stylize(*tiny_pair, resume=state, **RUN).evaluations == 10


def test_load_checkpoint_refuses_what_is_not_one(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="is not a painterly checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "other.pt").read_bytes()[:100])
    with pytest.raises(InputError, match=r"cut\.ckpt is damaged .*; delete it and start again"):
        load_checkpoint(tmp_path / "cut.ckpt")


def test_a_failed_checkpoint_write_keeps_the_old_one(tmp_path, monkeypatch):
    path = save_checkpoint({"params": torch.ones(1), "position": {}}, tmp_path / "run.ckpt")
    before = path.read_bytes()

    def crash(obj, fh):
        fh.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("painterly.checkpoint.torch.save", crash)
    with pytest.raises(InputError, match=r"run\.ckpt could not be written \(No space left on device\)"):
        save_checkpoint({"params": torch.zeros(1), "position": {}}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]


def test_a_nan_steps_back_to_the_last_good_image_with_a_smaller_step(tiny_pair, monkeypatch):
    real, seen = Objective.__call__, []

    def flaky(self, image):
        seen.append(image.detach().clone())
        terms = real(self, image)
        if len(seen) == 3:  # the third evaluation blows up
            return {**terms, "total": terms["total"] * float("inf")}
        return terms

    made = []
    real_make = painterly.optimize.make_optimizer

    def make_optimizer(name, param, lr, history_size):
        made.append(lr)
        return real_make(name, param, lr, history_size)

    monkeypatch.setattr(Objective, "__call__", flaky)
    monkeypatch.setattr(painterly.optimize, "make_optimizer", make_optimizer)
    steps = []
    result = painterly.stylize(*tiny_pair, callback=steps.append, **{**RUN, "scales": (48,)})
    assert torch.equal(seen[3], seen[1])  # the retry evaluates the last good image again
    assert made == [1.0, 0.5]  # a fresh optimiser (no poisoned L-BFGS history) at half the step
    assert not result.interrupted and result.message == ""
    assert result.evaluations == len(steps) == 6 and len(seen) == 7  # the failed evaluation is not counted
    assert all(np.isfinite(h["total"]) for h in result.history) and torch.isfinite(result.image).all()
    assert result.history[-1]["total"] < result.history[0]["total"]


def test_a_second_signal_quits_at_once():
    said = []
    signals = StopOnSignal(said.append, "stopping after this evaluation")
    signals._on_signal(signal.SIGTERM, None)
    assert signals.stop.is_set() and signals.exit_code() == 143 and "SIGTERM: stopping" in said[0]
    with pytest.raises(KeyboardInterrupt):
        signals._on_signal(signal.SIGINT, None)


# ------------------------------------------------------------------------------ real signals
@pytest.fixture(scope="module")
def reference(tiny_pair, tmp_path_factory) -> np.ndarray:
    """The uninterrupted CLI run's output."""
    out = tmp_path_factory.mktemp("reference") / "out.png"
    assert main([*tiny_pair, "-o", str(out), *CLI_RUN, "--quiet"]) == 0
    return np.asarray(Image.open(out))


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_image_and_checkpoint_and_resume_matches(tmp_path, tiny_pair, reference, signum, code):
    out = tmp_path / "out.png"
    argv = [*tiny_pair, "-o", str(out), *CLI_RUN, "--save-every", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(painterly.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "painterly", *argv], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "out_00003.png").exists():  # running: three evaluations are done
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.005)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert f"{signal.Signals(signum).name}: stopping after this evaluation" in err
    assert "stopped; saved" in err and "Traceback" not in err
    assert out.exists() and Path(f"{out}.ckpt").exists()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    stopped_at = load_checkpoint(f"{out}.ckpt")["position"]["iteration"]
    assert 3 <= stopped_at < 12, "the signal came too late"  # still at the coarse scale
    saved = np.asarray(Image.open(out))
    assert np.array_equal(saved, np.asarray(Image.open(tmp_path / f"out_{stopped_at:05d}.png")))

    assert main([*argv, "--resume", "--quiet"]) == 0
    assert not Path(f"{out}.ckpt").exists()
    assert np.array_equal(np.asarray(Image.open(out)), reference)


def test_a_killed_run_resumes_from_its_last_periodic_checkpoint(tmp_path, tiny_pair, reference):
    out = tmp_path / "out.png"
    argv = [*tiny_pair, "-o", str(out), *CLI_RUN, "--save-every", "1", "--checkpoint-every", "0.001"]
    env = {**os.environ, "PYTHONPATH": str(Path(painterly.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "painterly", *argv], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "out_00005.png").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.005)
        proc.kill()  # SIGKILL: no handler runs, nothing is saved on the way out
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(f"{out}.ckpt")["position"]["iteration"] >= 4
    assert main([*argv, "--resume", "--quiet"]) == 0
    assert not Path(f"{out}.ckpt").exists()
    assert np.array_equal(np.asarray(Image.open(out)), reference)


def test_a_write_killed_midway_leaves_nothing_once_the_path_is_written_or_removed(tmp_path):
    from painterly.checkpoint import remove_checkpoint
    from painterly.files import atomic_write

    path = tmp_path / "run.ckpt"
    (tmp_path / ".run.ckpt.0123456789ab.part").write_bytes(b"half of what a SIGKILL cut short")
    (tmp_path / ".other.png.0123456789ab.part").write_bytes(b"another file's: kept")
    atomic_write(path, b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.png.0123456789ab.part", "run.ckpt"]
    (tmp_path / ".run.ckpt.ba9876543210.part").write_bytes(b"again")
    remove_checkpoint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.png.0123456789ab.part"]


@pytest.mark.parametrize("optimizer, k", [("lbfgs", 2), ("lbfgs", 4), ("lbfgs", 7), ("adam", 5)])
def test_with_an_iterate_average_a_resumed_run_and_periodic_checkpoints_end_with_the_uninterrupted_pixels(
    tmp_path, tiny_pair, optimizer, k
):
    run = {**RUN, "iterate_average": 0.7, "optimizer": optimizer}
    taken = []
    full = painterly.stylize(*tiny_pair, checkpoint_every=0, on_checkpoint=taken.append, **run)
    assert all(("average" in c) for c in taken)  # every checkpoint is mid-scale: each carries its average
    stop, callback = stop_at(k)
    part = painterly.stylize(*tiny_pair, callback=callback, stop=stop, **run)
    save_checkpoint(part.checkpoint(), tmp_path / "run.ckpt")
    rest = painterly.stylize(*tiny_pair, resume=load_checkpoint(tmp_path / "run.ckpt"), **run)
    assert rest.evaluations == 10 and torch.equal(rest.image, full.image)
    save_checkpoint(taken[k - 2], tmp_path / "run.ckpt")
    again = painterly.stylize(*tiny_pair, resume=load_checkpoint(tmp_path / "run.ckpt"), **run)
    assert torch.equal(again.image, full.image)


def test_a_checkpoint_from_before_the_quality_options_resumes_with_them_off(tiny_pair, uninterrupted):
    stop, callback = stop_at(2)
    state = painterly.stylize(*tiny_pair, callback=callback, stop=stop, **RUN).checkpoint()
    for name in ("style_loss", "iterate_average", "padding", "carry_detail", "coarse_content_weight"):
        del state["settings"][name]  # as written by a version without them
    assert torch.equal(painterly.stylize(*tiny_pair, resume=state, **RUN).image, uninterrupted["lbfgs"].image)
    with pytest.raises(InputError, match=r"other settings \(carry_detail\)"):
        painterly.stylize(*tiny_pair, resume=state, **{**RUN, "carry_detail": True})


def test_a_checkpoint_from_before_the_coarse_shallow_weight_resumes_only_at_its_old_value_1(tiny_pair):
    before = {**RUN, "coarse_shallow_weight": 1.0}  # how a version without the setting ran
    full = painterly.stylize(*tiny_pair, **before)
    stop, callback = stop_at(2)
    state = painterly.stylize(*tiny_pair, callback=callback, stop=stop, **before).checkpoint()
    del state["settings"]["coarse_shallow_weight"]  # as written by that version
    assert torch.equal(painterly.stylize(*tiny_pair, resume=state, **before).image, full.image)
    with pytest.raises(InputError, match=r"other settings \(coarse_shallow_weight\)"):
        painterly.stylize(*tiny_pair, resume=state, **RUN)  # today's default, 0.3, would mix two objectives
