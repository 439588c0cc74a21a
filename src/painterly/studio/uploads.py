"""What the studio accepts from the network, and where it may write.

Two guards, each with a message a person can act on (the request-level ones are in guards.py):

* :func:`inspect_image` reads only the image header to check the pixel count *before* decoding,
  then decodes once to prove the file is a whole image of an allowed format.
* :func:`inside` joins server-generated names to the data directory and refuses any result that
  resolves outside it. Client file names are kept only as labels in the database.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

# Pillow decoders the studio lets near uploaded bytes (restricting formats is Pillow's own advice
# against parser bugs in rarely used decoders).
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}

# What Pillow itself treats as the expected failures on arbitrary bytes (its OSS-Fuzz harness).
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    MemoryError,
    NotImplementedError,
    OverflowError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)

_ID = re.compile(r"^[0-9a-f]{32}$")


class UploadError(Exception):
    """An upload the studio refuses; ``status`` is the HTTP code, ``str()`` the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def new_id() -> str:
    """A fresh server-generated id: 32 lowercase hex digits."""
    return secrets.token_hex(16)


def is_id(value: str) -> bool:
    return bool(_ID.match(value))


def inside(base: Path, *parts: str) -> Path:
    """``base / parts`` resolved, or ``UploadError(400)`` if that lands outside ``base``."""
    root = base.resolve()
    path = root.joinpath(*parts).resolve()
    if not path.is_relative_to(root) or path == root:
        raise UploadError(400, f"refusing a path outside the studio's data directory: {'/'.join(parts)!r}")
    return path


def inspect_image(data: bytes, name: str, max_pixels: int) -> tuple[str, int, int]:
    """Check that ``data`` is one readable image within ``max_pixels``; return (format, w, h)."""
    label = name or "the upload"
    formats = ", ".join(sorted(FORMATS))
    not_image = UploadError(400, f"{label!r} is not an image the studio can read (use {formats})")
    with warnings.catch_warnings():
        # Pillow only *warns* about decompression bombs below twice its limit; here it is an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
        except _DECODE_ERRORS:
            raise not_image from None
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise UploadError(
                    400,
                    f"{label!r} is {width}x{height} = {width * height:,} pixels; the limit is "
                    f"{max_pixels:,} (shrink the image or start the studio with a higher --max-pixels)",
                )
            try:
                image.load()
            except _DECODE_ERRORS:
                raise not_image from None
            return image.format or "PNG", width, height


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
