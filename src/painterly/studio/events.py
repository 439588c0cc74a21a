"""Live events: a thread-safe :class:`Broker` and the server-sent-event stream that reads it.

Worker threads publish (kind, data) pairs; each open ``GET /api/events`` holds one subscriber
queue. Every event is encoded by :func:`~painterly.studio.jsontext.dumps`, so a non-finite loss
reaches the page as ``null``, never as the ``Infinity`` a browser's JSON parser rejects.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from .jsontext import dumps

SUBSCRIBER_BACKLOG = 1000  # events a slow page may fall behind before it loses some
KEEPALIVE_SECONDS = 15.0  # an SSE comment this often keeps proxies and browsers from timing out


class Broker:
    """Thread-safe fan-out of events to asyncio subscribers (one queue per open stream)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self._closed = False

    def subscribe(self) -> asyncio.Queue:
        """A queue of (kind, data) events; ``(None, None)`` means the server is closing."""
        queue: asyncio.Queue = asyncio.Queue(SUBSCRIBER_BACKLOG)
        with self._lock:
            if self._closed:
                queue.put_nowait((None, None))
            else:
                self._subscribers.append((asyncio.get_running_loop(), queue))
        return queue

    def close(self) -> None:
        """End every stream, so a server shutting down need not wait for open pages."""
        with self._lock:
            self._closed = True
        self.publish(None, None)

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = [(lp, q) for lp, q in self._subscribers if q is not queue]

    def publish(self, kind: str | None, data: dict[str, Any] | None) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(_offer, queue, (kind, data))
            except RuntimeError:  # that stream's event loop has closed
                self.unsubscribe(queue)


def _offer(queue: asyncio.Queue, event: tuple[str, dict]) -> None:
    if not queue.full():
        queue.put_nowait(event)


def stream_events(broker: Broker, request: Request) -> StreamingResponse:
    """``GET /api/events``: every event ``broker`` publishes, until the server closes it."""
    subscription = broker.subscribe()

    async def stream():
        try:
            yield "retry: 1000\n\n"
            while True:
                try:
                    kind, data = await asyncio.wait_for(subscription.get(), KEEPALIVE_SECONDS)
                except asyncio.TimeoutError:  # noqa: UP041 - a different class before Python 3.11
                    yield f": alive {time.time():.0f}\n\n"
                    continue
                if kind is None:  # the server is shutting down
                    return
                yield f"event: {kind}\ndata: {dumps(data)}\n\n"
        finally:
            broker.unsubscribe(subscription)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
