"""What the studio accepts from the network, and where it may write.

Two guards, each with a message a person can act on (the request-level ones are in guards.py):

* :func:`inspect_image` reads only the image header to check the pixel count *before* decoding,
  then decodes once to prove the file is a whole image of an allowed format.
* :func:`inside` joins server-generated names to the data directory and refuses any result that
  resolves outside it. Client file names are kept only as labels in the database.

An upload's id is the start of the SHA-256 of its bytes (:func:`content_id`), so the same image
sent twice is stored once.
"""

from __future__ import annotations

import hashlib
import io
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


def content_id(data: bytes) -> str:
    """The id of an upload: 32 hex digits of the SHA-256 of its bytes (128 bits: no collisions)."""
    return hashlib.sha256(data).hexdigest()[:32]


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
