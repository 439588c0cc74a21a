"""painterly: Gatys-style neural style transfer.

>>> import painterly
>>> result = painterly.stylize("content.jpg", "style.jpg", size=256)   # doctest: +SKIP
>>> painterly.save_image(result.image, "out.png")                       # doctest: +SKIP

Importing painterly loads torch and nothing heavier: no web framework, no plotting library.
"""

from .api import Result, score, stylize
from .config import Settings
from .errors import PainterlyError
from .image import load_image, save_image
from .optimize import Step

__all__ = ["PainterlyError", "Result", "Settings", "Step", "load_image", "save_image", "score", "stylize"]
__version__ = "0.1.0"
