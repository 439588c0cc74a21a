"""painterly: Gatys-style neural style transfer.

>>> import painterly
>>> result = painterly.stylize("content.jpg", "style.jpg", size=256)   # doctest: +SKIP
>>> painterly.save_image(result.image, "out.png")                       # doctest: +SKIP

Importing painterly has no side effects: it changes no environment variable, no random seed
and no allocator setting, and it imports torch only when one of the names below is first used
(so ``painterly --help`` answers at once). Two process-wide settings make runs reproducible and
faster, and the ``painterly`` command sets both for its own process; a program of your own may
do the same:

* ``MKL_CBWR=AUTO`` in the environment before torch first runs MKL: MKL's default kernels differ
  in the last bits between processes, so without it the same seed can give different pixels and
  a resumed run can differ from an uninterrupted one;
* :func:`painterly.device.reuse_freed_memory` around the runs: glibc keeps freed blocks for
  reuse instead of faulting them in again (about 20 % of a CPU evaluation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["PainterlyError", "Result", "Settings", "Step", "batch", "load_image", "save_image", "score", "stylize"]

_HOMES = {
    "batch": "batch",  # the module itself, callable: painterly.batch(...) runs painterly.batch.batch
    "Result": "api",
    "score": "api",
    "stylize": "api",
    "Settings": "config",
    "PainterlyError": "errors",
    "load_image": "image",
    "save_image": "image",
    "Step": "optimize",
}

if TYPE_CHECKING:
    from . import batch
    from .api import Result, score, stylize
    from .config import Settings
    from .errors import PainterlyError
    from .image import load_image, save_image
    from .optimize import Step


def __getattr__(name: str) -> Any:
    """Import the public names on first use (PEP 562)."""
    if name not in _HOMES:
        raise AttributeError(f"module 'painterly' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f".{_HOMES[name]}", __name__)
    value = module if name == "batch" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
