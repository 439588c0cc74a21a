"""One server per data folder: an exclusive ``flock`` on ``<data>/studio.lock``.

Two servers on one folder would both run the queued jobs and each would take the other's running
job for a crashed one. The lock is held for as long as the server runs and released by the
kernel when its process ends, however it ends (``kill -9`` included), so a stale lock file never
blocks a restart. The file's text says who holds it, for the second server's error message.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PainterlyError

LOCK_NAME = "studio.lock"


class DataLock:
    """Hold the lock on ``folder`` or raise a one-line :class:`PainterlyError` naming the holder."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        try:
            import fcntl
        except ImportError:  # Windows has no flock: run unlocked there
            self._fd = None
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 500, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise PainterlyError(
                f"another painterly studio ({holder}) is using {folder}; stop it, or start this one with another "
                "--data-dir"
            ) from None
        self._fd = fd
        self.note(f"pid {os.getpid()}")

    def note(self, text: str) -> None:
        """Say who holds the lock (rewritten in place: replacing the file would drop the lock)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text.encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
