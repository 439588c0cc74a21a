"""The studio's HTTP surface: a static page, a JSON API and one server-sent-event stream.

Routes (ids are 32 hex digits generated here; nothing a client sends becomes a path):

    GET  /                          the page (static/index.html)
    GET  /api/config                form defaults, choices, limits, shipped examples
    GET  /api/examples/{name}       a shipped example image
    POST /api/uploads               multipart ``file`` -> {id, ref, name, width, height, url}
                                    (201; 200 with the earlier upload when the same bytes come again)
    POST /api/uploads/prune         delete uploads no job uses (?older_than=SECONDS, default 1 h)
    GET  /api/uploads/{id}          an uploaded image
    DELETE /api/uploads/{id}        remove an upload no waiting or running job uses
    POST /api/jobs                  JSON {content: ref, styles: [ref...], settings: {...}} -> job
    GET  /api/jobs                  all jobs, newest first (queue, running and gallery)
    GET  /api/jobs/{id}             one job with its loss history
    POST /api/jobs/{id}/cancel      stop a running job or drop a waiting one
    DELETE /api/jobs/{id}           remove a finished job and its result from the gallery
    GET  /api/jobs/{id}/preview     the latest live preview (JPEG)
    GET  /api/jobs/{id}/result      the result (PNG, as a download with ?download=1)
    GET  /api/events                server-sent events: job, queue, step, removed

A reference to an input is ``upload:<id>`` or ``example:<name>`` (a shipped image's stem). Every response carries the
security headers of :class:`~painterly.studio.guards.SecurityHeaders`.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import engine, routes_inputs, routes_jobs
from .guards import AccessToken, BodyLimit, SameOrigin, SecurityHeaders
from .state import Limits, Studio

STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    data_dir: Path | str,
    *,
    max_upload_mb: float,
    max_pixels: int,
    max_storage_mb: float,
    workers: int,
    runner: engine.Runner = engine.run_engine,
    allowed_hosts: frozenset[str] | None = None,
    token: str | None = None,
    checkpoint_every: float = 60.0,
) -> Starlette:
    """The studio as an ASGI app keeping everything under ``data_dir`` (defaults: ``studio.create_app``).

    ``allowed_hosts`` are the names the Host header may carry (None: any); ``token``, if given, is
    asked of every client not on this machine. Creating the app takes the data folder's lock (a
    second app on the same folder raises a one-line PainterlyError); the app's shutdown frees it.
    """
    limits = Limits(int(max_upload_mb * 1_000_000), max_pixels, int(max_storage_mb * 1_000_000))
    studio = Studio(data_dir, limits, workers=workers, runner=runner, checkpoint_every=checkpoint_every)

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    @asynccontextmanager
    async def lifespan(app: Starlette):
        studio.prune()
        studio.queue.start()
        try:
            yield
        finally:
            await asyncio.to_thread(studio.close)

    routes = [
        Route("/", index),
        *routes_inputs.routes(studio),
        *routes_jobs.routes(studio),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SameOrigin, allowed_hosts=allowed_hosts),
        Middleware(AccessToken, token=token),
        Middleware(BodyLimit, max_bytes=limits.max_upload_bytes),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.studio = studio
    app.state.store, app.state.queue, app.state.broker, app.state.data_dir = (
        studio.store, studio.queue, studio.broker, studio.data
    )  # fmt: skip
    return app
