"""The studio's job queue: order under concurrent submissions, cancel, restart, the real engine.

The queue tests use the fake runner from test_studio_api (instant and observable); the last two
run the real engine with seeded random weights at 32 px over a real uvicorn server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from contextlib import contextmanager

import pytest

pytest.importorskip("starlette")
pytest.importorskip("multipart")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from painterly.errors import PainterlyError  # noqa: E402
from painterly.studio import create_app  # noqa: E402
from painterly.studio.store import Store  # noqa: E402
from test_studio_api import FakeRunner, TestClient, png_bytes, submit, upload, wait_for  # noqa: E402


@pytest.fixture
def one_torch_thread():
    """Run the real engine on one thread: on a shared, busy CPU two threads spin against each other
    (20 steps at 48 px took 70 s with two threads and 7 s with one on this machine under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextmanager
def live_server(app):
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def studio(tmp_path, runner, **options):
    client = TestClient(create_app(tmp_path / "data", runner=runner, **options))
    client.__enter__()
    refs = upload(client, png_bytes(seed=1))["ref"], upload(client, png_bytes(seed=2))["ref"]
    return client, refs


def test_twenty_concurrent_submissions_all_run_once_in_order(tmp_path):
    runner = FakeRunner(hold=True)
    app = create_app(tmp_path / "data", runner=runner)
    with live_server(app) as url:
        with httpx.Client(base_url=url) as http:
            content = http.post("/api/uploads", files={"file": ("c.png", png_bytes(seed=1))}).json()["ref"]
            style = http.post("/api/uploads", files={"file": ("s.png", png_bytes(seed=2))}).json()["ref"]

        async def submit_all():
            async with httpx.AsyncClient(base_url=url) as client:
                bodies = [
                    {"content": content, "styles": [style], "settings": {"size": 32, "seed": i}} for i in range(20)
                ]
                return await asyncio.gather(*(client.post("/api/jobs", json=b) for b in bodies))

        responses = asyncio.run(submit_all())
        assert [r.status_code for r in responses] == [201] * 20
        ids = [r.json()["id"] for r in responses]
        assert len(set(ids)) == 20
        with httpx.Client(base_url=url) as http:
            listing = http.get("/api/jobs").json()
            positions = sorted(j["position"] for j in listing["jobs"] if j["status"] == "queued")
            assert positions == list(range(1, len(positions) + 1)) and len(positions) >= 19
            runner.release.set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                jobs = http.get("/api/jobs").json()["jobs"]
                if all(j["status"] == "done" for j in jobs):
                    break
                time.sleep(0.02)
    assert sorted(j["id"] for j in jobs) == sorted(ids)
    assert all(j["status"] == "done" for j in jobs)
    submitted_order = [j["settings"]["seed"] for j in reversed(jobs)]  # the list is newest first
    assert runner.seeds == submitted_order
    assert runner.most_at_once == 1


def test_workers_option_runs_jobs_side_by_side(tmp_path):
    runner = FakeRunner(hold=True)
    client, (content, style) = studio(tmp_path, runner, workers=2)
    jobs = [submit(client, content, [style]) for _ in range(3)]
    wait_for(client, jobs[1]["id"], statuses=("running",))
    assert client.get(f"/api/jobs/{jobs[2]['id']}").json()["position"] == 1
    runner.release.set()
    for job in jobs:
        assert wait_for(client, job["id"])["status"] == "done"
    client.__exit__(None, None, None)
    assert runner.most_at_once == 2


def test_cancel_stops_a_running_job_and_keeps_its_image(tmp_path):
    runner = FakeRunner(hold=True)
    client, (content, style) = studio(tmp_path, runner)
    job = submit(client, content, [style])
    running = wait_for(client, job["id"], statuses=("running",))
    assert running["position"] is None
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
    cancelled = wait_for(client, job["id"], timeout=5)
    assert cancelled["status"] == "cancelled" and cancelled["has_result"]
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 409
    client.__exit__(None, None, None)


def test_cancel_drops_a_waiting_job_before_it_runs(tmp_path):
    runner = FakeRunner(hold=True)
    client, (content, style) = studio(tmp_path, runner)
    first, second = submit(client, content, [style], seed=1), submit(client, content, [style], seed=2)
    assert second["position"] in (1, 2)
    assert client.post(f"/api/jobs/{second['id']}/cancel").json()["status"] == "cancelled"
    runner.release.set()
    assert wait_for(client, first["id"])["status"] == "done"
    client.__exit__(None, None, None)
    assert runner.seeds == [1]


def test_an_engine_error_fails_only_that_job(tmp_path):
    def broken(content, styles, settings, on_step, stop, **engine_options):
        if settings.seed == 1:
            raise PainterlyError("weights file /x/vgg19.pth is missing; download it first")
        return FakeRunner()(content, styles, settings, on_step, stop)

    client, (content, style) = studio(tmp_path, broken)
    failed = wait_for(client, submit(client, content, [style], seed=1)["id"])
    assert failed["status"] == "failed" and failed["error"].startswith("weights file /x/vgg19.pth is missing")
    assert wait_for(client, submit(client, content, [style], seed=2)["id"])["status"] == "done"
    client.__exit__(None, None, None)


def test_delete_removes_a_finished_job_and_its_result(tmp_path):
    client, (content, style) = studio(tmp_path, FakeRunner())
    job = wait_for(client, submit(client, content, [style])["id"])
    result = tmp_path / "data" / "results" / f"{job['id']}.png"
    assert result.is_file()
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert not result.exists() and client.get(f"/api/jobs/{job['id']}").status_code == 404
    client.__exit__(None, None, None)


def test_a_new_server_on_the_same_folder_keeps_gallery_and_queue(tmp_path):
    runner = FakeRunner(hold=True)
    client, (content, style) = studio(tmp_path, FakeRunner())
    done = wait_for(client, submit(client, content, [style], style_weight=0.25)["id"])
    client.__exit__(None, None, None)

    client, _ = studio(tmp_path, runner)
    running = submit(client, content, [style], seed=7)
    wait_for(client, running["id"], statuses=("running",))
    waiting = submit(client, content, [style], seed=8)
    client.__exit__(None, None, None)  # stops the server with one job running, one waiting

    store = Store(tmp_path / "data" / "studio.sqlite3")  # a server killed hard leaves "running" behind
    assert store.get_job(running["id"])["status"] == "queued"  # stopped by the server, not the user: it waits
    crashed = "f" * 32
    store.add_job(crashed, {"ref": content, "name": "c", "url": ""}, [], {"size": 32, "seed": 9})
    store.update_job(crashed, status="running")
    store.close()

    again = FakeRunner()
    client, _ = studio(tmp_path, again)
    kept = client.get(f"/api/jobs/{done['id']}").json()
    assert kept["status"] == "done" and kept["settings"]["style_weight"] == 0.25
    assert kept["history"] == done["history"] and client.get(f"/api/jobs/{done['id']}/result").status_code == 200
    for job_id in (running["id"], waiting["id"], crashed):  # the queue picks up where it was, nothing lost
        assert wait_for(client, job_id)["status"] == "done"
    assert len(client.get("/api/jobs").json()["jobs"]) == 4
    client.__exit__(None, None, None)
    assert again.seeds == [7, 8, 9]  # in the order they were submitted


def test_a_job_that_keeps_killing_its_server_is_given_up(tmp_path):
    from painterly.studio.store import MAX_ATTEMPTS

    store = Store(tmp_path / "studio.sqlite3")
    store.add_job("a" * 32, {"ref": "x", "name": "c", "url": ""}, [], {})
    for restart in range(1, MAX_ATTEMPTS + 1):
        store.update_job("a" * 32, status="running")  # a server ran it and was killed
        store.requeue_running()
        job = store.get_job("a" * 32)
        assert job["status"] == ("queued" if restart < MAX_ATTEMPTS else "interrupted"), restart
    assert f"{MAX_ATTEMPTS} times" in job["error"]
    store.close()


def test_time_left_is_the_steps_work_left_at_the_rate_measured_at_this_scale():
    """The one estimate the progress line and the studio's jobs share (progress.TimeLeft)."""
    from types import SimpleNamespace

    from painterly.progress import TimeLeft

    def step(i, scale, elapsed, left):
        return SimpleNamespace(iteration=i, scale=scale, elapsed=elapsed, work_left=left)

    left = TimeLeft()
    assert left(step(1, 0, 5.0, 10)) is None  # the run's first evaluation pays one-off set-up: not timed
    assert left(step(2, 0, 7.0, 9)) == 18.0  # 2 s each
    assert left(step(3, 1, 13.0, 4)) == 24.0  # a new scale: timed from the previous one's last evaluation
    resumed = TimeLeft()
    assert resumed(step(5, 0, 30.0, 10)) is None  # a resumed run: nothing timed yet, the page shows nothing
    assert resumed(step(6, 0, 31.0, 9)) == 9.0


def read_events(response, until):
    """Parse a text/event-stream until ``until(kind, data)`` is true; returns all (kind, data)."""
    events, kind = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[6:])))
            if until(*events[-1]):
                return events
    raise AssertionError("the event stream ended early")


def test_closing_the_broker_ends_open_event_streams(tmp_path):
    app = create_app(tmp_path / "data", runner=FakeRunner())
    with live_server(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        with http.stream("GET", "/api/events") as stream:
            lines = stream.iter_lines()
            assert next(lines) == "retry: 1000"
            app.state.broker.close()  # what Ctrl-C does before uvicorn's graceful shutdown
            assert list(lines) == [""]  # the stream ends instead of holding the shutdown up


def test_real_engine_streams_steps_and_saves_the_result(tmp_path, one_torch_thread):
    app = create_app(tmp_path / "data")
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        content = http.post("/api/uploads", files={"file": ("c.png", png_bytes(48, 36, seed=1))}).json()["ref"]
        style = http.post("/api/uploads", files={"file": ("s.png", png_bytes(seed=2))}).json()["ref"]
        with http.stream("GET", "/api/events") as stream:
            settings = {"size": 32, "iterations": 8, "weights": "random", "model": "vgg16"}
            job = http.post("/api/jobs", json={"content": content, "styles": [style], "settings": settings}).json()
            events = read_events(stream, lambda kind, d: kind == "job" and d["status"] in ("done", "failed"))
        final = events[-1][1]
        assert final["status"] == "done", final["error"]
        steps = [d for kind, d in events if kind == "step" and d["id"] == job["id"]]
        points = [p for d in steps for p in d["points"]]
        assert [p[0] for p in points] == list(range(1, 9))
        assert steps[-1]["progress"]["total"] == 8 and steps[-1]["preview"] is not None
        result = http.get(f"/api/jobs/{job['id']}/result")
        assert result.headers["content-type"] == "image/png" and result.content.startswith(b"\x89PNG")
