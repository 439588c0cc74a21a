"""Image files made in memory for the tests: encoded images and a decompression bomb's header."""

import io
import struct
import zlib

from PIL import Image


def encoded(im: Image.Image, fmt: str, **options) -> bytes:
    """``im`` as the bytes of a ``fmt`` file (PNG, JPEG, TIFF, ...)."""
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds no pixel data (ECOSYSTEM.md §4's 57-byte bomb)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
