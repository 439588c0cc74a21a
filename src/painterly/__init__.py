"""painterly: Gatys-style neural style transfer.

>>> import painterly
>>> result = painterly.stylize("content.jpg", "style.jpg", size=256)   # doctest: +SKIP
>>> painterly.save_image(result.image, "out.png")                       # doctest: +SKIP

Importing painterly loads torch and nothing heavier: no web framework, no plotting library.
Its one side effect: unless already set, ``MKL_CBWR=AUTO`` asks Intel MKL for the same kernels on
every run (measured free of cost here), so a seed gives the same pixels and a resumed run equals
an uninterrupted one. It only takes effect if painterly is imported before torch first runs MKL.
On Linux, :func:`stylize` also raises glibc's malloc thresholds for the process (freed blocks are
reused instead of returned and faulted in again, ~20 % of a CPU evaluation) and trims the heap
when it returns (see :func:`painterly.device.reuse_freed_memory`).
"""

import os

os.environ.setdefault("MKL_CBWR", "AUTO")

from .api import Result, score, stylize  # noqa: E402
from .config import Settings  # noqa: E402
from .errors import PainterlyError  # noqa: E402
from .image import load_image, save_image  # noqa: E402
from .optimize import Step  # noqa: E402

__all__ = ["PainterlyError", "Result", "Settings", "Step", "load_image", "save_image", "score", "stylize"]
__version__ = "0.1.0"
