"""Video: PyAV decode/encode, the temporal term, the frame loop, and the ``painterly video`` command
(tiny clips, random weights)."""

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")
pytest.importorskip("cv2")

import painterly  # noqa: E402
from painterly import videoio  # noqa: E402
from painterly.video import quantize, stylize_frames, temporal_term  # noqa: E402
from painterly.video_command import FRAME_NAME, RECORD, main  # noqa: E402

WIDTH, HEIGHT, RATE, SAMPLE_RATE = 48, 32, Fraction(12), 16000
FAST = ["--weights", "random", "--model", "vgg16", "--size", "32", "--scales", "24,32", "--iterations", "3",
        "--coarse-iterations", "2", "--frame-iterations", "2", "--quiet"]  # fmt: skip


def pan_frames(count: int, width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    """(H, W, 3) uint8 frames of a smooth random picture panning 2 px right per frame (structure every
    few pixels: finer colour detail would be lost to the encoder's 4:2:0 chroma)."""
    from PIL import Image

    from conftest import smooth_noise

    coarse = Image.fromarray(smooth_noise(height // 4, (width + 2 * count) // 4 + 1, seed=3))
    big = np.asarray(coarse.resize((coarse.width * 4, coarse.height * 4), Image.Resampling.BICUBIC))
    return [np.ascontiguousarray(big[:, 2 * (count - t) : 2 * (count - t) + width]) for t in range(count)]


def make_clip(path: Path, count: int = 6, *, audio: bool = True, rotation: int | None = None) -> Path:
    """An H.264 clip at 12 fps with (optionally) a mono AAC sine, written with PyAV directly."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=SAMPLE_RATE)
            sound.layout = "mono"
        for i, rgb in enumerate(pan_frames(count)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            t = np.arange(int(SAMPLE_RATE * count / RATE)) / SAMPLE_RATE
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for k in range(0, wave.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, k : k + 1024]), format="flt",
                                                   layout="mono")  # fmt: skip
                chunk.sample_rate = SAMPLE_RATE
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        return sum(f.samples for f in c.decode(c.streams.audio[0])) / c.streams.audio[0].codec_context.sample_rate


# ------------------------------------------------------------------------------------- PyAV
@pytest.mark.parametrize("ext", [".mp4", ".webm", ".mov"])
def test_round_trip_keeps_frames_rate_size_and_audio(tmp_path, ext):
    clip = make_clip(tmp_path / "in.mp4")
    info = videoio.probe(clip)
    assert info == videoio.VideoInfo(6, RATE, WIDTH, HEIGHT, True)
    frames = list(videoio.read_frames(clip))
    assert len(frames) == 6 and frames[0].shape == (1, 3, HEIGHT, WIDTH)
    # H.264 at CRF 18 is close to the picture it was given
    assert float((frames[2] - torch.from_numpy(pan_frames(6)[2]).permute(2, 0, 1)[None] / 255).abs().mean()) < 0.03

    out = videoio.write_video(tmp_path / f"out{ext}", frames, info.rate, audio_from=clip)
    assert videoio.probe(out) == info
    assert audio_seconds(out) == pytest.approx(audio_seconds(clip), abs=0.05)
    again = list(videoio.read_frames(out))
    assert float((again[3] - frames[3]).abs().mean()) < 0.03
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_display_rotation_is_applied_on_decode(tmp_path):
    clip = make_clip(tmp_path / "turned.mp4", count=2, audio=False, rotation=90)
    info = videoio.probe(clip)
    assert (info.width, info.height, info.audio) == (HEIGHT, WIDTH, False)
    upright = next(videoio.read_frames(clip))
    stored = torch.from_numpy(pan_frames(2)[0]).permute(2, 0, 1).float() / 255
    assert float((upright[0] - torch.rot90(stored, 1, dims=(1, 2))).abs().mean()) < 0.03  # 90° counter-clockwise


def test_gif_and_frame_folders(tmp_path):
    frames = [torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in pan_frames(4)]
    gif = videoio.write_video(tmp_path / "a.gif", frames, Fraction(10))
    assert videoio.probe(gif) == videoio.VideoInfo(4, Fraction(10), WIDTH, HEIGHT, False)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames, 1):  # natural order: frame_10 would come after frame_9
        painterly.save_image(f, folder / f"f_{i}.png")
    assert videoio.probe(folder, rate=Fraction(30000, 1001)).frames == 4
    assert videoio.probe(folder).rate == videoio.FOLDER_RATE
    assert all(torch.equal(a, quantize(b)) for a, b in zip(videoio.read_frames(folder), frames))


# ------------------------------------------------------------------------------- the temporal term
def test_temporal_term_is_the_masked_mean_square():
    warped = torch.zeros(1, 3, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    image = torch.tensor([[0.5, 1.0], [0.0, 0.2]]).expand(1, 3, 2, 2)
    # c (x − w)²: 0.25, (masked), 0, 0.04 per channel; mean over 12 values = 3 (0.29) / 12
    assert float(temporal_term(warped, mask, 2.0)(image)["temporal"]) == pytest.approx(2.0 * 0.29 / 4)
    at_other_size = temporal_term(torch.zeros(1, 3, 4, 4), torch.ones(4, 4), 1.0)(torch.ones(1, 3, 2, 2))
    assert float(at_other_size["temporal"]) == pytest.approx(1.0)


def test_later_frames_start_from_the_warped_previous_output(tiny_pair):
    frames = [torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in pan_frames(3)]
    s = painterly.Settings(size=32, weights="random", model="vgg16", scales=(24, 32), iterations=3,
                           coarse_iterations=2)  # fmt: skip
    tied = list(stylize_frames(frames, tiny_pair[1], s, temporal_weight=50.0, frame_iterations=2))
    assert [f.result.evaluations for f in tied] == [5, 2, 2]  # full schedule once, then the final scale only
    assert "temporal" in tied[1].result.losses and tied[0].mask is None
    assert tied[1].mask.shape == (21, 32) and float(tied[1].mask.mean()) > 0.8
    free = list(stylize_frames(frames, tiny_pair[1], s, temporal_weight=0.0))
    assert [f.result.evaluations for f in free] == [5, 5, 5] and free[1].mask is None
    assert torch.equal(free[0].image, tied[0].image)  # the first frame is the same either way
    assert all(torch.equal(f.image, quantize(f.image)) for f in tied)  # 8-bit exact, as stored


# ------------------------------------------------------------------------------------- the command
def test_video_command_writes_a_clip_with_the_audio(tmp_path, tiny_pair):
    clip = make_clip(tmp_path / "in.mp4", count=4)
    out = tmp_path / "out.mp4"
    assert main([str(clip), str(out), tiny_pair[1], *FAST]) == 0
    info = videoio.probe(out)
    assert (info.frames, info.rate, info.audio) == (4, RATE, True) and (info.width, info.height) == (32, 20)
    assert not (tmp_path / "out.mp4.frames").exists()  # removed once the clip is written


def test_killed_run_resumes_at_the_first_missing_frame_and_ends_identical(tmp_path, tiny_pair):
    clip = make_clip(tmp_path / "in.mp4", count=8, audio=False)
    reference = tmp_path / "reference"
    assert main([str(clip), str(reference), tiny_pair[1], *FAST]) == 0
    assert sorted(p.name for p in reference.iterdir()) == [FRAME_NAME.format(i) for i in range(1, 9)]

    out = tmp_path / "killed"
    argv = [str(clip), str(out), tiny_pair[1], *FAST]
    env = {**os.environ, "PYTHONPATH": str(Path(painterly.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "painterly", "video", *argv], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / FRAME_NAME.format(3)).exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # nothing runs on the way out
        proc.wait(timeout=60)
    finally:
        proc.kill()
    made = sorted(p.name for p in out.glob("frame_*.png"))
    assert 3 <= len(made) < 8, "the kill came too late"
    assert (out / RECORD).exists()

    assert main(argv) == 2  # without --resume the stopped run is not overwritten
    assert main([*argv, "--resume"]) == 0
    assert not (out / RECORD).exists()
    for i in range(1, 9):
        name = FRAME_NAME.format(i)
        assert np.array_equal(np.asarray(painterly.load_image(out / name)),
                              np.asarray(painterly.load_image(reference / name))), name  # fmt: skip


def test_resume_refuses_another_run(tmp_path, tiny_pair):
    clip = make_clip(tmp_path / "in.mp4", count=3, audio=False)
    out = tmp_path / "frames"
    out.mkdir()
    (out / RECORD).write_text('{"settings": {}}')
    assert main([str(clip), str(out), tiny_pair[1], *FAST, "--resume"]) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.mp4", "out.mp4", "STYLE"], "no such file or folder"),
        (["CLIP", "out.avi", "STYLE"], "unknown video extension"),
        (["CLIP", "out.mp4", "STYLE", "--temporal-weight", "-1"], "--temporal-weight must be"),
        (["CLIP", "out.mp4", "STYLE", "--temporal-weight", "many"], "expected a number"),
        (["CLIP", "out.mp4", "nostyle.jpg"], "no such file"),
        (["CLIP", "out.mp4", "STYLE", "--mask", "MASKS"], "1 images for 3 frames"),
        (["CLIP", "out.mp4", "STYLE", "--resume"], "holds no stopped run"),
        (["NOTVIDEO", "out.mp4", "STYLE"], "not a readable video"),
        (["CLIP", "no/such/dir/out.mp4", "STYLE"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, tiny_pair, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / "clip.mp4", count=3, audio=False)
    (tmp_path / "masks").mkdir()
    painterly.save_image(torch.ones(1, 3, 8, 8), tmp_path / "masks" / "m1.png")
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    names = {"CLIP": "clip.mp4", "STYLE": tiny_pair[1], "MASKS": "masks", "NOTVIDEO": "bad.mp4"}
    assert main([names.get(a, a) for a in args] + FAST) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("painterly: error: ") and message in err, err
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out.mp4.frames").exists()


def test_masks_one_image_or_a_folder_with_one_per_frame(tmp_path, tiny_pair):
    clip = make_clip(tmp_path / "in.mp4", count=3, audio=False)
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(1, 4):  # the style only in a band that moves with the frames
        m = torch.zeros(1, 3, HEIGHT, WIDTH)
        m[..., :, 8 * i : 8 * i + 16] = 1
        painterly.save_image(m, masks / f"mask_{i}.png")
    out = tmp_path / "out"
    assert main([str(clip), str(out), tiny_pair[1], tiny_pair[0], *FAST, "--mask", str(masks), "--mask", "none"]) == 0
    assert len(list(out.glob("frame_*.png"))) == 3
    one = tmp_path / "one"
    assert main([str(clip), str(one), tiny_pair[1], *FAST, "--mask", str(masks / "mask_1.png")]) == 0
    assert len(list(one.glob("frame_*.png"))) == 3
