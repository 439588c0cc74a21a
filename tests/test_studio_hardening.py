"""The studio under hostile and clumsy use, through HTTP against the real app (issue 13).

Bad settings are refused before anything is stored; records it cannot read do not take the gallery
down; no non-finite number reaches JSON; the host mode stays guarded; one server per data folder;
uploads are stored by content with a quota; every response carries the security headers; and a
server killed mid-job resumes it to the pixels an uninterrupted run makes.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("multipart")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from painterly import cli  # noqa: E402
from painterly.config import Settings  # noqa: E402
from painterly.errors import InputError, PainterlyError  # noqa: E402
from painterly.studio import create_app  # noqa: E402
from painterly.studio.engine import Outcome  # noqa: E402
from test_studio_api import FakeRunner, TestClient, png_bytes, submit, upload, wait_for  # noqa: E402
from test_studio_jobs import live_server  # noqa: E402


@pytest.fixture
def studio(tmp_path):
    runner = FakeRunner()
    with TestClient(create_app(tmp_path / "data", runner=runner)) as client:
        content = upload(client, png_bytes(seed=1), "content.png")["ref"]
        style = upload(client, png_bytes(seed=2), "style.png")["ref"]
        yield SimpleNamespace(client=client, content=content, style=style, runner=runner, data=tmp_path / "data")


def post_job(studio, settings_json: str):
    """POST a job whose settings are raw JSON text (so 1e400 and Infinity arrive as written)."""
    body = f'{{"content": "{studio.content}", "styles": ["{studio.style}"], "settings": {settings_json}}}'
    return studio.client.post("/api/jobs", content=body, headers={"Content-Type": "application/json"})


def assert_refused(studio, response, *words):
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert "\n" not in message and all(w in message for w in words), message
    listing = studio.client.get("/api/jobs")
    assert listing.status_code == 200 and listing.json()["jobs"] == []  # nothing was stored
    assert studio.runner.seeds == []


# ---- settings: one validation, before anything is stored -----------------------------------------

NUMERIC = ["size", "iterations", "coarse_iterations", "content_weight", "style_weight", "tv_weight", "style_scale",
           "seed"]  # fmt: skip


@pytest.mark.parametrize("number", ["1e400", "-1e400", "Infinity", "-Infinity", "NaN"])
@pytest.mark.parametrize("field", NUMERIC + ["style_blend_weights"])
def test_a_non_finite_number_in_any_field_is_400_and_stores_nothing(studio, field, number):
    value = f"[{number}]" if field == "style_blend_weights" else number
    assert_refused(studio, post_job(studio, f'{{"{field}": {value}}}'), field)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"size": 10**9}, ["--size", "32768"]),
        ({"iterations": 10**12}, ["--iterations", "100000"]),
        ({"coarse_iterations": -1}, ["--coarse-iterations"]),
        ({"seed": 2**70}, ["--seed"]),
        ({"seed": -1}, ["--seed"]),
        ({"style_blend_weights": [1, 2]}, ["--style-blend-weights has 2 values for 1 style images"]),
        ({"style_blend_weights": [1.0] * 100}, ["--style-blend-weights"]),
        ({"style_scale": 1e300}, ["--style-scale must be at most 100.0"]),
        ({"style_scale": 50}, ["--style-scale: style 1 at scale 1", "the limit is 25,000,000"]),
        ({"content_weight": -1}, ["--content-weight", ">= 0"]),
        ({"size": [[[1]]]}, ["setting size must be an integer"]),
    ],
)
def test_out_of_range_settings_are_400_before_anything_runs(studio, settings, words):
    response = studio.client.post(
        "/api/jobs", json={"content": studio.content, "styles": [studio.style], "settings": settings}
    )
    assert_refused(studio, response, *words)


def test_a_derived_style_size_past_the_pixel_limit_is_refused_before_it_runs(tmp_path):
    runner = FakeRunner()
    with TestClient(create_app(tmp_path, runner=runner, max_pixels=100_000)) as client:
        content = upload(client, png_bytes(40, 30, seed=1))["ref"]
        style = upload(client, png_bytes(40, 30, seed=2))["ref"]
        body = {"content": content, "styles": [style], "settings": {"size": 256, "iterations": 3}}
        assert client.post("/api/jobs", json=body).status_code == 201  # 256x192 output (one scale), style as big: fits
        body["settings"]["style_scale"] = 2.0  # a 35-byte setting asking for a 512x384 style image
        response = client.post("/api/jobs", json=body)
        assert response.status_code == 400
        assert response.json()["error"] == (
            "--style-scale: style 1 at scale 1 would be 512x384 = 196,608 pixels; the limit is 100,000"
        )
        assert len(client.get("/api/jobs").json()["jobs"]) == 1


def test_check_pixels_counts_a_thin_style_at_the_size_the_network_needs():
    settings = Settings(size=64, scales=(64,), model="vgg16").resolved()
    # A 1-pixel-high style is enlarged until its short side is 16 px (vgg16's deepest tap needs it).
    sizes = dict((what, hw) for what, _, hw in settings.planned_sizes((64, 64), [(1, 2000)]))
    assert sizes["style 1 at scale 1"] == (16, 32000)
    with pytest.raises(InputError, match="style 1 at scale 1 would be 32000x16 = 512,000 pixels"):
        settings.check_pixels(100_000, (64, 64), [(1, 2000)])
    settings.check_pixels(100_000, (64, 64), [(64, 64)])


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,  # past Python's recursion limit
        '{"content": ' + "[" * 50 + "]" * 50 + "}",  # under it, past the studio's nesting bound
        '{"content": "x", "styles": ["y"], "settings": {"size": ' + "[" * 40 + "]" * 40 + "}}",
        "{not json",
        b"\xff\xfe",  # not UTF-8
    ],
)
def test_a_body_that_is_not_plain_json_is_400(studio, body):
    response = studio.client.post("/api/jobs", content=body if isinstance(body, bytes) else body.encode())
    assert_refused(studio, response, "JSON")


def test_a_huge_value_is_named_in_a_short_message(studio):
    response = post_job(studio, json.dumps({"model": "x" * 100_000}))
    assert response.status_code == 400 and len(response.json()["error"]) <= 300


# ---- what the gallery shows ------------------------------------------------------------------------


def test_an_unreadable_record_is_shown_as_such_and_the_gallery_keeps_serving(studio):
    good = wait_for(studio.client, submit(studio.client, studio.content, [studio.style])["id"])
    db = sqlite3.connect(studio.data / "studio.sqlite3")
    bad = {"a" * 32: ("settings", "{not json"), "b" * 32: ("content", "[1, 2]"), "c" * 32: ("styles", '"x"')}
    for seq, (job_id, (column, text)) in enumerate(bad.items()):
        db.execute(
            "INSERT INTO jobs (id, status, created, content, styles, settings) VALUES (?, 'done', ?, '{}', '[]', '{}')",
            (job_id, 1000.0 + seq),
        )
        db.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (text, job_id))
    db.commit()
    db.close()
    listing = studio.client.get("/api/jobs")
    assert listing.status_code == 200
    statuses = {j["id"]: j["status"] for j in listing.json()["jobs"]}
    assert statuses == {good["id"]: "done", **{job_id: "unreadable" for job_id in bad}}
    one = studio.client.get(f"/api/jobs/{'a' * 32}")
    assert one.status_code == 200 and "cannot be read" in one.json()["error"]
    assert studio.client.delete(f"/api/jobs/{'a' * 32}").status_code == 204
    assert len(studio.client.get("/api/jobs").json()["jobs"]) == 3


def strict_json(text: str):
    """json.loads as a browser's JSON.parse: Infinity and NaN are errors."""

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_losses_reach_the_page_as_null(tmp_path):
    def diverging(content, styles, settings, on_step, stop, **engine_options):
        image = torch.full((1, 3, 12, 16), 0.5)
        for i, value in enumerate([float("inf"), float("nan"), 1.0], 1):
            losses = {"content": value, "style": value, "tv": 0.0, "total": value}
            on_step(SimpleNamespace(iteration=i, total=3, work_left=3 - i, scale=0, scales=1,
                                    size=(12, 16), losses=losses,
                                    elapsed=0.01 * i, image=image))  # fmt: skip
        return Outcome(image, {"total": float("inf")}, float("nan"), False)

    app = create_app(tmp_path / "data", runner=diverging)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        content = http.post("/api/uploads", files={"file": ("c.png", png_bytes(seed=1))}).json()["ref"]
        with http.stream("GET", "/api/events") as stream:
            body = {"content": content, "styles": [content], "settings": {"size": 32}}
            job = http.post("/api/jobs", json=body).json()
            lines, kind = [], None
            for line in stream.iter_lines():
                lines.append(line)
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "job" and '"status":"done"' in line:
                    break
        events = [strict_json(line[6:]) for line in lines if line.startswith("data: ")]
        points = [p for e in events if "points" in e for p in e["points"]]
        assert [p[1] for p in points] == [None, None, 1.0]
        done = strict_json(http.get(f"/api/jobs/{job['id']}").text)
        assert done["losses"] == {"total": None} and done["seconds"] is None
        assert [row[1] for row in done["history"]] == [None, None, 1.0]
        strict_json(http.get("/api/jobs").text)


# ---- who may reach it --------------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(studio):
    for response in (
        studio.client.get("/"),
        studio.client.get("/static/studio.js"),
        studio.client.get("/api/config"),
        studio.client.get("/api/jobs/" + "0" * 32),  # 404
        studio.client.post("/api/jobs", json={}, headers={"Origin": "http://evil.example"}),  # 403
    ):
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_the_token_is_asked_of_every_client_but_this_machine(tmp_path):
    app = create_app(tmp_path, runner=FakeRunner(), token="s3cret-token", allowed_hosts=frozenset({"studio.lan"}))
    with TestClient(app, base_url="http://studio.lan", follow_redirects=False) as remote:
        refused = remote.get("/api/config")
        assert refused.status_code == 401 and "access token" in refused.json()["error"]
        assert remote.get("/?token=wrong").status_code == 401
        entry = remote.get("/?token=s3cret-token&x=1")
        assert entry.status_code == 303 and entry.headers["location"] == "/?x=1"  # the token leaves the URL
        assert "HttpOnly" in entry.headers["set-cookie"] and "SameSite=Strict" in entry.headers["set-cookie"]
        assert remote.get("/api/config").status_code == 200  # from the cookie now
        remote.cookies.clear()
        assert remote.get("/api/config", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert remote.get("/api/config", headers={"Host": "evil.example"}).status_code == 403
        local = TestClient(app, base_url="http://studio.lan", client=("127.0.0.1", 40000))  # same app, running
        assert local.get("/api/config").status_code == 200  # this machine needs no token


@contextmanager
def server(data_dir, *flags: str, env: dict | None = None):
    """``python -m painterly serve`` in a subprocess on a free port; yields (process, port, stderr lines)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "painterly", "serve", "--port", "0", "--data-dir", str(data_dir), *flags]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environment)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    port = None
    while port is None and time.monotonic() < deadline and proc.poll() is None:
        found = [re.search(r"http://\S+?:(\d+)/", line) for line in lines]
        port = next((int(m.group(1)) for m in found if m), None)
        time.sleep(0.05)
    try:
        assert port is not None, f"the server did not start: {lines}"
        yield SimpleNamespace(proc=proc, port=port, lines=lines, url=f"http://127.0.0.1:{port}")
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        reader.join(5)


def test_a_non_loopback_bind_refuses_a_foreign_host_and_prints_its_token(tmp_path):
    with server(tmp_path / "data", "--host", "0.0.0.0", "--allow-host", "studio.lan") as s:
        with httpx.Client(base_url=s.url, timeout=20) as http:
            assert http.get("/api/config", headers={"Host": "evil.example"}).status_code == 403  # DNS rebinding
            assert http.get("/api/config", headers={"Host": f"studio.lan:{s.port}"}).status_code == 200
            assert http.get("/api/config", headers={"Host": f"localhost:{s.port}"}).status_code == 200
        text = "\n".join(s.lines)
    assert "every network interface" in text and "anyone with the access token" in text
    assert "studio.lan" in text and re.search(r"\?token=[\w-]{20,}", text)


def test_a_second_server_on_the_same_folder_is_refused(tmp_path):
    first = create_app(tmp_path / "data", runner=FakeRunner())
    with pytest.raises(PainterlyError, match=r"another painterly studio \(pid \d+\) is using .*--data-dir"):
        create_app(tmp_path / "data", runner=FakeRunner())
    with TestClient(first):
        pass  # its shutdown frees the folder
    with TestClient(create_app(tmp_path / "data", runner=FakeRunner())) as again:
        assert again.get("/api/config").status_code == 200


def test_a_second_serve_on_the_same_folder_exits_with_one_line(tmp_path):
    with TestClient(create_app(tmp_path / "data", runner=FakeRunner())):  # the first server, in this process
        second = subprocess.run(
            [sys.executable, "-m", "painterly", "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"another painterly studio (pid {os.getpid()}) is using" in lines[0], lines


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--port", "99999"], "--port"),
        (["--port", "-1"], "--port"),
        (["--max-upload-mb", "nan"], "--max-upload-mb"),
        (["--max-upload-mb", "inf"], "--max-upload-mb"),
        (["--max-storage-mb", "0"], "--max-storage-mb"),
        (["--max-pixels", "-5"], "--max-pixels"),
        (["--workers", "0"], "--workers"),
        (["--checkpoint-every", "inf"], "--checkpoint-every"),
        (["--data-dir", "FILE"], "is a file, not a folder"),
        (["--token", "short"], "--token"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_serve_flags_are_one_line_and_exit_2(tmp_path, capsys, flags, words):
    (tmp_path / "FILE").write_text("not a folder")
    flags = [str(tmp_path / "FILE") if f == "FILE" else f for f in flags]
    assert cli.main(["serve", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("painterly: error: ") and words in err, err


# ---- uploads: by content, within a quota, deletable -----------------------------------------------------


def test_the_same_upload_twice_is_stored_once(studio):
    data = png_bytes(seed=9)
    first = studio.client.post("/api/uploads", files={"file": ("a.png", data, "image/png")})
    second = studio.client.post("/api/uploads", files={"file": ("b.png", data, "image/png")})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert [p.read_bytes() for p in (studio.data / "uploads").iterdir()].count(data) == 1


def test_a_full_store_is_507_until_something_is_deleted(tmp_path):
    one, two = png_bytes(seed=1), png_bytes(seed=2)
    with TestClient(create_app(tmp_path, runner=FakeRunner(), max_storage_mb=len(one) * 1.5 / 1e6)) as client:
        first = upload(client, one)
        full = client.post("/api/uploads", files={"file": ("two.png", two, "image/png")})
        assert full.status_code == 507 and "storage is full" in full.json()["error"]
        assert "--max-storage-mb" in full.json()["error"]
        assert client.delete(first["url"]).status_code == 204
        assert client.post("/api/uploads", files={"file": ("two.png", two, "image/png")}).status_code == 201


def test_an_upload_in_use_cannot_be_deleted_and_unused_ones_are_pruned(tmp_path):
    runner = FakeRunner(hold=True)
    with TestClient(create_app(tmp_path, runner=runner)) as client:
        used, spare = upload(client, png_bytes(seed=1)), upload(client, png_bytes(seed=2))
        job = submit(client, used["ref"], [used["ref"]])
        busy = client.delete(used["url"])
        assert busy.status_code == 409 and "waiting or running" in busy.json()["error"]
        assert client.post("/api/uploads/prune").json()["removed"] == 0  # both are younger than an hour
        assert client.post("/api/uploads/prune?older_than=0").json()["removed"] == 1  # the unused one
        assert client.get(spare["url"]).status_code == 404 and client.get(used["url"]).status_code == 200
        runner.release.set()
        wait_for(client, job["id"])
        assert client.delete(used["url"]).status_code == 204  # only finished jobs use it now
        assert client.get(used["url"]).status_code == 404 and client.delete(used["url"]).status_code == 404
        assert list((tmp_path / "uploads").iterdir()) == []


# ---- a stopped server loses no work ----------------------------------------------------------------------


class CheckpointingRunner:
    """A fake engine that counts evaluations, checkpoints each one and resumes from a checkpoint."""

    def __init__(self, steps: int = 6, stop_after: int | None = None) -> None:
        self.steps, self.stop_after = steps, stop_after
        self.resumed_from: list[int | None] = []

    def __call__(self, content, styles, settings, on_step, stop, *, resume=None, on_checkpoint=None, **options):
        start = resume["position"]["iteration"] if resume else 0
        self.resumed_from.append(resume and start)
        image = torch.full((1, 3, 12, 16), 0.5)
        for i in range(start + 1, self.steps + 1):
            if stop.is_set() or (self.stop_after is not None and i > self.stop_after and stop.wait(10)):
                state = {"position": {"iteration": i - 1}, "params": torch.zeros(1)}
                return Outcome(image, {}, 0.1, True, checkpoint=state)
            on_step(SimpleNamespace(iteration=i, total=self.steps, work_left=self.steps - i,
                                        scale=0, scales=1, size=(12, 16),
                                    losses={"total": 1.0 / i}, elapsed=0.01 * i, image=image))  # fmt: skip
            on_checkpoint({"position": {"iteration": i}, "params": torch.zeros(1)})
        return Outcome(image, {"total": 1.0}, 0.1, False)


def test_a_server_that_stops_checkpoints_the_running_job_and_the_next_resumes_it(tmp_path):
    stopping = CheckpointingRunner(stop_after=4)
    client = TestClient(create_app(tmp_path / "data", runner=stopping))
    with client:
        content = upload(client, png_bytes(seed=1))["ref"]
        first, second = submit(client, content, [content], seed=1), submit(client, content, [content], seed=2)
        deadline = time.monotonic() + 10
        # a queued job has no progress yet (None) until the runner takes it
        while (client.get(f"/api/jobs/{first['id']}").json()["progress"] or {}).get("iteration", 0) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    # stopped mid-job: the job waits again, at the head of the queue, with its checkpoint
    assert (tmp_path / "data" / "checkpoints" / f"{first['id']}.ckpt").is_file()
    resuming = CheckpointingRunner()
    with TestClient(create_app(tmp_path / "data", runner=resuming)) as client:
        done = wait_for(client, first["id"])
        assert done["status"] == "done"
        assert [row[0] for row in done["history"]] == [1, 2, 3, 4, 5, 6]  # the curve before the stop is kept
        assert wait_for(client, second["id"])["status"] == "done"
    assert resuming.resumed_from == [4, None]  # the first resumed after evaluation 4, in submission order
    assert list((tmp_path / "data" / "checkpoints").iterdir()) == []  # finished jobs leave none


def test_a_resumed_job_can_still_be_cancelled_and_deleted(tmp_path):
    with TestClient(create_app(tmp_path / "data", runner=CheckpointingRunner(stop_after=2))) as client:
        content = upload(client, png_bytes(seed=1))["ref"]
        job = submit(client, content, [content])
        wait_for(client, job["id"], statuses=("running",))
        time.sleep(0.2)
    checkpoint = tmp_path / "data" / "checkpoints" / f"{job['id']}.ckpt"
    assert checkpoint.is_file()
    with TestClient(create_app(tmp_path / "data", runner=CheckpointingRunner(stop_after=3))) as client:
        wait_for(client, job["id"], statuses=("running",))
        assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
        assert wait_for(client, job["id"])["status"] == "cancelled"
        assert not checkpoint.exists()
        assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
        assert client.get(f"/api/jobs/{job['id']}").status_code == 404


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_kill_9_mid_job_then_restart_gives_the_uninterrupted_result(tmp_path):
    """A real server, the real engine (random weights, 24 px): SIGKILL after a few checkpoints."""
    data = tmp_path / "data"
    # Enough evaluations that a loaded machine cannot finish the job before the SIGKILL lands.
    settings = {"size": 24, "iterations": 200, "weights": "random", "model": "vgg16", "seed": 3}
    with server(data, "--checkpoint-every", "0") as first, httpx.Client(base_url=first.url, timeout=60) as http:
        content = http.post("/api/uploads", files={"file": ("c.png", png_bytes(48, 36, seed=1))}).json()["ref"]
        style = http.post("/api/uploads", files={"file": ("s.png", png_bytes(seed=2))}).json()["ref"]
        body = {"content": content, "styles": [style], "settings": settings}
        job = http.post("/api/jobs", json=body).json()
        deadline = time.monotonic() + 60
        while ((http.get(f"/api/jobs/{job['id']}").json().get("progress") or {}).get("iteration") or 0) < 6:
            assert time.monotonic() < deadline, first.lines
            time.sleep(0.02)
        first.proc.send_signal(signal.SIGKILL)  # no shutdown, no last checkpoint: only the periodic ones
        first.proc.wait(10)
    assert (data / "checkpoints" / f"{job['id']}.ckpt").is_file()
    with server(data) as second, httpx.Client(base_url=second.url, timeout=60) as http:
        resumed = wait_for(http, job["id"], timeout=60)
        assert resumed["status"] == "done", resumed["error"]
        again = wait_for(http, http.post("/api/jobs", json=body).json()["id"], timeout=60)  # uninterrupted
        assert again["status"] == "done", again["error"]
        assert [row[0] for row in resumed["history"]] == list(range(1, 201))
        resumed_pixels = pixels(http.get(f"/api/jobs/{job['id']}/result").content)
        assert resumed_pixels.shape == (18, 24, 3)
        assert np.array_equal(resumed_pixels, pixels(http.get(f"/api/jobs/{again['id']}/result").content))
        log = "\n".join(second.lines)
    resumed_at = re.search(rf"job {job['id']} resumes from its checkpoint after evaluation (\d+)", log)
    assert resumed_at and 6 <= int(resumed_at.group(1)) < 200, log
