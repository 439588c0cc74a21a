"""JSON responses that browsers can always parse, and errors as one short line."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from .jsontext import dumps

MAX_MESSAGE = 300  # characters of an error message: a repr of a megabyte value is no help to anyone


class JSON(JSONResponse):
    """A JSONResponse whose non-finite numbers are ``null`` (see :mod:`.jsontext`)."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


def error(status: int, message: str) -> JSON:
    """``{"error": message}`` with ``status``; the message is one line, cut to MAX_MESSAGE."""
    line = " ".join(str(message).split())
    if len(line) > MAX_MESSAGE:
        line = line[: MAX_MESSAGE - 1] + "…"
    return JSON({"error": line}, status_code=status)
