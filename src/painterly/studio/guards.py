"""Request-level guards, as plain ASGI middleware in front of every route.

* :class:`BodyLimit` caps every request body: a too-large ``Content-Length`` is refused before a
  byte is read, and the bytes actually received are counted too (a client can lie or stream).
* :class:`SameOrigin` answers only to the expected host names (so a web page cannot reach the
  studio through DNS rebinding) and refuses state-changing requests sent by other sites' pages
  (a form on any website may POST to 127.0.0.1 without asking).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _bytes(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{n / 1000:.1f} kB"


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a body passes the limit; :class:`BodyLimit` answers 413."""


class BodyLimit:
    """Answer 413 to any request whose body exceeds ``max_bytes``."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: int | None) -> str:
        what = f"is {_bytes(size)}" if size is not None else "is larger than that"
        return (
            f"the upload limit is {_bytes(self.max_bytes)} and this upload {what} "
            f"(start the studio with a higher --max-upload-mb to allow more)"
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(send, 413, self._message(int(declared)))
            return
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(send, 413, self._message(None))


def _hostname(netloc: str) -> str:
    """``"[::1]:8765"`` -> ``"::1"``, ``"localhost:80"`` -> ``"localhost"``."""
    return (urlsplit(f"//{netloc}").hostname or "").lower()


class SameOrigin:
    """403 for a Host outside ``allowed_hosts`` (None: any) and for cross-site writes."""

    def __init__(self, app, allowed_hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if self.allowed_hosts is not None and _hostname(host) not in self.allowed_hosts:
            names = ", ".join(sorted(self.allowed_hosts))
            await _refuse(send, 403, f"this studio answers only to {names}; start it with --host to serve others")
            return
        origin = headers.get(b"origin")
        if scope["method"] not in SAFE_METHODS and origin is not None:
            if urlsplit(origin.decode("latin-1")).netloc.lower() != host.lower():
                await _refuse(send, 403, "requests from other web sites are refused")
                return
        await self.app(scope, receive, send)
