"""The Ray engine (``painterly[ray]``): a local Ray with two CPUs whose worker is killed mid-task,
and a real head node (``ray start --head`` on loopback) that ``painterly batch --ray-address`` joins.

Ray takes seconds to start, so there are two tests, each doing several things."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray")

import painterly  # noqa: E402
import painterly.batch  # noqa: E402
import painterly.batch_ray  # noqa: E402
from painterly.batch import batch  # noqa: E402
from painterly.config import Settings  # noqa: E402
from test_batch import FAST, FLAGS, tree  # noqa: E402, F401 -- the same tiny images and settings

SRC = str(Path(painterly.__file__).parents[1])


def test_local_ray_paints_each_item_once_though_a_worker_dies(tree, tmp_path, monkeypatch):  # noqa: F811
    """Two one-CPU tasks at a time; the first task to start SIGKILLs its own worker once. Ray retries
    it, and every output is written once, by this process, and matches the local engine's."""
    monkeypatch.setenv("PYTHONPATH", SRC)  # the workers import this checkout's painterly
    marker = tmp_path / "died-once"
    real = painterly.batch_ray.paint_bytes

    def dies_once(meta, content, *styles):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # only the first task anywhere gets here
        except FileExistsError:
            return real(meta, content, *styles)
        os.kill(os.getpid(), signal.SIGKILL)

    writes = []
    write = painterly.batch._write_output
    monkeypatch.setattr(painterly.batch_ray, "paint_bytes", dies_once)
    monkeypatch.setattr(
        painterly.batch, "_write_output", lambda item, image: (writes.append(item.key), write(item, image))
    )
    (tree / "contents" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # fails alone
    out, here = tree / "ray", tree / "here"
    settings = Settings(**FAST)
    report = batch([tree / "contents"], [tree / "styles" / "x.png"], out, settings, engine="ray", ray_cpus=2,
                   threads=1, name="{content}_{style}.png")  # fmt: skip
    assert marker.exists()  # a worker did die
    items = {e["output"]: e for e in report["items"]}
    assert {k: e["status"] for k, e in items.items()} == {"a_x.png": "done", "sub/b_x.png": "done",
                                                          "broken_x.png": "failed"}  # fmt: skip
    assert items["broken_x.png"]["error"].startswith(f"{tree / 'contents' / 'broken.png'}: ")  # its own name
    assert sorted(writes) == ["a_x.png", "sub/b_x.png"]  # once each, though one task ran twice
    assert json.loads((out / "batch.json").read_text())["engine"] == "ray"
    local = batch(
        [tree / "contents" / "a.png"], [tree / "styles" / "x.png"], here, settings, name="{content}_{style}.png"
    )
    assert local["items"][0]["status"] == "done"
    ray_px, here_px = (np.asarray(Image.open(p / "a_x.png"), np.int16) for p in (out, here))
    assert np.abs(ray_px - here_px).max() <= 2  # the same picture (thread counts differ: last bits may)
    assert items["a_x.png"]["loss"] == pytest.approx(local["items"][0]["loss"], rel=1e-3)
    # The rerun skips everything on the driver: Ray is not even started when nothing is left to do.
    again = batch([tree / "contents"], [tree / "styles" / "x.png"], out, settings, engine="ray", ray_cpus=2,
                  threads=1, name="{content}_{style}.png")  # fmt: skip
    assert [e["status"] for e in again["items"]] == ["skipped", "failed", "skipped"]
    import ray

    assert not ray.is_initialized()  # the batch shut down the Ray it started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_driver_joins_a_head_node_by_address(tree, tmp_path):  # noqa: F811
    port = _free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    # Ray's token authentication, with a token of this test's own (not the user's ~/.ray/auth_token).
    env = {**os.environ, "PYTHONPATH": SRC, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    temp = Path(f"/tmp/ray-{secrets.token_hex(3)}")  # short: Ray's socket paths must stay under 108 bytes
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp), "--block"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        argv = [sys.executable, "-m", "painterly", "batch", str(tree / "contents"), "-s", str(tree / "styles"),
                "-o", str(tree / "out"), *FLAGS, "--ray-address", f"127.0.0.1:{port}", "--threads", "1"]  # fmt: skip
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the head and every Ray process it started: its session
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=20)
        time.sleep(0.5)
        with_session = subprocess.run(["pgrep", "-s", str(head.pid)], capture_output=True, text=True).stdout.split()
        for pid in with_session:  # what ignored SIGTERM
            os.kill(int(pid), signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("painterly batch: 4 items: 4 done")
    report = json.loads((tree / "out" / "batch.json").read_text())
    assert report["engine"] == "ray" and [e["status"] for e in report["items"]] == ["done"] * 4
    assert all(Image.open(tree / "out" / e["output"]).size == (32, 27) for e in report["items"])
