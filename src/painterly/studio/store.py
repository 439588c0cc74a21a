"""The studio's memory: jobs and uploads in one small SQLite file.

Everything the gallery shows after a restart lives here: each job's inputs, its full settings,
status, losses, loss history and the name of its result file (always ``<job id>.png`` under the
data directory's ``results/``). One connection is shared by the web thread and the worker
threads, so every call takes the same lock; SQLite's WAL journal keeps a crash from corrupting
the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

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
    seconds REAL
);
"""

# Columns stored as JSON text; everything else is a plain SQLite value.
_JSON_COLUMNS = ("content", "styles", "settings", "losses", "history")
_JOB_COLUMNS = ("status", "started", "finished", "result", "error", "losses", "history", "seconds")

# Statuses a job can have; the last four are final.
QUEUED, RUNNING, DONE, CANCELLED, FAILED, INTERRUPTED = (
    "queued",
    "running",
    "done",
    "cancelled",
    "failed",
    "interrupted",
)
FINAL = (DONE, CANCELLED, FAILED, INTERRUPTED)


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
            "INSERT INTO uploads (id, name, filename, width, height, created) VALUES (?, ?, ?, ?, ?, ?)",
            (id, name, filename, width, height, time.time()),
        )

    def get_upload(self, id: str) -> dict[str, Any] | None:
        rows = self._run("SELECT * FROM uploads WHERE id = ?", (id,))
        return dict(rows[0]) if rows else None

    # jobs ----------------------------------------------------------------------------------------

    def add_job(self, id: str, content: dict, styles: list[dict], settings: dict) -> dict[str, Any]:
        self._run(
            "INSERT INTO jobs (id, status, created, content, styles, settings) VALUES (?, ?, ?, ?, ?, ?)",
            (id, QUEUED, time.time(), json.dumps(content), json.dumps(styles), json.dumps(settings)),
        )
        job = self.get_job(id)
        assert job is not None
        return job

    def update_job(self, id: str, **fields: Any) -> None:
        unknown = set(fields) - set(_JOB_COLUMNS)
        if unknown:
            raise ValueError(f"not job columns: {sorted(unknown)}")
        names = list(fields)
        values = [json.dumps(fields[n]) if n in _JSON_COLUMNS else fields[n] for n in names]
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

    def mark_interrupted(self) -> int:
        """Jobs left ``running`` by a server that stopped are interrupted; returns how many."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, finished = ? WHERE status = ?",
                (INTERRUPTED, "the server stopped while this job was running", time.time(), RUNNING),
            )
            return cursor.rowcount


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    for name in _JSON_COLUMNS:
        if job.get(name) is not None:
            job[name] = json.loads(job[name])
    return job
