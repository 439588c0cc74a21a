"""Request-level guards, as plain ASGI middleware in front of every route.

* :class:`BodyLimit` caps every request body: a too-large ``Content-Length`` is refused before a
  byte is read, and the bytes actually received are counted too (a client can lie or stream).
* :class:`SameOrigin` answers only to the expected host names (so a web page cannot reach the
  studio through DNS rebinding) and refuses state-changing requests sent by other sites' pages
  (a form on any website may POST to 127.0.0.1 without asking).
* :class:`AccessToken` asks every client but this machine's own for the token the server printed
  at start (as Jupyter does): once as ``?token=``, then from a same-site cookie.
* :class:`SecurityHeaders` puts a Content-Security-Policy that fits the page (its own scripts and
  styles only, no framing), nosniff and no-referrer on every response, refusals included.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode, urlsplit

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
            await _refuse(send, 403, f"this studio answers only to {names}; allow others with --allow-host")
            return
        origin = headers.get(b"origin")
        if scope["method"] not in SAFE_METHODS and origin is not None:
            if urlsplit(origin.decode("latin-1")).netloc.lower() != host.lower():
                await _refuse(send, 403, "requests from other web sites are refused")
                return
        await self.app(scope, receive, send)


def _is_loopback(client: tuple[str, int] | None) -> bool:
    try:
        return client is not None and ipaddress.ip_address(client[0]).is_loopback
    except ValueError:  # not an address (a test client's made-up name)
        return False


class AccessToken:
    """401 unless a client off this machine shows ``token`` (None: no token asked).

    A request carrying ``?token=`` that matches gets the token as an HttpOnly, SameSite=Strict
    cookie and is redirected to the same URL without it (so it leaves the address bar and the
    history); scripts can send ``Authorization: Bearer TOKEN`` instead.
    """

    COOKIE = "painterly_token"

    def __init__(self, app, token: str | None = None) -> None:
        self.app = app
        self.token = token

    def _matches(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token.encode())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.token is None or _is_loopback(scope.get("client")):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        given = dict(query).get("token")
        if self._matches(given):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope["path"] + (f"?{rest}" if rest else "")
            cookie = f"{self.COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
            response_headers = [(b"location", location.encode()), (b"set-cookie", cookie.encode()),
                                (b"content-length", b"0")]  # fmt: skip
            await send({"type": "http.response.start", "status": 303, "headers": response_headers})
            await send({"type": "http.response.body", "body": b""})
            return
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # noqa: BLE001 - a malformed Cookie header is simply no token
            cookies = SimpleCookie()
        morsel = cookies.get(self.COOKIE)
        bearer = headers.get(b"authorization", b"").decode("latin-1")
        if self._matches(morsel.value if morsel else None) or self._matches(bearer.removeprefix("Bearer ")):
            await self.app(scope, receive, send)
            return
        await _refuse(
            send, 401, "this studio needs its access token: open the address with ?token= it printed at start"
        )


# The page loads only its own scripts, styles and pictures (the favicon is a data: URL), opens only
# its own event stream, and may not be framed: clickjacking and injected content have nowhere to go.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers that predate it
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class SecurityHeaders:
    """Add :data:`SECURITY_HEADERS` to every HTTP response (placed outermost, so refusals too)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
