"""``painterly serve``: a local web studio on top of the engine.

Start it with :func:`serve` (blocking) or build the ASGI app with :func:`create_app` (tests).
Starlette and uvicorn are imported only inside these functions, so ``import painterly`` never
needs them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette

DEFAULT_HOST = "127.0.0.1"  # never the LAN unless asked: the studio has no accounts
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_PIXELS = 25_000_000  # 25 Mpx: a 6000x4000 photo fits, a decompression bomb does not
DEFAULT_MAX_STORAGE_MB = 5000.0  # uploads, results and checkpoints together: hundreds of runs
DEFAULT_CHECKPOINT_SECONDS = 60.0  # a stopped or killed server loses at most this much of a running job


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
    max_storage_mb: float = DEFAULT_MAX_STORAGE_MB,
    workers: int = 1,
    runner: Any = None,
    allowed_hosts: frozenset[str] | None = None,
    token: str | None = None,
    checkpoint_every: float = DEFAULT_CHECKPOINT_SECONDS,
) -> Starlette:
    """The studio as a Starlette app keeping uploads, results and its database in ``data_dir``.

    ``runner`` replaces the engine (tests); ``allowed_hosts`` limits the Host header (None: any);
    ``token`` is asked of clients not on this machine (None: none is).
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
        max_storage_mb=max_storage_mb,
        workers=workers,
        allowed_hosts=allowed_hosts,
        token=token,
        checkpoint_every=checkpoint_every,
        **extra,
    )


def serve(*args: Any, **kwargs: Any) -> None:
    """Run the studio until interrupted; see :func:`painterly.studio.server.serve`."""
    from .server import serve as run

    run(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """``painterly serve ...``; see :func:`painterly.studio.server.main`."""
    from .server import main as run

    return run(argv)
