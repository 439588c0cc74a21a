"""Routes for jobs: submit, list, follow, cancel, delete, and their pictures and live events."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import PainterlyError
from . import engine
from .events import stream_events
from .jsontext import BadJSON, loads
from .responses import JSON, error
from .state import Studio
from .store import FINAL
from .uploads import UploadError, inside, is_id, new_id

JOB_BODY = "the job as a JSON object: {content, styles, settings}"


def routes(studio: Studio) -> list[Route]:
    store, queue, limits = studio.store, studio.queue, studio.limits

    async def submit(request: Request) -> JSON:
        """Check everything before storing anything: a refused job leaves no trace."""
        try:
            body = loads(await request.body(), JOB_BODY)
        except BadJSON as err:
            return error(400, str(err))
        if not isinstance(body, dict):
            return error(400, f"send {JOB_BODY}")
        styles = body.get("styles")
        styles = [styles] if isinstance(styles, str) else styles
        if not body.get("content"):
            return error(400, "choose a content image")
        if not isinstance(styles, list) or not styles or len(styles) > limits.max_styles:
            return error(400, f"choose between 1 and {limits.max_styles} style images")
        values = body.get("settings") or {}
        try:
            if not isinstance(values, dict):
                raise PainterlyError("settings must be a JSON object")
            content = studio.describe_ref(body["content"])
            style_list = [studio.describe_ref(s) for s in styles]
            settings = engine.build_settings(
                values, limits.max_pixels, tuple(content["shape"]), [tuple(s["shape"]) for s in style_list]
            )
            studio.make_room(0)
        except (UploadError, PainterlyError) as err:
            return error(getattr(err, "status", 400), str(err))
        job_id = new_id()
        store.add_job(job_id, content, style_list, settings.to_dict())
        queue.submit(job_id)
        return JSON(queue.describe(store.get_job(job_id)), status_code=201)

    def find_job(request: Request) -> dict | None:
        job_id = request.path_params["id"]
        return store.get_job(job_id) if is_id(job_id) else None

    async def list_jobs(request: Request) -> JSON:
        return JSON({"jobs": [queue.describe(j) for j in store.list_jobs()], "positions": queue.positions()})

    async def get_job(request: Request) -> JSON:
        job = find_job(request)
        return JSON(queue.describe(job, history=True)) if job else error(404, "no such job")

    async def cancel(request: Request) -> JSON:
        job = find_job(request)
        if job is None:
            return error(404, "no such job")
        if not queue.cancel(job["id"]):
            return error(409, f"job is already {job['status']}")
        return JSON(queue.describe(store.get_job(job["id"])))

    async def delete(request: Request) -> Response:
        job = find_job(request)
        if job is None:
            return error(404, "no such job")
        if job["status"] not in FINAL:
            return error(409, f"job is {job['status']}; cancel it before deleting it")
        if job["result"]:
            inside(studio.results_dir, job["result"]).unlink(missing_ok=True)
        queue.checkpoint_path(job["id"]).unlink(missing_ok=True)
        store.delete_job(job["id"])
        studio.broker.publish("removed", {"id": job["id"]})
        return Response(status_code=204)

    async def preview(request: Request) -> Response:
        job = find_job(request)
        live = queue.live(job["id"]) if job else None
        if live is None or live.preview is None:
            return error(404, "no live preview for this job")
        return Response(live.preview, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def result(request: Request) -> Response:
        job = find_job(request)
        if job is None or not job["result"]:
            return error(404, "this job has no result")
        path = inside(studio.results_dir, job["result"])
        if request.query_params.get("download"):
            return FileResponse(path, filename=f"painterly-{job['id'][:8]}.png")
        return FileResponse(path, media_type="image/png")

    async def events(request: Request) -> StreamingResponse:
        return stream_events(studio.broker, request)

    return [
        Route("/api/jobs", list_jobs, methods=["GET"]),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{id}", get_job, methods=["GET"]),
        Route("/api/jobs/{id}", delete, methods=["DELETE"]),
        Route("/api/jobs/{id}/cancel", cancel, methods=["POST"]),
        Route("/api/jobs/{id}/preview", preview),
        Route("/api/jobs/{id}/result", result),
        Route("/api/events", events),
    ]
