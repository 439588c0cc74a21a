"""The scale plan: which sizes a run optimises at, coarse to fine, and how many evaluations each gets.

One plan serves every part of painterly that needs to know the schedule: :func:`painterly.stylize`
runs it, the experiments count its evaluations, the studio and the progress line estimate the
time left from it. A scale too small for the network is skipped (a very wide or tall picture
starts its pyramid at the first scale it fits), and so is a coarse scale whose shorter side is
under :func:`least_coarse_side`; a final scale too small is a one-line error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import TAPER_EXPONENT, Settings
from .errors import InputError
from .layers import min_side


@dataclass(frozen=True)
class ScalePlan:
    """One scale of a run: the image's (height, width) there and the evaluations it gets."""

    size: tuple[int, int]
    evaluations: int


def scaled(height: int, width: int, longest: int) -> tuple[int, int]:
    """(height, width) with the longest side ``longest``, the aspect ratio kept (at least 1 px)."""
    ratio = longest / max(height, width)
    return max(1, round(height * ratio)), max(1, round(width * ratio))


def plan_scales(s: Settings, shape: tuple[int, int], *, what: str = "the content") -> list[ScalePlan]:
    """The scales of a run of resolved settings ``s`` on a picture of (height, width) ``shape``.

    The last scale is the output (its longest side ``s.size``) and gets ``s.iterations``
    evaluations; each coarser one gets ``s.coarse_iterations``; with ``s.taper`` (the default) a
    scale over :data:`FINE_PIXELS` gets fewer (:func:`fine_evaluations`).
    """
    height, width = scaled(*shape, s.size)
    need = min_side(s.model_defaults().arch, (s.content_layer, *s.style_layers))
    sizes = s.scale_sizes()
    thin = 0 if s.scales else least_coarse_side(s)
    plans = []
    for longest in sizes:
        h, w = scaled(height, width, longest)
        final = longest == sizes[-1]
        if min(h, w) < need or (not final and min(h, w) < thin):
            if not final:
                continue
            raise InputError(f"at {longest} px {what} is {w}x{h}, smaller than the {need} px the network needs; "
                             "raise --size")  # fmt: skip
        n = s.iterations if final else s.coarse_iterations
        plans.append(ScalePlan((h, w), fine_evaluations(n, h * w, s.taper_exponent) if s.taper else n))
    return plans


def least_coarse_side(s: Settings) -> int:
    """The shortest side a coarse scale of the ladder may have: one step below the start size.

    The start size is the first scale's longest side; a wide or tall picture would start with a
    short side far under it (a 5:1 strip 50 px tall at 256 px, a 2:1 sky 128 px), where the
    subject is again too small for the content tap to hold and the coarse scales paint the
    style's large structures over it, as a square did at a 128 px start (docs/quality.md). Such
    a scale is skipped: the ladder starts later, or at the output itself. Pictures up to 4:3 (and
    3:4) keep the whole ladder at the default; ``--scales`` is taken as given."""
    return round(s.start_size / s.scale_step)


# A scale with more pixels than FINE_PIXELS only sharpens what the coarser ones laid out: its
# evaluations are the settings' count times (FINE_PIXELS / pixels) ** exponent, at least a floor
# (fine_floor). Pictures up to 1024x1024 (the 512 px default among them) keep the settings' counts
# exactly. The default exponent, TAPER_EXPONENT = 1.0, keeps each tapered scale's time (evaluations x
# pixels) about constant: at 2048 px its 44-50 final-scale evaluations looked as good as 0.5's 81-87 on
# a landscape and a portrait (BENCHMARKS.md, "Print size, ninth session"), at about 0.56x that scale's
# time. FINE_EXPONENT = 0.5, the default until then, halves the evaluations each time a scale's pixels
# grow 4x, as jcjohnson's multi-scale scripts do (500/200/100/50), at least FINE_MIN. A print in limited time
# asks for more (--taper-exponent, e.g. 1.5, STRONG_EXPONENT, at least STRONG_MIN): each finer scale's
# time (evaluations x pixels) then falls as the square root of its pixels instead of growing with them.
# 4096x3072 gets 27, 10, 4 and 4 evaluations at 1448, 2048, 2896 and 4096 px (383 evaluations and
# ~1620 megapixel-evaluations of work at 0.5, 295 and ~320 at 1.5, of which the coarse ladder's 76),
# a 2048 px picture 27 and 29, a 1448 px one 82 at its final scale (BENCHMARKS.md, "Print size,
# seventh session"). 1.5 is an option, not the default (BENCHMARKS.md, "Print size, eighth session").
# At 1.0 the 4096x3072 ladder is 33, 17, 8 and 12 (~383 megapixel-evaluations, the floor 7 not reached).
FINE_PIXELS = 1024 * 1024
FINE_EXPONENT = 0.5
FINE_MIN = 10
STRONG_EXPONENT = 1.5
STRONG_MIN = 4


def fine_floor(exponent: float) -> int:
    """The fewest evaluations a tapered scale gets at taper ``exponent``: :data:`FINE_MIN` up to
    :data:`FINE_EXPONENT`, :data:`STRONG_MIN` from :data:`STRONG_EXPONENT` on, on the straight line
    between them in between, rounded (0.6: 9.4, so 9; 1.0: 7). The two schedules compared by eye keep
    their floors, and an exponent a little over 0.5 no longer drops the floor from 10 to 4."""
    t = min(1.0, max(0.0, (exponent - FINE_EXPONENT) / (STRONG_EXPONENT - FINE_EXPONENT)))
    return round(FINE_MIN + (STRONG_MIN - FINE_MIN) * t)


def fine_evaluations(evaluations: int, pixels: int, exponent: float = TAPER_EXPONENT) -> int:
    """Evaluations for a scale of ``pixels`` whose settings ask for ``evaluations``, tapered by ``exponent``."""
    floor = fine_floor(exponent)
    if pixels <= FINE_PIXELS or evaluations <= floor:
        return evaluations
    return max(floor, round(evaluations * (FINE_PIXELS / pixels) ** exponent))


def evaluations(plans: Sequence[ScalePlan]) -> int:
    """Evaluations in all scales."""
    return sum(p.evaluations for p in plans)


def modelled_seconds(plans: Sequence[ScalePlan], seconds_at: Callable[[tuple[int, int]], float], scale: int = 0,
                     done: int = 0) -> float:  # fmt: skip
    """Time the scales from ``scale`` on still need (``done`` of its evaluations finished), by a
    model of one evaluation's seconds at each (height, width): ``seconds_at``."""
    left = sum(max(0, p.evaluations - (done if i == scale else 0)) * seconds_at(p.size)
               for i, p in enumerate(plans) if i >= scale)  # fmt: skip
    return max(0.0, float(left))


def seconds_left(plans: Sequence[ScalePlan], scale: int, done: int, seconds_per_evaluation: float) -> float:
    """Time the run still needs when ``done`` evaluations of scale ``scale`` are finished.

    ``seconds_per_evaluation`` is the rate measured at that scale; an evaluation costs in
    proportion to its pixels, so the scales to come are weighted by their pixel count relative to
    this one's.
    """
    if not 0 <= scale < len(plans):
        return 0.0
    here = plans[scale].size[0] * plans[scale].size[1]
    work = max(0, plans[scale].evaluations - done)
    work += sum(p.evaluations * p.size[0] * p.size[1] / here for p in plans[scale + 1 :])
    return max(0.0, seconds_per_evaluation * work)
