"""Routes for what a job is made from: the form's schema, shipped examples and uploads."""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ..files import atomic_write
from . import engine
from .guards import BodyTooLarge
from .responses import JSON, error
from .state import PRUNE_AFTER_SECONDS, Studio, examples
from .uploads import FORMATS, UploadError, content_id, inside, inspect_image, is_id


def _public(upload: dict) -> dict:
    upload_id = upload["id"]
    return {"id": upload_id, "ref": f"upload:{upload_id}", "name": upload["name"], "width": upload["width"],
            "height": upload["height"], "url": f"/api/uploads/{upload_id}"}  # fmt: skip


def routes(studio: Studio) -> list[Route]:
    store, limits = studio.store, studio.limits

    async def config(request: Request) -> JSON:
        listing = [{"ref": f"example:{n}", "name": n, "url": f"/api/examples/{n}"} for n in examples()]
        return JSON(
            {
                **engine.form_schema(),
                "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels,
                           "max_styles": limits.max_styles, "max_storage_bytes": limits.max_storage_bytes},
                "formats": sorted(FORMATS),
                "examples": listing,
                "workers": studio.workers,
            }
        )  # fmt: skip

    async def example_image(request: Request) -> Response:
        path = examples().get(request.path_params["name"])
        return FileResponse(path) if path else error(404, "no such example")

    async def upload(request: Request) -> Response:
        """Store an image once per content: the same bytes again answer with the first upload (200)."""
        try:
            form = await request.form(max_files=1, max_fields=4)
        except BodyTooLarge:
            raise
        except Exception as err:  # python-multipart and Starlette raise several kinds on bad bodies
            return error(400, f"could not read the upload as a form: {err}")
        part = form.get("file")
        if part is None or isinstance(part, str):
            return error(400, "send the image as a multipart form field named 'file'")
        data = await part.read()
        label = Path((part.filename or "image").replace("\\", "/")).name[:120] or "image"
        upload_id = content_id(data)
        known = store.get_upload(upload_id)
        if known is not None:
            return JSON(_public(known), status_code=200)
        try:
            fmt, width, height = await asyncio.to_thread(inspect_image, data, label, limits.max_pixels)
            studio.make_room(len(data))
            filename = upload_id + FORMATS[fmt]
            atomic_write(inside(studio.uploads_dir, filename), data)
        except UploadError as err:
            return error(err.status, str(err))
        store.add_upload(upload_id, label, filename, width, height)
        return JSON(_public(store.get_upload(upload_id)), status_code=201)

    def find(request: Request) -> dict | None:
        upload_id = request.path_params["id"]
        return store.get_upload(upload_id) if is_id(upload_id) else None

    async def upload_image(request: Request) -> Response:
        found = find(request)
        if found is None:
            return error(404, "no such upload")
        return FileResponse(inside(studio.uploads_dir, found["filename"]))

    async def delete_upload(request: Request) -> Response:
        found = find(request)
        if found is None:
            return error(404, "no such upload")
        try:
            studio.delete_upload(found)
        except UploadError as err:
            return error(err.status, str(err))
        return Response(status_code=204)

    async def prune(request: Request) -> JSON:
        """Delete uploads no job uses, older than ``?older_than=`` seconds (default an hour)."""
        try:
            older_than = float(request.query_params.get("older_than", PRUNE_AFTER_SECONDS))
        except ValueError:
            older_than = -1.0
        if not older_than >= 0:
            return error(400, "older_than must be a number of seconds >= 0")
        count, freed = studio.prune(older_than)
        return JSON({"removed": count, "bytes": freed})

    return [
        Route("/api/config", config),
        Route("/api/examples/{name}", example_image),
        Route("/api/uploads", upload, methods=["POST"]),
        Route("/api/uploads/prune", prune, methods=["POST"]),
        Route("/api/uploads/{id}", upload_image, methods=["GET"]),
        Route("/api/uploads/{id}", delete_upload, methods=["DELETE"]),
    ]
