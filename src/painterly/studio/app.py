"""The studio's HTTP surface: a static page, a JSON API and one server-sent-event stream.

Routes (ids are 32 hex digits generated here; nothing a client sends becomes a path):

    GET  /                          the page (static/index.html)
    GET  /api/config                form defaults, choices, limits, shipped examples
    GET  /api/examples/{name}       a shipped example image
    POST /api/uploads               multipart ``file`` -> {id, ref, name, width, height, url}
    GET  /api/uploads/{id}          an uploaded image
    POST /api/jobs                  JSON {content: ref, styles: [ref...], settings: {...}} -> job
    GET  /api/jobs                  all jobs, newest first (queue, running and gallery)
    GET  /api/jobs/{id}             one job with its loss history
    POST /api/jobs/{id}/cancel      stop a running job or drop a waiting one
    DELETE /api/jobs/{id}           remove a finished job and its result from the gallery
    GET  /api/jobs/{id}/preview     the latest live preview (JPEG)
    GET  /api/jobs/{id}/result      the result (PNG, as a download with ?download=1)
    GET  /api/events                server-sent events: job, queue, step

A reference to an input is ``upload:<id>`` or ``example:<file name>``.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import PainterlyError
from . import engine
from .guards import BodyLimit, BodyTooLarge, SameOrigin
from .jobs import Broker, JobQueue
from .store import FINAL, Store
from .uploads import FORMATS, UploadError, inside, inspect_image, is_id, new_id, write_atomic

STATIC_DIR = Path(__file__).parent / "static"
EXAMPLES_DIR = Path(__file__).parent.parent / "examples"
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png")
KEEPALIVE_SECONDS = 15.0  # an SSE comment this often keeps proxies and browsers from timing out
MAX_STYLES = 8


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def examples() -> dict[str, Path]:
    """Shipped example images by file name."""
    if not EXAMPLES_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(EXAMPLES_DIR.iterdir()) if p.suffix.lower() in EXAMPLE_SUFFIXES}


def create_app(
    data_dir: Path | str,
    *,
    max_upload_mb: float,
    max_pixels: int,
    workers: int,
    runner: engine.Runner = engine.run_engine,
    allowed_hosts: frozenset[str] | None = None,
) -> Starlette:
    """The studio as an ASGI app keeping everything under ``data_dir`` (defaults: ``studio.create_app``).

    ``allowed_hosts`` are the names the Host header may carry (None: any; :func:`serve` passes the
    loopback names when it listens on loopback).
    """
    data = Path(data_dir).expanduser().resolve()
    uploads_dir, results_dir = data / "uploads", data / "results"
    for folder in (uploads_dir, results_dir):
        folder.mkdir(parents=True, exist_ok=True)
    max_bytes = int(max_upload_mb * 1_000_000)
    store = Store(data / "studio.sqlite3")
    broker = Broker()

    def ref_path(ref: Any) -> Path:
        kind, _, name = str(ref).partition(":")
        if kind == "example" and name in examples():
            return examples()[name]
        if kind == "upload" and is_id(name):
            upload = store.get_upload(name)
            if upload is not None:
                return inside(uploads_dir, upload["filename"])
        raise UploadError(400, f"unknown input {ref!r}: upload it first or pick a listed example")

    def resolve_inputs(job: dict) -> tuple[Path, list[Path]]:
        return ref_path(job["content"]["ref"]), [ref_path(s["ref"]) for s in job["styles"]]

    queue = JobQueue(store, broker, resolve_inputs, results_dir, runner=runner, workers=workers)

    def describe_ref(ref: Any) -> dict[str, Any]:
        ref_path(ref)  # raises for anything unknown
        kind, _, name = str(ref).partition(":")
        if kind == "example":
            return {"ref": ref, "name": name, "url": f"/api/examples/{name}"}
        return {"ref": ref, "name": store.get_upload(name)["name"], "url": f"/api/uploads/{name}"}

    async def config(request: Request) -> JSONResponse:
        listing = [{"ref": f"example:{n}", "name": Path(n).stem, "url": f"/api/examples/{n}"} for n in examples()]
        return JSONResponse(
            {
                **engine.form_schema(),
                "limits": {"max_upload_bytes": max_bytes, "max_pixels": max_pixels, "max_styles": MAX_STYLES},
                "formats": sorted(FORMATS),
                "examples": listing,
                "workers": workers,
            }
        )

    async def example_image(request: Request) -> Response:
        path = examples().get(request.path_params["name"])
        return FileResponse(path) if path else _error(404, "no such example")

    async def upload(request: Request) -> JSONResponse:
        try:
            form = await request.form(max_files=1, max_fields=4)
        except BodyTooLarge:
            raise
        except Exception as err:  # python-multipart and Starlette raise several kinds on bad bodies
            return _error(400, f"could not read the upload as a form: {err}")
        part = form.get("file")
        if part is None or isinstance(part, str):
            return _error(400, "send the image as a multipart form field named 'file'")
        data = await part.read()
        label = Path((part.filename or "image").replace("\\", "/")).name[:120] or "image"
        try:
            fmt, width, height = await asyncio.to_thread(inspect_image, data, label, max_pixels)
            upload_id = new_id()
            filename = upload_id + FORMATS[fmt]
            write_atomic(inside(uploads_dir, filename), data)
        except UploadError as err:
            return _error(err.status, str(err))
        store.add_upload(upload_id, label, filename, width, height)
        body = {"id": upload_id, "ref": f"upload:{upload_id}", "name": label, "width": width, "height": height}
        return JSONResponse({**body, "url": f"/api/uploads/{upload_id}"}, status_code=201)

    async def upload_image(request: Request) -> Response:
        upload_id = request.path_params["id"]
        found = store.get_upload(upload_id) if is_id(upload_id) else None
        if found is None:
            return _error(404, "no such upload")
        return FileResponse(inside(uploads_dir, found["filename"]))

    async def submit(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "send the job as JSON: {content, styles, settings}")
        if not isinstance(body, dict):
            return _error(400, "send the job as a JSON object: {content, styles, settings}")
        styles = body.get("styles")
        styles = [styles] if isinstance(styles, str) else styles
        if not body.get("content"):
            return _error(400, "choose a content image")
        if not isinstance(styles, list) or not styles or len(styles) > MAX_STYLES:
            return _error(400, f"choose between 1 and {MAX_STYLES} style images")
        values = body.get("settings") or {}
        try:
            if not isinstance(values, dict):
                raise PainterlyError("settings must be a JSON object")
            content = describe_ref(body["content"])
            style_list = [describe_ref(s) for s in styles]
            settings = engine.build_settings(values, max_pixels)
        except (UploadError, PainterlyError) as err:
            return _error(400, str(err))
        job_id = new_id()
        store.add_job(job_id, content, style_list, settings.to_dict())
        queue.submit(job_id)
        return JSONResponse(queue.describe(store.get_job(job_id)), status_code=201)

    def find_job(request: Request) -> dict | None:
        job_id = request.path_params["id"]
        return store.get_job(job_id) if is_id(job_id) else None

    async def list_jobs(request: Request) -> JSONResponse:
        return JSONResponse({"jobs": [queue.describe(j) for j in store.list_jobs()], "positions": queue.positions()})

    async def get_job(request: Request) -> JSONResponse:
        job = find_job(request)
        return JSONResponse(queue.describe(job, history=True)) if job else _error(404, "no such job")

    async def cancel(request: Request) -> JSONResponse:
        job = find_job(request)
        if job is None:
            return _error(404, "no such job")
        if not queue.cancel(job["id"]):
            return _error(409, f"job is already {job['status']}")
        return JSONResponse(queue.describe(store.get_job(job["id"])))

    async def delete(request: Request) -> Response:
        job = find_job(request)
        if job is None:
            return _error(404, "no such job")
        if job["status"] not in FINAL:
            return _error(409, "cancel the job before removing it")
        if job["result"]:
            inside(results_dir, job["result"]).unlink(missing_ok=True)
        store.delete_job(job["id"])
        broker.publish("removed", {"id": job["id"]})
        return Response(status_code=204)

    async def preview(request: Request) -> Response:
        job = find_job(request)
        live = queue.live(job["id"]) if job else None
        if live is None or live.preview is None:
            return _error(404, "no live preview for this job")
        return Response(live.preview, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def result(request: Request) -> Response:
        job = find_job(request)
        if job is None or not job["result"]:
            return _error(404, "this job has no result")
        path = inside(results_dir, job["result"])
        if request.query_params.get("download"):
            return FileResponse(path, filename=f"painterly-{job['id'][:8]}.png")
        return FileResponse(path, media_type="image/png")

    async def events(request: Request) -> StreamingResponse:
        subscription = broker.subscribe()

        async def stream():
            try:
                yield "retry: 1000\n\n"
                while True:
                    try:
                        kind, data = await asyncio.wait_for(subscription.get(), KEEPALIVE_SECONDS)
                    except asyncio.TimeoutError:  # noqa: UP041 - a different class before Python 3.11
                        yield f": alive {time.time():.0f}\n\n"
                        continue
                    if kind is None:  # the server is shutting down
                        return
                    yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
            finally:
                broker.unsubscribe(subscription)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    @asynccontextmanager
    async def lifespan(app: Starlette):
        queue.start()
        try:
            yield
        finally:
            await asyncio.to_thread(queue.close)
            store.close()

    routes = [
        Route("/", index),
        Route("/api/config", config),
        Route("/api/examples/{name}", example_image),
        Route("/api/uploads", upload, methods=["POST"]),
        Route("/api/uploads/{id}", upload_image),
        Route("/api/jobs", list_jobs, methods=["GET"]),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{id}", get_job, methods=["GET"]),
        Route("/api/jobs/{id}", delete, methods=["DELETE"]),
        Route("/api/jobs/{id}/cancel", cancel, methods=["POST"]),
        Route("/api/jobs/{id}/preview", preview),
        Route("/api/jobs/{id}/result", result),
        Route("/api/events", events),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(SameOrigin, allowed_hosts=allowed_hosts), Middleware(BodyLimit, max_bytes=max_bytes)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.store, app.state.queue, app.state.broker, app.state.data_dir = store, queue, broker, data
    return app
