"""The studio's memory: jobs and uploads in one small SQLite file.

Everything the gallery shows after a restart lives here: each job's inputs, its full settings,
status, losses, loss history and the name of its result file (always ``<job id>.png`` under the
data directory's ``results/``). A record that cannot be read back (written by another version, or
damaged) is shown as ``unreadable`` instead of failing the whole gallery. One connection is
shared by the web thread and the worker threads, so every call takes the same lock; SQLite's WAL
journal keeps a crash from corrupting the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .jsontext import dumps

SCHEMA_VERSION = 2  # 2: jobs.attempts

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    filename TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    content TEXT NOT NULL,
    styles TEXT NOT NULL,
    settings TEXT NOT NULL,
    result TEXT,
    error TEXT,
    losses TEXT,
    history TEXT,
    seconds REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
"""
# Columns added since version 1, for a database an older studio made.
_ADDED_COLUMNS = {"attempts": "INTEGER NOT NULL DEFAULT 0"}

# Columns stored as JSON text; everything else is a plain SQLite value.
_JSON_COLUMNS = ("content", "styles", "settings", "losses", "history")
_JOB_COLUMNS = ("status", "started", "finished", "result", "error", "losses", "history", "seconds", "attempts")

# Statuses a job can have; the last five are final (``unreadable`` is never stored: it is what a
# record that cannot be decoded is shown as).
QUEUED, RUNNING, DONE, CANCELLED, FAILED, INTERRUPTED, UNREADABLE = (
    "queued",
    "running",
    "done",
    "cancelled",
    "failed",
    "interrupted",
    "unreadable",
)
FINAL = (DONE, CANCELLED, FAILED, INTERRUPTED, UNREADABLE)
# A job that was running when its server died is resumed this many times, then given up: a job
# that kills the server (the out-of-memory killer, say) must not do so on every start.
MAX_ATTEMPTS = 3


class Store:
    """Jobs and uploads in ``path`` (created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            have = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
            for name, kind in _ADDED_COLUMNS.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # uploads -------------------------------------------------------------------------------------

    def add_upload(self, id: str, name: str, filename: str, width: int, height: int) -> None:
        self._run(
            "INSERT OR IGNORE INTO uploads (id, name, filename, width, height, created) VALUES (?, ?, ?, ?, ?, ?)",
            (id, name, filename, width, height, time.time()),
        )

    def get_upload(self, id: str) -> dict[str, Any] | None:
        rows = self._run("SELECT * FROM uploads WHERE id = ?", (id,))
        return dict(rows[0]) if rows else None

    def list_uploads(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._run("SELECT * FROM uploads ORDER BY created")]

    def delete_upload(self, id: str) -> None:
        self._run("DELETE FROM uploads WHERE id = ?", (id,))

    def upload_users(self, id: str) -> list[tuple[str, str]]:
        """(job id, status) of every job whose content or styles use upload ``id``."""
        pattern = f'%"upload:{id}"%'  # ids are hex digits: nothing in them is a LIKE wildcard
        rows = self._run("SELECT id, status FROM jobs WHERE content LIKE ? OR styles LIKE ?", (pattern, pattern))
        return [(r["id"], r["status"]) for r in rows]

    # jobs ----------------------------------------------------------------------------------------

    def add_job(self, id: str, content: dict, styles: list[dict], settings: dict) -> dict[str, Any]:
        self._run(
            "INSERT INTO jobs (id, status, created, content, styles, settings) VALUES (?, ?, ?, ?, ?, ?)",
            (id, QUEUED, time.time(), dumps(content), dumps(styles), dumps(settings)),
        )
        job = self.get_job(id)
        assert job is not None
        return job

    def update_job(self, id: str, **fields: Any) -> None:
        unknown = set(fields) - set(_JOB_COLUMNS)
        if unknown:
            raise ValueError(f"not job columns: {sorted(unknown)}")
        names = list(fields)
        values = [dumps(fields[n]) if n in _JSON_COLUMNS else fields[n] for n in names]
        assignments = ", ".join(f"{n} = ?" for n in names)
        self._run(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values, id))

    def get_job(self, id: str) -> dict[str, Any] | None:
        rows = self._run("SELECT * FROM jobs WHERE id = ?", (id,))
        return _decode(rows[0]) if rows else None

    def list_jobs(self, limit: int = 500) -> list[dict[str, Any]]:
        """Newest first, without the (long) loss histories."""
        rows = self._run("SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", (limit,))
        jobs = [_decode(r) for r in rows]
        for job in jobs:
            job.pop("history", None)
        return jobs

    def queued_ids(self) -> list[str]:
        """Waiting jobs in submission order."""
        return [r["id"] for r in self._run("SELECT id FROM jobs WHERE status = ? ORDER BY seq", (QUEUED,))]

    def delete_job(self, id: str) -> None:
        self._run("DELETE FROM jobs WHERE id = ?", (id,))

    def requeue_running(self) -> int:
        """Jobs a server left ``running`` (it was killed) wait again, ahead of the rest (they are
        older), up to :data:`MAX_ATTEMPTS` times; then they are interrupted. Returns how many wait."""
        message = f"the server stopped while this job was running, {MAX_ATTEMPTS} times; it was given up"
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, finished = ? WHERE status = ? AND attempts + 1 >= ?",
                (INTERRUPTED, message, time.time(), RUNNING, MAX_ATTEMPTS),
            )
            cursor = self._db.execute(
                "UPDATE jobs SET status = ?, attempts = attempts + 1 WHERE status = ?", (QUEUED, RUNNING)
            )
            return cursor.rowcount


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    try:
        for name in _JSON_COLUMNS:
            if job.get(name) is not None:
                job[name] = json.loads(job[name])
        _check_shape(job)
    except (ValueError, TypeError, KeyError, RecursionError):
        return _unreadable(row)
    return job


def _check_shape(job: dict[str, Any]) -> None:
    """TypeError unless the decoded columns have the shapes the page reads."""
    ok = (
        isinstance(job["id"], str)
        and isinstance(job["status"], str)
        and isinstance(job["created"], int | float)
        and isinstance(job["content"], dict)
        and isinstance(job["content"].get("name"), str)
        and isinstance(job["styles"], list)
        and all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in job["styles"])
        and isinstance(job["settings"], dict)
        and isinstance(job.get("losses") or {}, dict)
        and isinstance(job.get("history") or [], list)
    )
    if not ok:
        raise TypeError("unexpected shape")


def _unreadable(row: sqlite3.Row) -> dict[str, Any]:
    """What the page is shown of a record it cannot read: its id, so it can be deleted."""
    created = row["created"] if isinstance(row["created"], int | float) else 0.0
    return {
        "seq": row["seq"], "id": str(row["id"]), "status": UNREADABLE, "created": created, "started": None,
        "finished": None, "content": {"ref": None, "name": "unreadable record", "url": None}, "styles": [],
        "settings": {}, "result": None, "losses": None, "history": None, "seconds": None, "attempts": 0,
        "error": "this run's record cannot be read (another version of painterly wrote it?); delete it",
    }  # fmt: skip
