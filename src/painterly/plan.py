"""The scale plan: which sizes a run optimises at, coarse to fine, and how many evaluations each gets.

One plan serves every part of painterly that needs to know the schedule: :func:`painterly.stylize`
runs it, the experiments count its evaluations, the studio and the progress line estimate the
time left from it. A scale too small for the network is skipped (a very wide or tall picture
starts its pyramid at the first scale it fits); a final scale too small is a one-line error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .config import Settings
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
    evaluations; each coarser one gets ``s.coarse_iterations``.
    """
    height, width = scaled(*shape, s.size)
    need = min_side(s.model_defaults().arch, (s.content_layer, *s.style_layers))
    sizes = s.scale_sizes()
    plans = []
    for longest in sizes:
        h, w = scaled(height, width, longest)
        final = longest == sizes[-1]
        if min(h, w) < need:
            if not final:
                continue
            raise InputError(f"at {longest} px {what} is {w}x{h}, smaller than the {need} px the network needs; "
                             "raise --size")  # fmt: skip
        plans.append(ScalePlan((h, w), s.iterations if final else s.coarse_iterations))
    return plans


def evaluations(plans: Sequence[ScalePlan]) -> int:
    """Evaluations in all scales."""
    return sum(p.evaluations for p in plans)


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
