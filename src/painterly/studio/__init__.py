"""``painterly serve``: a local web studio on top of the engine.

Start it with :func:`serve` (blocking) or build the ASGI app with :func:`create_app` (tests).
Starlette and uvicorn are imported only here, so ``import painterly`` never needs them.
"""

from __future__ import annotations

import os
import sys
import threading
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette

DEFAULT_HOST = "127.0.0.1"  # never the LAN unless asked: the studio has no accounts
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_PIXELS = 25_000_000  # 25 Mpx: a 6000x4000 photo fits, a decompression bomb does not
SHUTDOWN_GRACE_SECONDS = 1  # open event streams never end by themselves: wait this long, then close them


def default_data_dir() -> Path:
    """``$PAINTERLY_STUDIO_DIR``, else ``~/.local/share/painterly/studio`` (XDG data home)."""
    if os.environ.get("PAINTERLY_STUDIO_DIR"):
        return Path(os.environ["PAINTERLY_STUDIO_DIR"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "painterly" / "studio"


def create_app(
    data_dir: Path | str | None = None,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
    runner: Any = None,
    allowed_hosts: frozenset[str] | None = None,
) -> Starlette:
    """The studio as a Starlette app keeping uploads, results and its database in ``data_dir``.

    ``runner`` replaces the engine (tests); ``allowed_hosts`` limits the Host header (None: any).
    """
    try:
        from . import app as studio_app
    except ImportError as err:
        from ..errors import PainterlyError

        raise PainterlyError(
            f"the studio needs its web extras ({err.name} is missing): pip install starlette uvicorn python-multipart"
        ) from None
    extra = {"runner": runner} if runner is not None else {}
    return studio_app.create_app(
        data_dir or default_data_dir(),
        max_upload_mb=max_upload_mb,
        max_pixels=max_pixels,
        workers=workers,
        allowed_hosts=allowed_hosts,
        **extra,
    )


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    data_dir: Path | str | None = None,
    open_browser: bool = False,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
) -> None:
    """Run the studio until interrupted (Ctrl-C); jobs still waiting resume on the next start."""
    import socket

    from ..errors import PainterlyError
    from .guards import LOOPBACK_HOSTS

    # On loopback, answer only to loopback names: a web page cannot then reach the studio by
    # pointing a name of its own at 127.0.0.1 (DNS rebinding).
    allowed = LOOPBACK_HOSTS if host in LOOPBACK_HOSTS else None
    try:  # bind first, so a busy port is one clear line rather than a uvicorn log and exit
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise PainterlyError(f"cannot listen on {host}:{port} ({reason}); pick another --port") from None
    with sock:
        app = create_app(
            data_dir, max_upload_mb=max_upload_mb, max_pixels=max_pixels, workers=workers, allowed_hosts=allowed
        )
        import uvicorn

        class _Server(uvicorn.Server):
            def handle_exit(self, sig, frame) -> None:  # Ctrl-C or SIGTERM: end the open event streams
                app.state.broker.close()
                super().handle_exit(sig, frame)

        url = f"http://{'[' + host + ']' if ':' in host else host}:{sock.getsockname()[1]}/"
        if open_browser:
            threading.Timer(1.0, webbrowser.open, (url,)).start()
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)
        print(f"painterly studio: {url}  (data in {app.state.data_dir}; Ctrl-C to stop)", file=sys.stderr)  # noqa: T201
        _Server(config).run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    """``painterly serve [--host H] [--port P] [--data-dir D] [--open] ...``; returns the exit code."""
    import argparse

    parser = argparse.ArgumentParser(prog="painterly serve", description="Run the painterly web studio.")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s, this machine only)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    parser.add_argument("--data-dir", help="uploads, results and the gallery database (default: $PAINTERLY_STUDIO_DIR "
                        "or ~/.local/share/painterly/studio)")  # fmt: skip
    parser.add_argument("--open", action="store_true", help="open the studio in a web browser")
    parser.add_argument(
        "--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest upload (default: %(default)s)"
    )
    parser.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="largest image in pixels (default: %(default)s)"
    )
    parser.add_argument("--workers", type=int, default=1, help="jobs run at the same time (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"painterly studio: listening on {args.host}: anyone who can reach it can use it", file=sys.stderr)  # noqa: T201
    serve(args.host, args.port, args.data_dir, args.open, args.max_upload_mb, args.max_pixels, max(1, args.workers))
    return 0
