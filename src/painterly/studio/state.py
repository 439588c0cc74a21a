"""What one studio holds: its folders, limits, database, queue and lock, and the input references.

A reference to an input is ``upload:<id>`` (an upload's row names its file) or ``example:<name>``
(an image shipped with painterly, by its file's stem); nothing else a client sends becomes a path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import PainterlyError
from ..files import writable_folder
from . import engine
from .events import Broker
from .jobs import JobQueue
from .lock import DataLock
from .store import QUEUED, RUNNING, Store
from .uploads import UploadError, inside, is_id

PRUNE_AFTER_SECONDS = 3600.0  # an unused upload younger than this may be on a page about to submit it


def examples() -> dict[str, Path]:
    """Shipped example images by name (the file's stem), as ``example:NAME`` means everywhere."""
    from ..image import examples as shipped

    return shipped()


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int
    max_pixels: int
    max_storage_bytes: int
    max_styles: int = 8


class Studio:
    """The state behind every route; made by :func:`painterly.studio.app.create_app`."""

    def __init__(
        self,
        data_dir: Path | str,
        limits: Limits,
        *,
        workers: int,
        runner: engine.Runner,
        checkpoint_every: float,
    ) -> None:
        data = Path(data_dir).expanduser().resolve()
        if data.exists() and not data.is_dir():
            raise PainterlyError(f"--data-dir {data} is a file, not a folder")
        self.data, self.limits, self.workers = data, limits, workers
        self.uploads_dir, self.results_dir, self.checkpoints_dir = (
            data / "uploads",
            data / "results",
            data / "checkpoints",
        )
        try:
            for folder in (self.uploads_dir, self.results_dir, self.checkpoints_dir):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PainterlyError(f"--data-dir {data} cannot be created ({err.strerror or err})") from None
        problem = writable_folder(data)
        if problem:
            raise PainterlyError(f"--data-dir: {problem}")
        self.lock = DataLock(data)
        for folder in (self.uploads_dir, self.results_dir, self.checkpoints_dir):
            for stale in folder.glob(".*.part"):  # a write a killed server left half done (we hold the lock)
                stale.unlink(missing_ok=True)
        try:
            self.store = Store(data / "studio.sqlite3")
        except BaseException:
            self.lock.release()
            raise
        self.broker = Broker()
        self.queue = JobQueue(self.store, self.broker, self.resolve_inputs, self.results_dir, self.checkpoints_dir,
                              runner=runner, workers=workers, checkpoint_every=checkpoint_every)  # fmt: skip

    def close(self) -> None:
        self.queue.close()
        self.store.close()
        self.lock.release()

    # input references ----------------------------------------------------------------------------

    def ref_path(self, ref: Any) -> Path:
        kind, _, name = str(ref).partition(":")
        if kind == "example" and name in examples():
            return examples()[name]
        if kind == "upload" and is_id(name):
            upload = self.store.get_upload(name)
            if upload is not None:
                return inside(self.uploads_dir, upload["filename"])
        raise UploadError(400, f"unknown input {str(ref)[:100]!r}: upload it first or pick a listed example")

    def resolve_inputs(self, job: dict) -> tuple[Path, list[Path]]:
        return self.ref_path(job["content"]["ref"]), [self.ref_path(s["ref"]) for s in job["styles"]]

    def describe_ref(self, ref: Any) -> dict[str, Any]:
        """What a job records of an input: ``{ref, name, url, shape}`` (shape is (H, W))."""
        path = self.ref_path(ref)  # raises for anything unknown
        kind, _, name = str(ref).partition(":")
        if kind == "example":
            with Image.open(path) as im:
                width, height = im.size
            return {"ref": ref, "name": name, "url": f"/api/examples/{name}", "shape": [height, width]}
        upload = self.store.get_upload(name)
        return {"ref": ref, "name": upload["name"], "url": f"/api/uploads/{name}",
                "shape": [upload["height"], upload["width"]]}  # fmt: skip

    # storage -------------------------------------------------------------------------------------

    def usage(self) -> int:
        """Bytes the studio keeps on disk: uploads, results and checkpoints."""
        folders = (self.uploads_dir, self.results_dir, self.checkpoints_dir)
        return sum(p.stat().st_size for folder in folders for p in folder.iterdir() if p.is_file())

    def make_room(self, size: int) -> None:
        """Room for ``size`` more bytes, pruning unused uploads if that helps; else UploadError(507)."""
        if self.usage() + size <= self.limits.max_storage_bytes:
            return
        self.prune()
        used = self.usage()
        if used + size > self.limits.max_storage_bytes:
            raise UploadError(
                507,
                f"the studio's storage is full ({used / 1e6:.1f} MB of {self.limits.max_storage_bytes / 1e6:.1f} MB "
                "used): delete runs or uploads, or start it with a higher --max-storage-mb",
            )

    def delete_upload(self, upload: dict[str, Any]) -> None:
        """Remove an upload unless a waiting or running job needs it (UploadError 409)."""
        active = [job for job, status in self.store.upload_users(upload["id"]) if status in (QUEUED, RUNNING)]
        if active:
            raise UploadError(409, f"this upload is used by {len(active)} waiting or running job(s); cancel them first")
        inside(self.uploads_dir, upload["filename"]).unlink(missing_ok=True)
        self.store.delete_upload(upload["id"])

    def prune(self, older_than: float = PRUNE_AFTER_SECONDS) -> tuple[int, int]:
        """Delete the uploads no job uses and older than ``older_than`` s; returns (count, bytes)."""
        count = freed = 0
        for upload in self.store.list_uploads():
            if time.time() - upload["created"] < older_than or self.store.upload_users(upload["id"]):
                continue
            path = inside(self.uploads_dir, upload["filename"])
            freed += path.stat().st_size if path.is_file() else 0
            path.unlink(missing_ok=True)
            self.store.delete_upload(upload["id"])
            count += 1
        return count, freed
