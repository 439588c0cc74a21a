"""Writing files so that nothing half-written is ever seen: the one atomic writer and write probe.

Every file painterly writes (images, checkpoints, weights, JSON records, uploads, reports) goes
through :func:`atomic_write`: the bytes go to a hidden temporary file beside the target, are
flushed to disk, and are renamed over the target only when complete. A crash or an error leaves
the previous file (or none), never part of one, and never a stray temporary file.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Writer = Callable[[BinaryIO], None]

# The image files painterly writes (here, not in image.py, so that planning a batch needs no torch).
OUTPUT_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


def atomic_write(path: str | os.PathLike, data: bytes | str | Writer, *, durable: bool = True) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or a function that writes to a binary file) to ``path``.

    The temporary file is ``.<name>.<random>.part`` in the same folder, opened with ``open()`` so
    its mode follows the umask (``mkstemp`` would give 0600). ``durable`` fsyncs the file and the
    folder, so the rename survives a power cut. On any failure the temporary file is removed, an
    existing ``path`` is left exactly as it was, and the error (``OSError`` included) propagates.
    """
    out = Path(path)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.part")
    try:
        with open(tmp, "xb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    remove_partials(out)  # left by a writer of this path that was killed (SIGKILL, power) mid-write
    if durable:
        with contextlib.suppress(OSError):  # not every platform can open a folder
            dir_fd = os.open(out.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    return out


def remove_partials(path: str | os.PathLike) -> None:
    """Remove the temporary files that :func:`atomic_write` calls to ``path`` left when their process
    was killed mid-write (nothing can remove them then). One writer per path is assumed: a file
    being written at this moment by another process for the same path would be removed too."""
    out = Path(path)
    for stale in out.parent.glob(f".{glob.escape(out.name)}.*.part"):
        with contextlib.suppress(OSError):
            stale.unlink()


def remove(path: str | os.PathLike) -> None:
    """Remove a finished run's ``path`` (a checkpoint), and any half-written copy a killed process left."""
    Path(path).unlink(missing_ok=True)
    remove_partials(path)


def writable_folder(folder: str | os.PathLike) -> str | None:
    """``None`` if a file can be created in ``folder``, else why not (one phrase).

    A real probe (a file created and removed): ``os.access`` is wrong for root, read-only mounts
    and ACLs.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    probe = folder / f".painterly-probe.{secrets.token_hex(6)}"
    try:
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as err:
        return f"the folder {folder} is not writable ({err.strerror or err})"
    return None
