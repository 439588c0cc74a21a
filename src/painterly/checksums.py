"""The SHA-256 record kept beside a cached weights file, and the checks made against it.

When painterly downloads or converts a weights file it writes ``<file>.sha256.json`` beside it:
the full-file SHA-256, the size and the modification time (nanoseconds) the file had once written.
Every load compares the size and time with the record (a ``stat``, no reading), so a file that was
truncated, replaced or edited since is refused before torch reads it; :func:`verify_file` reads the
whole file and compares the hash (``painterly weights verify``). A file with no record (put there
by hand or by torchvision) is hashed once on first use and recorded then.

Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsError
from .files import atomic_write

SUFFIX = ".sha256.json"
CHUNK = 1 << 20  # bytes hashed per read


@dataclass(frozen=True)
class Record:
    """What a weights file looked like when painterly last checked it in full."""

    sha256: str
    size: int
    mtime_ns: int

    def matches(self, path: Path) -> bool:
        """Whether ``path`` still has the recorded size and modification time (cheap: one ``stat``)."""
        st = path.stat()
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


def record_path(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_record(path: Path) -> Record | None:
    """The record beside ``path``; None when there is none or it cannot be read (it is rebuilt)."""
    try:
        data = json.loads(record_path(path).read_text())
        return Record(str(data["sha256"]), int(data["size"]), int(data["mtime_ns"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(path: Path, sha256: str) -> Record:
    """Record ``path`` as it is now, with the SHA-256 its bytes were found to have."""
    st = path.stat()
    record = Record(sha256, st.st_size, st.st_mtime_ns)
    text = json.dumps({"file": path.name, "sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    atomic_write(record_path(path), text + "\n")
    return record


def remove(path: Path) -> None:
    """Delete a cached file and its record (before fetching it again)."""
    path.unlink(missing_ok=True)
    record_path(path).unlink(missing_ok=True)


def check_unchanged(path: Path, record: Record, fix: str) -> None:
    """Refuse ``path`` if its size or modification time differs from ``record``; ``fix`` says what to do."""
    st = path.stat()
    if st.st_size != record.size:
        raise WeightsError(
            f"weights file {path} has {st.st_size} bytes but had {record.size} when painterly recorded it "
            f"(truncated or replaced?); {fix}"
        )
    if st.st_mtime_ns != record.mtime_ns:
        raise WeightsError(f"weights file {path} was modified after painterly recorded its SHA-256; {fix}")


def verify_file(path: Path, record: Record, fix: str) -> None:
    """Hash all of ``path`` and refuse it unless it equals the record; a file only touched is re-recorded."""
    actual = sha256_file(path)
    if actual != record.sha256:
        raise WeightsError(
            f"weights file {path} has SHA-256 {actual[:16]}..., recorded {record.sha256[:16]}...: "
            f"it was altered or damaged; {fix}"
        )
    if not record.matches(path):  # same bytes, new time (copied, touched): the record follows
        write_record(path, actual)


def mtime_text(record: Record) -> str:
    """The recorded modification time, local, to the minute."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(record.mtime_ns / 1e9))
