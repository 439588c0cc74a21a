"""The studio's only contact with the engine: settings in, progress and a picture out.

The studio builds the same :class:`~painterly.config.Settings` as the CLI and the Python API; it
repeats no default. A web page may only set the keys in :data:`FORM_KEYS` (nothing that names a
file on the server: ``init`` is limited to ``content``/``noise``, ``weights`` to the pretrained
default or ``random``).
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config import MODEL_DEFAULTS, OPTIMIZERS, PRESERVE_COLOR, Settings
from ..errors import PainterlyError

FORM_KEYS = (
    "size",
    "iterations",
    "coarse_iterations",
    "content_weight",
    "style_weight",
    "tv_weight",
    "style_scale",
    "preserve_color",
    "model",
    "optimizer",
    "init",
    "seed",
    "weights",
    "style_blend_weights",
)
CHOICES: dict[str, tuple[Any, ...]] = {
    "preserve_color": PRESERVE_COLOR,
    "model": tuple(MODEL_DEFAULTS),
    "optimizer": OPTIMIZERS,
    "init": ("content", "noise"),
    "weights": (None, "random"),
}
PREVIEW_QUALITY = 85  # JPEG quality of live previews: small and quick, the result itself is PNG


@dataclass
class Outcome:
    """What a finished (or stopped) run hands back to the job queue."""

    image: Any  # CPU tensor (1, 3, H, W) in [0, 1]
    losses: dict[str, float]
    seconds: float
    interrupted: bool
    message: str = ""  # why the engine stopped early on its own (e.g. a loss that stayed non-finite)
    checkpoint: dict[str, Any] | None = None  # where a stopped run stands, to resume it from


class Runner(Protocol):
    """``runner(content, styles, settings, on_step, stop, resume=, on_checkpoint=, checkpoint_every=)``.

    ``resume`` is a checkpoint to continue from (None: start afresh); ``on_checkpoint(state)`` is
    called with a resumable state every ``checkpoint_every`` seconds, as :func:`painterly.stylize`
    does. Tests pass a fake one.
    """

    def __call__(
        self,
        content: Path,
        styles: list[Path],
        settings: Settings,
        on_step: Callable[[Any], None],
        stop: threading.Event,
        *,
        resume: dict[str, Any] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
        checkpoint_every: float = ...,
    ) -> Outcome: ...


def form_schema() -> dict[str, Any]:
    """Defaults, help and choices of the form fields, straight from ``Settings``."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    schema = {}
    for key in FORM_KEYS:
        f = fields[key]
        schema[key] = {"default": f.default, "help": f.metadata.get("help", ""), "choices": CHOICES.get(key)}
    model_defaults = {
        name: {"content_weight": d.content_weight, "style_weight": d.style_weight, "tv_weight": d.tv_weight}
        for name, d in MODEL_DEFAULTS.items()
    }
    return {"fields": schema, "model_defaults": model_defaults}


def build_settings(
    values: dict[str, Any],
    max_pixels: int,
    content_shape: tuple[int, int] | None = None,
    style_shapes: list[tuple[int, int]] | tuple = (),
) -> Settings:
    """``Settings`` from the page's values, checked before the job is accepted.

    Unknown or unsafe keys, values of the wrong type, non-finite or out-of-range numbers, per-style
    lists of the wrong length and any size the run would allocate past ``max_pixels`` (shapes are
    (H, W) of the inputs) are refused with one line naming the field.
    """
    settings = Settings.from_dict(values, allowed=FORM_KEYS)
    for key in ("init", "weights"):
        if getattr(settings, key) not in CHOICES[key]:
            raise PainterlyError(f"setting {key} must be one of {list(CHOICES[key])}, got {getattr(settings, key)!r}")
    settings.max_pixels = max_pixels  # the engine re-checks the input images against the studio's limit
    resolved = settings.resolved()  # validates every value, raising a one-line InputError
    if style_shapes:
        resolved.check_styles(len(style_shapes))
    resolved.check_pixels(max_pixels, content_shape, style_shapes)
    return settings


def settings_from_record(record: dict[str, Any]) -> Settings:
    """Rebuild stored settings, ignoring fields a newer or older ``Settings`` does not know."""
    return Settings.from_dict(record, ignore_unknown=True)


def run_engine(
    content: Path,
    styles: list[Path],
    settings: Settings,
    on_step: Callable[[Any], None],
    stop: threading.Event,
    *,
    resume: dict[str, Any] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: float = 60.0,
) -> Outcome:
    """Run :func:`painterly.stylize` (imported here so the studio loads without torch work)."""
    import painterly

    from ..threads import configure_threads, match_checkpoint

    # In this worker thread (OpenMP's thread count is the calling thread's): the cores free now, or
    # for a resumed job the count its first part ran on, so it ends on the uninterrupted pixels.
    configure_threads(look_again=True)
    match_checkpoint(resume)

    result = painterly.stylize(
        content, styles, settings, callback=on_step, stop=stop, resume=resume,
        on_checkpoint=on_checkpoint, checkpoint_every=checkpoint_every,
    )  # fmt: skip
    losses = dict(result.losses)
    return Outcome(
        result.image, losses, float(result.seconds), bool(result.interrupted), result.message, result.checkpoint()
    )


def to_pil(image: Any):
    """An RGB PIL image from a (1, 3, H, W) tensor in [0, 1]."""
    from ..image import to_pil as convert

    return convert(image)


def jpeg_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="JPEG", quality=PREVIEW_QUALITY)
    return buffer.getvalue()


def save_result(image: Any, path: Path) -> None:
    """Save the result as PNG, atomically (through the engine's own writer)."""
    from ..image import save_image

    save_image(image, path)
