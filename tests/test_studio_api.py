"""The studio's HTTP API: uploads and their limits, path safety, the job queue, persistence.

Most tests swap the engine for a fake runner (instant, observable) so they test the studio, not
the optimiser; one test runs the real engine with seeded random weights at 32 px.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("multipart")
with warnings.catch_warnings():  # Starlette 1.x prefers "httpx2" for its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from painterly.config import Settings  # noqa: E402
from painterly.studio import create_app  # noqa: E402
from painterly.studio.engine import Outcome  # noqa: E402
from painterly.studio.guards import LOOPBACK_HOSTS, BodyLimit  # noqa: E402
from painterly.studio.uploads import UploadError, inside  # noqa: E402

FINAL = ("done", "cancelled", "failed", "interrupted")


def png_bytes(width: int = 40, height: int = 30, seed: int = 0, fmt: str = "PNG") -> bytes:
    g = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(height, width, 3, generator=g) * 255).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


class FakeRunner:
    """Stands in for the engine: a few steps, then the content-sized grey image.

    Records the order jobs start (by seed) and how many ran at once; ``hold`` keeps a job running until
    ``release`` is set or the job is stopped.
    """

    def __init__(self, steps: int = 3, hold: bool = False) -> None:
        self.steps, self.hold = steps, hold
        self.seeds: list[int] = []
        self.release = threading.Event()
        self.running = self.most_at_once = 0
        self.lock = threading.Lock()

    def __call__(self, content, styles, settings, on_step, stop, **engine_options) -> Outcome:
        with self.lock:
            self.seeds.append(settings.seed)
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            image = torch.full((1, 3, 12, 16), 0.5)
            for i in range(1, self.steps + 1):
                losses = {"content": 1.0 / i, "style": 2.0 / i, "tv": 0.1, "total": 3.0 / i}
                on_step(SimpleNamespace(iteration=i, total=self.steps, work_left=self.steps - i,
                                        scale=0, scales=1, size=(12, 16),
                                        losses=losses, elapsed=0.01 * i, image=image))  # fmt: skip
            while self.hold and not self.release.is_set():
                if stop.wait(0.01):
                    return Outcome(image, {"total": 1.0}, 0.1, True)
            return Outcome(image, {"total": 1.0}, 0.1, stop.is_set())
        finally:
            with self.lock:
                self.running -= 1


def upload(client: TestClient, data: bytes, name: str = "image.png") -> dict:
    response = client.post("/api/uploads", files={"file": (name, data, "image/png")})
    assert response.status_code in (200, 201), response.text  # 200: these bytes were uploaded before
    return response.json()


def submit(client: TestClient, content: str, styles: list[str], **settings) -> dict:
    body = {"content": content, "styles": styles, "settings": {"size": 32, "iterations": 3, **settings}}
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_for(client: TestClient, job_id: str, statuses=FINAL, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


@pytest.fixture
def inputs(tmp_path):
    """A content and a style image uploaded to a fresh studio with a fake engine."""
    runner = FakeRunner()
    with TestClient(create_app(tmp_path / "data", runner=runner)) as client:
        content = upload(client, png_bytes(seed=1), "content.png")["ref"]
        style = upload(client, png_bytes(seed=2, fmt="JPEG"), "style.jpg")["ref"]
        yield SimpleNamespace(client=client, content=content, style=style, runner=runner, data=tmp_path / "data")


# ---- config and uploads ---------------------------------------------------------------------------


def test_config_takes_defaults_from_settings(tmp_path):
    with TestClient(create_app(tmp_path, max_upload_mb=2, max_pixels=1000)) as client:
        config = client.get("/api/config").json()
    assert config["fields"]["size"]["default"] == Settings().size
    assert config["fields"]["iterations"]["default"] == Settings().iterations
    assert "luminance" in config["fields"]["preserve_color"]["choices"]
    assert config["limits"] == {
        "max_upload_bytes": 2_000_000,
        "max_pixels": 1000,
        "max_styles": 8,
        "max_storage_bytes": 5_000_000_000,
    }


def test_upload_is_stored_under_a_server_id(inputs):
    data = png_bytes(seed=5)
    body = upload(inputs.client, data, "holiday photo.png")
    assert body["name"] == "holiday photo.png" and (body["width"], body["height"]) == (40, 30)
    assert inputs.client.get(body["url"]).content == data
    assert (inputs.data / "uploads" / f"{body['id']}.png").read_bytes() == data


def test_declared_size_over_the_limit_is_413(tmp_path):
    with TestClient(create_app(tmp_path, max_upload_mb=0.01)) as client:
        response = client.post("/api/uploads", files={"file": ("big.png", b"\0" * 20_000, "image/png")})
    assert response.status_code == 413
    assert "upload limit is 10.0 kB" in response.json()["error"]
    assert "--max-upload-mb" in response.json()["error"]


def test_bytes_are_counted_when_content_length_lies():
    reached_app = []

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        reached_app.append(True)

    sent = []

    async def run():
        chunks = [{"type": "http.request", "body": b"x" * 4000, "more_body": True}] * 5
        queue = iter(chunks + [{"type": "http.request", "body": b"", "more_body": False}])

        async def receive():
            return next(queue)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "headers": [(b"content-length", b"10")]}
        await BodyLimit(app, max_bytes=10_000)(scope, receive, send)

    asyncio.run(run())
    assert not reached_app
    assert sent[0]["status"] == 413
    assert b"larger than that" in sent[1]["body"]


def test_too_many_pixels_is_400_with_the_numbers(tmp_path):
    with TestClient(create_app(tmp_path, max_pixels=1000)) as client:
        response = client.post("/api/uploads", files={"file": ("wide.png", png_bytes(50, 30), "image/png")})
    assert response.status_code == 400
    assert response.json()["error"].startswith("'wide.png' is 50x30 = 1,500 pixels; the limit is 1,000")


@pytest.mark.parametrize(
    "data", [b"hello, not an image", b"", png_bytes()[:60], b"<svg xmlns='http://www.w3.org/2000/svg'/>"]
)
def test_not_an_image_is_400(inputs, data):
    response = inputs.client.post("/api/uploads", files={"file": ("x.png", data, "image/png")})
    assert response.status_code == 400
    assert "is not an image the studio can read" in response.json()["error"]


def test_upload_needs_a_file_field(inputs):
    response = inputs.client.post("/api/uploads", data={"other": "1"})
    assert response.status_code == 400 and "named 'file'" in response.json()["error"]


def test_shipped_examples_are_listed_served_and_usable(inputs):
    from painterly.studio.state import examples

    if not examples():
        pytest.skip("no example images are installed")
    listed = inputs.client.get("/api/config").json()["examples"]
    assert [e["ref"] for e in listed] == [f"example:{name}" for name in examples()]
    first = listed[0]
    assert inputs.client.get(first["url"]).content == examples()[first["ref"][8:]].read_bytes()
    job = submit(inputs.client, first["ref"], [listed[-1]["ref"]])
    assert wait_for(inputs.client, job["id"])["status"] == "done"


# ---- path safety ----------------------------------------------------------------------------------

EVIL_NAMES = ["../../etc/passwd", "/etc/passwd", "a/../../b.png", "..\\..\\win.png", "../" * 20 + "tmp/x.png"]


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", EVIL_NAMES)
def test_uploaded_names_never_become_paths(tmp_path, name):
    data_dir = tmp_path / "inner" / "data"
    before = files_under(tmp_path)
    with TestClient(create_app(data_dir)) as client:
        body = upload(client, png_bytes(), name)
    created = files_under(tmp_path) - before
    assert created and all(p.resolve().is_relative_to(data_dir.resolve()) for p in created)
    assert (data_dir / "uploads" / f"{body['id']}.png").is_file()
    assert "/" not in body["name"] and "\\" not in body["name"]


@pytest.mark.parametrize("ref", [f"upload:{n}" for n in EVIL_NAMES] + [f"example:{n}" for n in EVIL_NAMES])
def test_job_references_cannot_name_files(inputs, ref):
    response = inputs.client.post("/api/jobs", json={"content": ref, "styles": [inputs.style]})
    assert response.status_code == 400 and "unknown input" in response.json()["error"]
    response = inputs.client.post("/api/jobs", json={"content": inputs.content, "styles": [ref]})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "path", ["uploads/..%2F..%2Fetc%2Fpasswd", "examples/..%2F..%2Fconfig.py", "jobs/..%2Fx/result"]
)
def test_routes_do_not_serve_paths(inputs, path):
    assert inputs.client.get(f"/api/{path}").status_code == 404


@pytest.mark.parametrize("name", [n for n in EVIL_NAMES if "\\" not in n] + ["", "."])
def test_inside_refuses_escapes(tmp_path, name):
    with pytest.raises(UploadError):
        inside(tmp_path, name)


# ---- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"device": "cuda"}, "unknown setting(s) device; allowed settings: "),
        ({"init": "/etc/passwd"}, "setting init must be one of"),
        ({"weights": "/tmp/evil.pth"}, "setting weights must be one of"),
        ({"size": "big"}, "setting size must be an integer, got 'big'"),
        ({"size": 8}, "--size must be an integer >= 16, got 8"),
        ({"model": "alexnet"}, "unknown model 'alexnet'"),
        ({"size": 6000}, "--size: the output would be 6000x4500 = 27,000,000 pixels; the limit is 25,000,000"),
    ],
)
def test_bad_settings_are_400_with_one_line(inputs, settings, message):
    body = {"content": inputs.content, "styles": [inputs.style], "settings": settings}
    response = inputs.client.post("/api/jobs", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"] and "\n" not in response.json()["error"]


def test_job_keeps_its_settings_and_inputs(inputs):
    job = submit(inputs.client, inputs.content, [inputs.style, "upload:" + inputs.content[7:]], style_weight=0.5)
    done = wait_for(inputs.client, job["id"])
    assert done["status"] == "done", done["error"]
    assert done["settings"]["style_weight"] == 0.5
    assert [s["name"] for s in done["styles"]] == ["style.jpg", "content.png"]
    assert [row[0] for row in done["history"]] == [1, 2, 3]
    result = inputs.client.get(f"/api/jobs/{job['id']}/result?download=1")
    assert result.headers["content-type"] == "image/png"
    assert 'filename="painterly-' in result.headers["content-disposition"]
    assert Image.open(io.BytesIO(result.content)).size == (16, 12)


# ---- requests from elsewhere ---------------------------------------------------------------------


def test_other_web_sites_cannot_write(inputs):
    body = {"content": inputs.content, "styles": [inputs.style]}
    evil = inputs.client.post("/api/jobs", json=body, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and "other web sites" in evil.json()["error"]
    upload = inputs.client.post("/api/uploads", files={"file": ("x.png", png_bytes())}, headers={"Origin": "null"})
    assert upload.status_code == 403
    same = inputs.client.post("/api/jobs", json=body, headers={"Origin": "http://testserver"})
    assert same.status_code == 201


@pytest.mark.parametrize(("host", "status"), [("127.0.0.1:8765", 200), ("[::1]:8765", 200), ("localhost", 200),
                                              ("evil.example", 403), ("127.0.0.1.evil.example:8765", 403)])  # fmt: skip
def test_loopback_studio_answers_only_to_loopback_names(tmp_path, host, status):
    with TestClient(create_app(tmp_path, allowed_hosts=LOOPBACK_HOSTS)) as client:
        response = client.get("/api/config", headers={"Host": host})
    assert response.status_code == status


def test_serve_refuses_a_busy_port_with_one_line(tmp_path):
    from painterly.errors import PainterlyError
    from painterly.studio import serve

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(PainterlyError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            serve(port=port, data_dir=tmp_path)
    assert not (tmp_path / "studio.sqlite3").exists()


def test_importing_painterly_needs_no_web_framework():
    code = "import sys, painterly, painterly.studio; sys.exit('starlette' in sys.modules or 'uvicorn' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        ).returncode
        == 0
    )
