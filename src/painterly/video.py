"""Video without flicker: each frame stylised by :func:`painterly.stylize`, tied to the one before.

Frame by frame, every optimisation finds its own arrangement of strokes and the picture boils.
Ruder, Dosovitskiy and Brox (2016, "Artistic style transfer for videos") fixed this for the
optimisation method, and this module follows them:

* the first frame gets the full coarse-to-fine schedule of its :class:`Settings`;
* every later frame starts from the previous *output* warped onto it by the optical flow between
  the two *content* frames (:mod:`painterly.flow`), and so needs only a single final scale with
  ``frame_iterations`` evaluations;
* a temporal term, weight · mean over pixels and channels of c · (x − warped previous)², keeps it
  where the flow is trusted (c, the forward-backward consistency mask; Ruder et al. eq. 7,
  the short-term term).

``temporal_weight=0`` gives independent frames: each one from scratch with the full schedule, as if
stylised alone (the comparison in ``benchmarks/video.py``).

The previous output is used as stored, 8 bits a channel (the frames folder's PNGs): a run that is
stopped or killed and resumed at the first missing frame then makes exactly the same frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import color, flow
from .api import Result, stylize
from .config import Settings
from .errors import InputError
from .image import DEFAULT_MAX_PIXELS, ImageLike, example_path, load_image, resize, resize_to

# The temporal weight is relative to the normalised seed terms. On the benchmark clip (256 px,
# docs/video.md) 200 cut the warping error to 0.05 of independent frames' with the style term 9 %
# lower; 2000 held the first frames tighter but broke down after four (style term up to 10x).
TEMPORAL_WEIGHT = 200.0
# Later frames start near their answer: a third of a first frame's evaluations (Ruder et al. give
# later frames fewer iterations too) at the final scale only.
FRAME_ITERATIONS = 100


def quantize(image: torch.Tensor) -> torch.Tensor:
    """``image`` as an 8-bit file holds it: what the next frame is tied to, in a fresh run or a resumed one."""
    return (image.clamp(0, 1) * 255.0).round() / 255.0


def fit(frame: torch.Tensor, size: int) -> torch.Tensor:
    """A content frame at the output's size, exactly as :func:`painterly.stylize` would fit it."""
    return resize(frame, size) if max(frame.shape[-2:]) != size else frame.clamp(0, 1)


def temporal_term(
    warped: torch.Tensor, mask: torch.Tensor, weight: float, *, luminance: bool = False
) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """``extra_terms`` for :func:`painterly.stylize`: {"temporal": weight · mean(c · (x − warped)²)}.

    ``warped`` ``(1, 3, H, W)`` is the previous output warped onto this frame, ``mask`` ``(H, W)``
    the consistency c. At another size (a coarser scale) both are resized to the image's. With
    ``luminance`` (``preserve_color="luminance"``, where the grey luma is optimised) the target is
    the warped frame's luma.
    """
    target_full = color.luminance(warped) if luminance else warped
    mask_full = mask.float()[None, None]
    cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def terms(image: torch.Tensor) -> dict[str, torch.Tensor]:
        size = (int(image.shape[-2]), int(image.shape[-1]))
        if size not in cache:
            target = resize_to(target_full, size) if size != tuple(target_full.shape[-2:]) else target_full
            c = mask_full if size == tuple(mask_full.shape[-2:]) else torch.nn.functional.interpolate(
                mask_full, size=size, mode="bilinear", align_corners=False)  # fmt: skip
            cache[size] = (target.to(image.device), c.to(image.device))
        target, c = cache[size]
        # Ruder et al. divide by D = H·W·C, the number of values: a mean, so the weight is size-free.
        return {"temporal": weight * (c * (image.float() - target).pow(2)).mean()}

    return terms


@dataclass
class Frame:
    """One stylised frame: ``image`` (8-bit exact, see :func:`quantize`), the engine's result, and
    the flow and mask that tied it to the previous frame (``None`` for a first or independent one)."""

    index: int
    image: torch.Tensor
    result: Result
    backward: torch.Tensor | None = None
    mask: torch.Tensor | None = None


@dataclass
class Previous:
    """What frame t needs of frame t-1: its content at the output size and its stored output."""

    content: torch.Tensor
    output: torch.Tensor


def stylize_frames(
    frames: Iterable[torch.Tensor],
    styles: ImageLike | Sequence[ImageLike],
    settings: Settings | None = None,
    *,
    temporal_weight: float = TEMPORAL_WEIGHT,
    frame_iterations: int = FRAME_ITERATIONS,
    masks: Callable[[int], Sequence[ImageLike | None] | None] | None = None,
    start: int = 0,
    previous: Previous | None = None,
    stop: Any = None,
    callback: Callable[[Any], None] | None = None,
) -> Iterator[Frame]:
    """Stylise ``frames`` (``(1, 3, H, W)`` tensors, in order) one by one, yielding each as it is done.

    ``frames`` are the clip's frames from index ``start`` on; resuming there, ``previous`` is
    frame ``start - 1``'s content and stored output. ``masks(index)`` gives that frame's masks (one
    per style). ``stop`` (a ``threading.Event``) ends the generator after the current frame's
    current evaluation; the unfinished frame is not yielded. ``callback`` gets every ``Step``.
    """
    s = (settings or Settings()).resolved()
    if not (temporal_weight >= 0 and temporal_weight != float("inf")):
        raise InputError(f"--temporal-weight must be a finite number >= 0, got {temporal_weight!r}")
    style_list = list(styles) if isinstance(styles, list | tuple) else [styles]
    limit = s.max_pixels or DEFAULT_MAX_PIXELS
    # Loaded once for the clip, not once a frame (stylize takes tensors as they are).
    style_images = [
        x if isinstance(x, torch.Tensor) else load_image(example_path(x), max_pixels=limit) for x in style_list
    ]
    grey_styles = all(color.is_grey(x) for x in style_images)
    later = None
    for index, frame in enumerate(frames, start):
        content = fit(frame, s.size)
        if later is None:  # on the clip's first frame: auto made concrete once, as the temporal term must know
            s = s.with_color_for(grey_styles, color.is_grey(content))
            later = dataclasses.replace(s, scales=(s.size,), iterations=frame_iterations)
        frame_masks = masks(index) if masks is not None else None
        backward = mask = None
        if temporal_weight > 0 and previous is not None:
            backward = flow.optical_flow(content, previous.content)
            forward = flow.optical_flow(previous.content, content)
            mask = flow.consistency(backward, forward)
            warped = flow.warp(previous.output, backward)
            extra = temporal_term(warped, mask, temporal_weight, luminance=s.preserve_color == "luminance")
            result = stylize(content, style_images, later, masks=frame_masks, init_image=warped, extra_terms=extra,
                             stop=stop, callback=callback)  # fmt: skip
        else:
            result = stylize(content, style_images, s, masks=frame_masks, stop=stop, callback=callback)
        if result.interrupted:
            return
        image = quantize(result.image)
        yield Frame(index, image, result, backward, mask)
        previous = Previous(content, image)
