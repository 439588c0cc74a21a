"""``painterly serve``: flags, the host mode's guards, and running the app under uvicorn.

On loopback (the default) the studio answers only to loopback names and asks no token. Given
another ``--host`` it stays guarded: the Host and Origin checks use an allow-list (``--allow-host``,
repeatable; by default the bound address and this machine's names), and every client off this
machine must show an access token, printed at start as Jupyter does (``--token`` to choose it,
``--no-token`` to go without).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import secrets
import socket
import sys
import threading
import webbrowser
from pathlib import Path

from ..errors import PainterlyError
from ..flags import Parser, count, seconds
from . import (
    DEFAULT_CHECKPOINT_SECONDS,
    DEFAULT_HOST,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_STORAGE_MB,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_PORT,
    create_app,
)
from .guards import LOOPBACK_HOSTS

SHUTDOWN_GRACE_SECONDS = 1  # open event streams never end by themselves: wait this long, then close them
WILDCARDS = ("0.0.0.0", "::", "")


def machine_names() -> set[str]:
    """This machine's host names and the addresses they resolve to (lower case)."""
    names = {socket.gethostname(), socket.getfqdn()}
    try:
        names.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:  # a name that does not resolve: the names alone
        pass
    return {n.lower() for n in names if n}


def allowed_hosts(host: str, allow: list[str] | None) -> frozenset[str] | None:
    """The Host names the studio answers to when bound to ``host``.

    Loopback: the loopback names. Otherwise the bound address (unless a wildcard) and ``allow``,
    or this machine's names when ``allow`` is not given, plus the loopback names (a page a
    DNS-rebinding attacker serves carries the attacker's name, never these).
    """
    if host in LOOPBACK_HOSTS:
        return LOOPBACK_HOSTS
    names = set(LOOPBACK_HOSTS)
    if host not in WILDCARDS:
        names.add(host.lower())
    if allow:
        names.update(n.lower() for n in allow)
    else:
        names.update(machine_names())
    return frozenset(names)


def _url(host: str, port: int, token: str | None = None) -> str:
    shown = socket.gethostname() if host in WILDCARDS else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    data_dir: Path | str | None = None,
    open_browser: bool = False,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
    *,
    max_storage_mb: float = DEFAULT_MAX_STORAGE_MB,
    allow_hosts: list[str] | None = None,
    token: str | None = None,
    use_token: bool = True,
    checkpoint_every: float = DEFAULT_CHECKPOINT_SECONDS,
) -> None:
    """Run the studio until interrupted (Ctrl-C or SIGTERM); the running job is checkpointed and,
    with those still waiting, resumes on the next start."""
    loopback = host in LOOPBACK_HOSTS
    token = (token or secrets.token_urlsafe(24)) if use_token and not loopback else None
    allowed = allowed_hosts(host, allow_hosts)
    try:  # bind first, so a busy port is one clear line rather than a uvicorn log and exit
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise PainterlyError(f"cannot listen on {host}:{port} ({reason}); pick another --port") from None
    with sock:
        app = create_app(
            data_dir, max_upload_mb=max_upload_mb, max_pixels=max_pixels, max_storage_mb=max_storage_mb,
            workers=workers, allowed_hosts=allowed, token=token, checkpoint_every=checkpoint_every,
        )  # fmt: skip
        import uvicorn

        class _Server(uvicorn.Server):
            def handle_exit(self, sig, frame) -> None:  # Ctrl-C or SIGTERM: end the open event streams
                app.state.broker.close()
                super().handle_exit(sig, frame)

        bound = sock.getsockname()[1]
        url = _url(host, bound)
        app.state.studio.lock.note(f"pid {os.getpid()}, {url}")
        say = lambda text: print(f"painterly studio: {text}", file=sys.stderr, flush=True)  # noqa: E731, T201
        _log_to_stderr()
        if not loopback:
            where = "every network interface" if host in WILDCARDS else host
            who = "anyone with the access token" if token else "ANYONE (no access token)"
            say(f"listening on {where}, port {bound}: {who} who can reach it can upload images, run jobs, and see "
                f"and delete every run and upload in {app.state.data_dir}")  # fmt: skip
            say(f"answering to the host names {', '.join(sorted(allowed))} (add others with --allow-host)")
        say(f"{_url(host, bound, token)}  (data in {app.state.data_dir}; Ctrl-C to stop)")
        if open_browser:
            local = f"http://127.0.0.1:{bound}/" if host in WILDCARDS else _url(host, bound, token)
            threading.Timer(1.0, webbrowser.open, (local,)).start()
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)
        _Server(config).run(sockets=[sock])


def _log_to_stderr() -> None:
    """The queue's notes (a job resumed, a checkpoint that did not fit) as plain lines on stderr."""
    logger = logging.getLogger("painterly.studio")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("painterly studio: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number of megabytes > 0, got {text!r}")
    return value


def _folder(text: str) -> Path:
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    return path


def build_parser() -> Parser:
    p = Parser(prog="painterly serve", description="Run the painterly web studio.")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to listen on (default: %(default)s, this machine only)")  # fmt: skip
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port, 0 for any free one (default: %(default)s)")
    p.add_argument("--data-dir", type=_folder, help="uploads, results and the gallery database (default: "
                   "$PAINTERLY_STUDIO_DIR or ~/.local/share/painterly/studio)")  # fmt: skip
    p.add_argument("--open", action="store_true", help="open the studio in a web browser")
    p.add_argument("--max-upload-mb", type=_megabytes, default=DEFAULT_MAX_UPLOAD_MB,
                   help="largest upload (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--max-pixels",
        type=count,
        default=DEFAULT_MAX_PIXELS,
        help="largest image (an input, or any size a run allocates) in pixels (default: %(default)s)",
    )
    p.add_argument("--max-storage-mb", type=_megabytes, default=DEFAULT_MAX_STORAGE_MB,
                   help="disk the uploads, results and checkpoints may use (default: %(default)s)")  # fmt: skip
    p.add_argument("--workers", type=count, default=1, help="jobs run at the same time (default: %(default)s)")
    p.add_argument("--checkpoint-every", type=seconds, default=DEFAULT_CHECKPOINT_SECONDS, metavar="SECONDS",
                   help="how often a running job saves where it stands (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="with --host: a name clients may reach the studio by (repeat; default: this machine's names)",
    )
    p.add_argument("--token", help="with --host: the access token (default: a new random one, printed at start)")
    p.add_argument(
        "--no-token", action="store_true", help="with --host: ask no token (anyone who can reach it can use it)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """``painterly serve [--host H] [--port P] [--data-dir D] [--open] ...``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.token is not None and (args.no_token or len(args.token) < 8):
        raise PainterlyError("--token must be at least 8 characters, and cannot go with --no-token")
    from ..threads import configure_threads

    configure_threads()  # before torch loads: OpenMP's short spin; each job looks at the free cores again
    serve(
        args.host, args.port, args.data_dir, args.open, args.max_upload_mb, args.max_pixels, args.workers,
        max_storage_mb=args.max_storage_mb, allow_hosts=args.allow_host, token=args.token,
        use_token=not args.no_token, checkpoint_every=args.checkpoint_every,
    )  # fmt: skip
    return 0
