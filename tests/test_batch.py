"""``painterly batch`` and :func:`painterly.batch.batch` on tiny images with random weights: pairing,
manifests, names, skipping what is done, a SIGKILL mid-item, isolated failures and the report.
The Ray engine's tests are in test_batch_ray.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import painterly
import painterly.api
from conftest import smooth_noise
from painterly.batch import batch, plan
from painterly.batch_plan import Source, find_images, pair
from painterly.cli import main
from painterly.config import Settings
from painterly.errors import OutOfMemory

FAST = dict(weights="random", model="vgg16", size=32, iterations=2, coarse_iterations=1,
            style_layers=("relu1_1", "relu2_1"), content_layer="relu2_1")  # fmt: skip
FLAGS = ["--weights", "random", "--model", "vgg16", "--size", "32", "--iterations", "2", "--coarse-iterations", "1",
         "--style-layers", "relu1_1,relu2_1", "--content-layer", "relu2_1", "--quiet"]  # fmt: skip


@pytest.fixture
def tree(tmp_path) -> Path:
    """contents/a.png, contents/sub/b.png (48x40) and styles/x.png, styles/y.png (56x56)."""
    (tmp_path / "contents" / "sub").mkdir(parents=True)
    (tmp_path / "styles").mkdir()
    Image.fromarray(smooth_noise(40, 48, 0)).save(tmp_path / "contents" / "a.png")
    Image.fromarray(smooth_noise(40, 48, 2)).save(tmp_path / "contents" / "sub" / "b.png")
    Image.fromarray(smooth_noise(56, 56, 1)).save(tmp_path / "styles" / "x.png")
    Image.fromarray(smooth_noise(56, 56, 3)).save(tmp_path / "styles" / "y.png")
    return tmp_path


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_cross_product_mirrors_the_tree_and_equals_single_runs(tree):
    out = tree / "out"
    seen = []
    report = batch([tree / "contents"], [tree / "styles"], out, Settings(**FAST), name="{content}_{style}.png",
                   on_item=seen.append)  # fmt: skip
    keys = ["a_x.png", "a_y.png", "sub/b_x.png", "sub/b_y.png"]
    assert [e["output"] for e in report["items"]] == keys and sorted(e["output"] for e in seen) == keys
    assert report["summary"] == {"total": 4, "done": 4, "skipped": 0, "failed": 0, "interrupted": 0, "pending": 0}
    assert json.loads((out / "batch.json").read_text())["items"] == report["items"]  # the file says the same
    assert report["finished"] is not None and report["settings"]["size"] == 32
    for e in report["items"]:
        assert e["status"] == "done" and e["error"] is None and e["evaluations"] == 2 and e["seconds"] > 0
        assert np.isfinite(e["loss"]) and e["loss"] == e["losses"]["total"]
    # Each output is what a single stylize of its pair makes: a batch changes nothing in the picture.
    single = painterly.stylize(tree / "contents" / "sub" / "b.png", tree / "styles" / "y.png", Settings(**FAST))
    painterly.save_image(single.image, tree / "single.png")
    assert np.array_equal(pixels(out / "sub" / "b_y.png"), pixels(tree / "single.png"))
    assert not [p for p in out.rglob(".*")] and not list(out.rglob("*.ckpt"))  # no temporary files left


def test_painterly_batch_is_callable_and_stays_the_module(tree):
    """The API the issue names, ``painterly.batch(...)``, with ``painterly.batch.plan`` still there."""
    seen = []
    report = painterly.batch([tree / "contents" / "a.png"], [tree / "styles"], tree / "out", Settings(**FAST),
                             on_item=seen.append)  # fmt: skip
    assert report["summary"]["done"] == 2 and [e["output"] for e in seen] == ["a_x.jpg", "a_y.jpg"]
    assert painterly.batch.plan is plan and painterly.batch.batch is batch


def test_manifest_rows_override_the_batch_settings(tree):
    (tree / "m.csv").write_text(
        "content,style,output,size,style_weight\n"
        "contents/a.png,styles/x.png,big.png,48,\n"
        "contents/sub/b.png,styles/x.png;styles/y.png,,,1000\n"
    )
    report = batch(manifest=tree / "m.csv", output_dir=tree / "out", settings=Settings(**FAST))
    big, blend = report["items"]
    assert big["output"] == "big.png" and big["overrides"] == {"size": 48}
    assert blend["output"] == "contents/sub/b_x+y.jpg" and blend["overrides"] == {"style_weight": 1000.0}
    assert blend["styles"] == [str(tree / "styles" / "x.png"), str(tree / "styles" / "y.png")]
    assert Image.open(tree / "out" / "big.png").size == (48, 40)  # the row's size won
    assert Image.open(tree / "out" / blend["output"]).size == (32, 27)  # the batch's size
    (tree / "m.jsonl").write_text(json.dumps({"content": "contents/a.png", "styles": ["styles/y.png"], "size": 40}))
    (item,) = plan(manifest=tree / "m.jsonl", output_dir=tree / "out2")
    assert item.styles == (tree / "styles" / "y.png",) and item.overrides == {"size": 40}


def test_random_pairing_is_one_style_per_content_and_reproducible_by_seed(tmp_path):
    contents = [Source(tmp_path / f"c{i}.jpg", tmp_path) for i in range(40)]
    styles = [Source(tmp_path / f"s{i}.jpg", tmp_path) for i in range(5)]
    first = pair(contents, styles, "random", seed=7)
    assert [c for c, _ in first] == contents  # one item per content, in order
    assert pair(contents, styles, "random", seed=7) == first
    assert pair(contents, styles, "random", seed=8) != first
    assert len({s for _, s in first}) == 5  # 40 draws from 5 styles use them all
    # A content keeps its style when the set grows or is reordered (the draw depends on it alone).
    more = pair([*reversed(contents), Source(tmp_path / "new.jpg", tmp_path)], styles, "random", seed=7)
    assert dict(first).items() <= dict(more).items()
    assert pair(contents[:5], styles, "one-to-one") == list(zip(contents[:5], styles))


def test_finished_items_are_skipped_until_their_settings_or_inputs_change(tree):
    out = tree / "out"
    args = ([tree / "contents"], [tree / "styles"], out)
    batch(*args, Settings(**FAST))
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    again = batch(*args, Settings(**FAST))
    assert {e["status"] for e in again["items"]} == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == stamps  # nothing rewritten
    assert again["items"][0]["loss"] is not None  # a skipped item keeps what its run recorded
    Image.fromarray(smooth_noise(56, 56, 9)).save(tree / "styles" / "y.png")  # one style changed
    changed = batch(*args, Settings(**FAST))
    assert {e["output"]: e["status"] for e in changed["items"]} == {
        "a_x.jpg": "skipped", "a_y.jpg": "done", "sub/b_x.jpg": "skipped", "sub/b_y.jpg": "done"}  # fmt: skip
    (out / "a_x.jpg").unlink()  # a deleted output is painted again
    other = batch(*args, Settings(**{**FAST, "iterations": 3}))  # other settings: everything again
    assert {e["status"] for e in other["items"]} == {"done"} and (out / "a_x.jpg").exists()


def test_a_batch_killed_mid_item_and_rerun_does_only_the_rest(tree):
    """SIGKILL while the second item runs: the rerun skips the first, resumes the second from its
    checkpoint, paints the third, and every output equals an uninterrupted batch's."""
    long = ["--iterations", "30", "--checkpoint-every", "0.001", "--name", "{content}_{style}.png"]
    argv = ["batch", str(tree / "contents"), "-s", str(tree / "styles" / "x.png"), *FLAGS, *long]
    Image.fromarray(smooth_noise(40, 48, 4)).save(tree / "contents" / "c.png")
    killed, reference = tree / "killed", tree / "reference"
    env = {**os.environ, "PYTHONPATH": str(Path(painterly.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "painterly", *argv, "-o", str(killed)], env=env,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (killed / "c_x.png.ckpt").exists():  # the second item (a, c, sub/b) is under way
            assert proc.poll() is None and time.monotonic() < deadline, "the batch did not get going"
            time.sleep(0.005)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    first = json.loads((killed / "batch.json").read_text())["items"]
    assert [e["status"] for e in first] == ["done", "pending", "pending"]
    assert main([*argv, "-o", str(killed)]) == 0
    items = json.loads((killed / "batch.json").read_text())["items"]
    assert [e["status"] for e in items] == ["skipped", "done", "done"]
    assert items[1]["resumed_from"] >= 1 and items[2]["resumed_from"] is None
    # The resumed item is what an uninterrupted batch makes of it.
    assert main(["batch", str(tree / "contents" / "c.png"), *argv[2:], "-o", str(reference)]) == 0
    assert np.array_equal(pixels(killed / "c_x.png"), pixels(reference / "c_x.png"))
    assert not list(killed.rglob("*.ckpt")) and not list(killed.rglob(".*"))


def test_a_stopped_batch_leaves_the_rest_pending_and_a_rerun_finishes_it(tree):
    stop = threading.Event()
    args = ([tree / "contents"], [tree / "styles" / "x.png"], tree / "out", Settings(**FAST))
    first = batch(*args, stop=stop, on_item=lambda entry: stop.set())
    assert [e["status"] for e in first["items"]] == ["done", "pending"] and first["finished"] is None
    again = batch(*args)
    assert [e["status"] for e in again["items"]] == ["skipped", "done"] and again["finished"] is not None


def test_a_corrupt_input_or_out_of_memory_fails_alone(tree, monkeypatch, capsys):
    (tree / "contents" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    real = painterly.api.stylize

    def stylize(content, styles, settings, **kw):
        if Path(content).name == "b.png":
            raise OutOfMemory("out of memory at 32x27 px (RuntimeError); try a smaller --size (e.g. 23)")
        return real(content, styles, settings, **kw)

    monkeypatch.setattr(painterly.api, "stylize", stylize)
    argv = ["batch", str(tree / "contents"), "-s", str(tree / "styles" / "x.png"), "-o", str(tree / "out"), *FLAGS]
    assert main(argv) == 1
    items = {e["output"]: e for e in json.loads((tree / "out" / "batch.json").read_text())["items"]}
    assert items["a_x.jpg"]["status"] == "done" and (tree / "out" / "a_x.jpg").exists()
    broken, oom = items["broken_x.jpg"], items["sub/b_x.jpg"]
    assert broken["status"] == "failed" and "broken.png" in broken["error"] and "\n" not in broken["error"]
    assert oom["status"] == "failed" and oom["error"].startswith("out of memory at 32x27 px")
    assert not (tree / "out" / "broken_x.jpg").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("painterly batch: 3 items: 1 done, 2 failed")
    # A rerun keeps the failures (nothing changed) and exits non-zero; --retry-failed paints them again.
    assert main(argv) == 1
    assert {e["status"] for e in json.loads((tree / "out" / "batch.json").read_text())["items"]} == {
        "skipped",
        "failed",
    }
    monkeypatch.setattr(painterly.api, "stylize", real)
    (tree / "contents" / "broken.png").unlink()
    assert main([*argv, "--retry-failed"]) == 0
    assert (tree / "out" / "sub" / "b_x.jpg").exists()


@pytest.mark.parametrize("extra, says", [
    (["--pair", "zigzag"], "invalid choice: 'zigzag'"),
    (["--name", "{nope}.jpg"], "only {content} and {style}"),
    (["--name", "{content}.jpg"], "would both write"),
    (["--name", "{content}_{style}.gif"], "unknown image extension"),
    (["--size", "8"], "--size must be an integer >= 16"),
    (["--pair", "one-to-one", "-s", "extra.png"], "as many styles as contents"),
    (["--threads", "0"], "expected a whole number >= 1"),
])  # fmt: skip
def test_bad_flags_are_one_line_and_exit_2(tree, capsys, extra, says):
    (tree / "extra.png").write_bytes((tree / "styles" / "x.png").read_bytes())
    extra = [str(tree / e) if e.endswith(".png") else e for e in extra]
    argv = ["batch", str(tree / "contents"), "-s", str(tree / "styles"), "-o", str(tree / "out"), *FLAGS, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list((tree / "out").glob("*.jpg")) if (tree / "out").exists() else True


def test_bad_manifests_and_inputs_are_one_line(tree, capsys):
    (tree / "m.csv").write_text("content,style,sizee\ncontents/a.png,styles/x.png,48\n")
    (tree / "n.csv").write_text("content,style,size\ncontents/a.png,styles/x.png,big\n")
    cases = [
        (["--manifest", str(tree / "m.csv")], "line 2: unknown setting(s) sizee"),
        (["--manifest", str(tree / "n.csv")], "line 2: setting size must be an integer, got 'big'"),
        ([str(tree / "nowhere"), "-s", str(tree / "styles")], "nowhere: no such file or folder"),
        ([str(tree / "contents")], "give at least one --style"),
        ([str(tree / "contents" / "*.webp"), "-s", str(tree / "styles")], "matches no images"),
    ]
    for extra, says in cases:
        assert main(["batch", *extra, "-o", str(tree / "out"), *FLAGS]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err


def test_globs_mirror_below_their_fixed_part_and_skip_the_output_folder(tree):
    (tree / "contents" / "styled").mkdir()
    Image.fromarray(smooth_noise(40, 48, 5)).save(tree / "contents" / "styled" / "old_x.png")
    found = find_images([str(tree / "contents" / "**" / "*.png")], what="content", exclude=tree / "contents" / "styled")
    assert [s.path.relative_to(tree / "contents").as_posix() for s in found] == ["a.png", "sub/b.png"]
    assert [s.subfolder.as_posix() for s in found] == [".", "sub"]


def test_engine_ray_without_ray_says_how_to_get_it(tree, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    monkeypatch.delitem(sys.modules, "painterly.batch_ray", raising=False)
    argv = ["batch", str(tree / "contents"), "-s", str(tree / "styles"), "-o", str(tree / "out"), *FLAGS]
    assert main([*argv, "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'painterly[ray]'" in err and len(err.strip().splitlines()) == 1


DRIVER = """
import sys, types
fake = types.ModuleType("painterly.batch_ray")  # Ray's side stands in: each item comes back as bytes
def paint_on_ray(todo, **kw):
    for item, s in todo:
        yield item, {"image": open(sys.argv[1], "rb").read(), "losses": {"total": 1.0}, "seconds": 0.1}
fake.paint_on_ray = paint_on_ray
sys.modules["painterly.batch_ray"] = fake
from painterly.cli import main
code = main(["batch", *sys.argv[2:], "--engine", "ray", "--quiet"])
print(code, sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy")))
"""


def test_the_ray_driver_never_imports_torch(tree):
    """The driver only plans, reads inputs and writes outputs: importing torch there would add its
    seconds to Ray's own start (benchmarks/batch.py) for nothing."""
    argv = [str(tree / "contents"), "-s", str(tree / "styles"), "-o", str(tree / "out")]
    run = subprocess.run([sys.executable, "-c", DRIVER, str(tree / "styles" / "x.png"), *argv],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0", "[]"], run.stdout
    assert len(list((tree / "out").rglob("*.jpg"))) == 4
