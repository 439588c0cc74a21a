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
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# runner(content, styles, settings, on_step, stop) -> Outcome; tests pass a fake one.
Runner = Callable[[Path, list[Path], Settings, Callable[[Any], None], threading.Event], Outcome]


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


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Turn a JSON/form value into the type ``Settings`` declares, or raise PainterlyError."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        if value is None or value == "":
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is int and not isinstance(value, bool):
            number = float(value)
            if number.is_integer():
                return int(number)
        elif hint is float and not isinstance(value, bool):
            return float(value)
        elif hint in (str, bool) and isinstance(value, hint):
            return value
        elif typing.get_origin(hint) is tuple and isinstance(value, list | tuple):
            return tuple(_coerce(key, v, typing.get_args(hint)[0]) for v in value)
    except (TypeError, ValueError):
        pass
    raise PainterlyError(f"setting {key!r} must be of type {getattr(hint, '__name__', hint)}, got {value!r}")


def build_settings(values: dict[str, Any], max_pixels: int) -> Settings:
    """``Settings`` from the page's values; unknown or unsafe keys are refused with one line."""
    unknown = sorted(set(values) - set(FORM_KEYS))
    if unknown:
        raise PainterlyError(f"the studio does not accept setting(s) {unknown}; allowed: {', '.join(FORM_KEYS)}")
    hints = typing.get_type_hints(Settings)
    kwargs = {key: _coerce(key, value, hints[key]) for key, value in values.items()}
    for key in ("init", "weights"):
        if key in kwargs and kwargs[key] not in CHOICES[key]:
            raise PainterlyError(f"setting {key!r} must be one of {list(CHOICES[key])}, got {kwargs[key]!r}")
    if "max_pixels" in {f.name for f in dataclasses.fields(Settings)}:
        kwargs["max_pixels"] = max_pixels  # the engine re-checks inputs against the studio's limit
    settings = Settings(**kwargs)
    settings.resolved()  # validates every value, raising a one-line InputError
    if settings.size**2 > max_pixels:
        raise PainterlyError(
            f"size {settings.size} px would make up to {settings.size**2 / 1e6:.1f} Mpx; the studio's limit "
            f"is {max_pixels / 1e6:.1f} Mpx"
        )
    return settings


def settings_from_record(record: dict[str, Any]) -> Settings:
    """Rebuild stored settings, ignoring fields a newer or older ``Settings`` does not know."""
    names = {f.name for f in dataclasses.fields(Settings)}
    # JSON has no tuples: the sequences Settings keeps as tuples come back as lists.
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k in names}
    return Settings(**kwargs)


def time_left(settings: Settings, step: Any, seconds_per_evaluation: float) -> float:
    """Seconds the run still needs, from the rate measured at the current scale.

    Each coarser scale runs ``coarse_iterations`` evaluations and the final one ``iterations`` (as
    ``Settings`` documents), and an evaluation costs in proportion to its pixels, so the scales
    still to come are weighted by (their side / the current side)². Falls back to the plain rate
    when the step does not match that plan.
    """
    sides = settings.scale_sizes()
    counts = [settings.iterations if side == settings.size else settings.coarse_iterations for side in sides]
    if len(sides) != step.scales or sum(counts) != step.total or not 0 <= step.scale < len(sides):
        return max(0.0, seconds_per_evaluation * (step.total - step.iteration))
    here = step.scale
    left_here = sum(counts[: here + 1]) - step.iteration
    later = sum(n * (side / sides[here]) ** 2 for n, side in zip(counts[here + 1 :], sides[here + 1 :]))
    return max(0.0, seconds_per_evaluation * (left_here + later))


def run_engine(
    content: Path,
    styles: list[Path],
    settings: Settings,
    on_step: Callable[[Any], None],
    stop: threading.Event,
) -> Outcome:
    """Run :func:`painterly.stylize` (imported here so the studio loads without torch work)."""
    import painterly

    result = painterly.stylize(content, styles, settings, callback=on_step, stop=stop)
    losses = dict(result.losses)
    return Outcome(result.image, losses, float(result.seconds), bool(result.interrupted), result.message)


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
