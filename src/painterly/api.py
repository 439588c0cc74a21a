"""The Python API: :func:`stylize` and :func:`score`. The CLI, the studio, batches and video are
thin layers on these.

A run, top to bottom: the settings are resolved and checked; the inputs are read
(:mod:`painterly.image`); the scale plan is made (:mod:`painterly.plan`); the device and the
arithmetic are chosen once and the network built (:mod:`painterly.network`); the
:class:`~painterly.objective.Problem` holds the targets and the weights; the loop
(:mod:`painterly.optimize`) moves the pixels. Nothing here changes process-wide state: no
environment variable, no global random seed, no allocator setting (the CLI sets those it wants).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from . import checkpoint as ckpt
from . import color
from .config import Settings
from .device import large_blocks_returned, memory_guard, resolve_device
from .errors import InputError
from .image import DEFAULT_MAX_PIXELS, ImageLike, as_image, as_mask, resize, resize_to
from .network import build_network, resolve_precision
from .objective import Problem
from .optimize import Step, Terms, run_scales, upsample
from .plan import ScalePlan, plan_scales, scaled


@dataclass
class Result:
    """What :func:`stylize` hands back. ``image`` is CPU (1, 3, H, W) in [0, 1].

    ``losses`` are the last evaluation's terms: the seed's raw ``content``, ``style`` (Σ_l w_l
    L_style^l), each layer's ``style:<layer>``, ``tv``, any extra terms, and the ``total`` that was
    optimised; ``weights`` says how they were weighed (α, β, γ, w_l and the normalisers).
    """

    image: torch.Tensor
    losses: dict[str, float]
    history: list[dict[str, float]]
    seconds: float
    evaluations: int
    settings: Settings
    weights: dict[str, Any]
    interrupted: bool = False
    message: str = ""
    _checkpoint: dict[str, Any] | None = field(default=None, repr=False)

    def checkpoint(self) -> dict[str, Any] | None:
        """State to resume an interrupted run from (``None`` for a finished one)."""
        return self._checkpoint


def stylize(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    settings: Settings | None = None,
    *,
    masks: Sequence[ImageLike | None] | None = None,
    callback: Callable[[Step], None] | None = None,
    stop: threading.Event | None = None,
    resume: dict[str, Any] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: float = 300.0,
    init_image: ImageLike | None = None,
    extra_terms: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None,
    **overrides: Any,
) -> Result:
    """Paint ``content`` in the style of ``styles``; see :class:`Settings` for every option.

    ``masks`` (one per style, content-space, white = this style applies) give spatial control via
    guided Gram matrices; ``callback`` receives a :class:`Step` after every evaluation; setting
    ``stop`` returns promptly with ``interrupted=True`` and a checkpoint that ``resume`` accepts.
    ``on_checkpoint`` receives such a checkpoint every ``checkpoint_every`` seconds while the run
    goes on (the CLI writes it to ``OUT.ckpt``), so even a run that is killed can be resumed.

    ``init_image`` (a file or a tensor) starts the first scale from that picture, whatever
    ``settings.init`` says (video starts each frame from the previous output, warped).
    ``extra_terms(image)`` returns further *weighted* terms by name (a video's temporal term); each
    is added to the total that is optimised and reported beside the seed's terms. It is called at
    every scale with the image being optimised, so it must fit its targets to ``image``'s size.
    """
    s = dataclasses.replace(settings or Settings(), **overrides).resolved()
    if resume is not None:
        ckpt.check_settings(resume, s)
    # Inside the painterly command's reuse_freed_memory the set-up's whole-picture temporaries (read,
    # resized, measured once, on the CPU) are handed back as they go: kept, they left holes in the
    # heap that a tiled scale's small blocks then spread over (BENCHMARKS.md, "Print size, fourth session").
    with large_blocks_returned(torch.device("cpu")):
        content_full = resize(as_image(content, "content", s.max_pixels), s.size)
        what = "the content" if isinstance(content, torch.Tensor) else f"content {content}"
        plans = plan_scales(s, tuple(content_full.shape[-2:]), what=what)  # checked before any work
        working_on = [plans[-1].size]  # the size being worked on, for an out-of-memory message
        with memory_guard(lambda: working_on[0]):
            problem = build_problem(content_full, styles, s, masks)
            if s.memory_budget is not None:  # a budget no tile fits: one line, before any painting
                from .tiling import tile_for

                for p in plans:
                    tile_for(s, p.size, problem.device)
    # A checkpoint records the settings as asked, so a resume with --preserve-color auto matches it;
    # the run and its Result use the problem's, where auto is made concrete (luminance for grey styles).
    asked, s = s, problem.settings
    inputs = ckpt.fingerprint([problem.content, *problem.styles, *(m for m in problem.masks or () if m is not None)])
    if resume is not None:
        ckpt.check_inputs(resume, inputs, plans)
    start = None if init_image is None else as_image(init_image, "init image", s.max_pixels)

    coarse_layer_weights = s.coarse_layer_weights()

    def objective(index: int) -> Terms:
        working_on[0] = plans[index].size
        weights = None
        if index < len(plans) - 1 and s.coarse_content_weight != 1:  # α × this at the coarser scales
            weights = dataclasses.replace(problem.weights, alpha=problem.weights.alpha * s.coarse_content_weight)
        if index < len(plans) - 1 and coarse_layer_weights is not None:  # w_l at the coarser scales
            layer_weights = dict(zip(s.style_layers, coarse_layer_weights))
            weights = dataclasses.replace(weights or problem.weights, layer_weights=layer_weights)
        return _with_extra(problem.objective_at(plans[index].size, weights), extra_terms)

    def detail(coarse: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """The content's high frequencies a scale of size ``coarse`` could not hold: content − up(down(content))."""
        return resize_to(problem.content, size) - upsample(resize_to(problem.content, coarse), size)

    emit = callback
    if callback is not None and s.preserve_color == "luminance":

        def emit(step: Step) -> None:
            callback(dataclasses.replace(step, image=color.with_chroma_of(step.image, content_full)))

    def save(state: dict[str, Any]) -> None:
        on_checkpoint(ckpt.make_checkpoint(asked, inputs, state))

    seconds_at = None
    if callback is not None and _long(plans):
        with memory_guard(lambda: working_on[0]):
            seconds_at = time_model(problem)

    with memory_guard(lambda: working_on[0]):
        out = run_scales(
            plans, objective, lambda size: _start(s, problem, start, size), device=problem.device,
            optimizer=s.optimizer, lr=s.learning_rate, history_size=s.history_size, callback=emit, stop=stop,
            resume=resume, checkpoint_every=checkpoint_every,
            on_checkpoint=None if on_checkpoint is None else save, average=s.iterate_average,
            detail=detail if s.carry_detail else None, carry_blur=s.carry_blur, seconds_at=seconds_at,
        )  # fmt: skip
    image = color.with_chroma_of(out.image, content_full) if s.preserve_color == "luminance" else out.image
    final = ckpt.make_checkpoint(asked, inputs, out.state()) if out.interrupted and out.params is not None else None
    return Result(image, out.losses, out.history, out.position.elapsed, out.position.iteration, s,
                  problem.weights.to_dict(), out.interrupted, out.message, final)  # fmt: skip


def score(
    image: ImageLike,
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    settings: Settings | None = None,
    *,
    masks: Sequence[ImageLike | None] | None = None,
    size: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The objective for ``image``, term by term, as :func:`stylize` optimises it.

    The image is scored at its own size (``settings.size`` is not used), or with ``size`` resized
    to that longest side first; the content and masks are fitted to it as a run of that size
    fits them. The report holds the seed's raw terms (``content``,
    ``style`` = Σ_l w_l L_style^l, ``tv``, and ``style_layers``: L_style^l by layer), the
    ``weights`` as given (α, β, γ, w_l), the ``normalizers`` N (all 1 with ``normalize`` off) and
    the ``total`` optimised, α/N_c·content + β·Σ_l (w_l/N_l)·L_style^l + γ/N_tv·tv; with a Laplacian
    term (``laplacian_weight`` > 0) also ``laplacian`` (Σ_p L_lap,p, raw) and its λ · mean_p L_lap,p/N_p
    in the total.

    The style term is always the seed's Gram term (``style_loss`` is taken as "gram"), so scores of
    runs with either style loss compare; the ``total`` is then the Gram objective's.
    """
    img = as_image(image, "image")
    img = img if size is None else resize(img, size)
    s = dataclasses.replace(settings or Settings(), **overrides, size=max(img.shape[-2:]), scales=None)
    s = dataclasses.replace(s, style_loss="gram").resolved()
    h, w = img.shape[-2:]
    plan_scales(dataclasses.replace(s, scales=(s.size,)), (h, w), what="the image")  # big enough for the network?
    problem = build_problem(resize_to(as_image(content, "content", s.max_pixels), (h, w)), styles, s, masks)
    if problem.settings.preserve_color == "luminance":  # auto made concrete by the problem
        img = color.luminance(img)
    with torch.no_grad():
        terms = {k: float(v) for k, v in problem.objective_at((h, w))(img.to(problem.device)).items()}
    weights = problem.weights.to_dict()
    normalizers = weights.pop("normalizers")
    extra = {k: terms[k] for k in ("laplacian", "lowpass") if k in terms}  # only where they are on
    return {
        "content": terms["content"],
        "style": terms["style"],
        "tv": terms["tv"],
        **extra,
        "total": terms["total"],
        "style_layers": {layer: terms[f"style:{layer}"] for layer in s.style_layers},
        "weights": weights,
        "normalizers": normalizers,
        "normalize": s.normalize,
        "width": w,
        "height": h,
        "model": s.model,
    }


def build_problem(
    content: torch.Tensor,
    styles: ImageLike | Sequence[ImageLike],
    s: Settings,
    masks: Sequence[ImageLike | None] | None = None,
) -> Problem:
    """The :class:`Problem` of a run with resolved settings ``s`` and ``content`` at the output's
    size: the styles and masks are read, the device and the arithmetic chosen (once, here), the
    network built (its weights are cached for the process)."""
    style_list = list(styles) if isinstance(styles, list | tuple) else [styles]
    if not style_list:
        raise InputError("at least one style image is needed")
    style_images = [as_image(x, "style", s.max_pixels) for x in style_list]
    # Every size the run will allocate (each scale, each style at its scale) within the pixel limit.
    s.check_pixels(s.max_pixels or DEFAULT_MAX_PIXELS, tuple(content.shape[-2:]), [x.shape[-2:] for x in style_images])
    mask_list = None if masks is None else [as_mask(m, s.max_pixels) for m in masks]
    device = resolve_device(s.device)
    net = build_network(s, device, resolve_precision(s.precision, device))
    return Problem.build(net, content, style_images, s, mask_list, device)


# A run whose final scale has at least this many pixels gets a time model (the progress line's
# estimate before and during the run): one evaluation at CALIBRATE_SIDE px is timed first (~0.5 s).
ESTIMATE_ABOVE_PIXELS = 1_000_000
CALIBRATE_SIDE = 512


def _long(plans: Sequence[ScalePlan]) -> bool:
    return plans[-1].size[0] * plans[-1].size[1] >= ESTIMATE_ABOVE_PIXELS


def time_model(problem: Problem) -> Callable[[tuple[int, int]], float]:
    """seconds_at((height, width)): one evaluation's seconds, modelled from a timed one at
    :data:`CALIBRATE_SIDE` px (the faster of two: the first pays one-off set-up), in proportion to
    the pixels, times the measured cost of recomputing (above the network's recompute size) or of
    the tiled evaluation where the run tiles (BENCHMARKS.md, "Print size")."""
    import copy
    import time

    from . import tiling
    from .network import RECOMPUTE_COST
    from .tiling import TILED_COST, tile_for

    s = problem.settings
    height, width = problem.content.shape[-2:]
    ref = scaled(height, width, min(CALIBRATE_SIDE, max(height, width)))
    untiled = copy.copy(problem)
    untiled.settings = dataclasses.replace(s, tile=0)
    objective = untiled.objective_at(ref)
    start = resize_to(problem.content, ref).to(problem.device)
    times = []
    for _ in range(2):
        x = start.clone().requires_grad_(True)
        began = time.perf_counter()
        objective(x)["total"].backward()
        times.append(time.perf_counter() - began)
    per_pixel = min(times) / (ref[0] * ref[1])

    def seconds_at(size: tuple[int, int]) -> float:
        pixels = size[0] * size[1]
        if tile_for(s, size, problem.device):
            factor = TILED_COST
            if pixels > tiling.RECOMPUTE_TARGET_ABOVE:  # each tile's content target recomputed
                cost = tiling.RECOMPUTE_TARGET_COST
                factor *= cost.get(problem.net.compute_dtype, cost[torch.float32])
        else:
            factor = RECOMPUTE_COST if tiling.recompute_for(s, size, problem.device) else 1.0
        return per_pixel * pixels * factor

    return seconds_at


def _start(s: Settings, problem: Problem, start: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
    """The first scale's starting image: ``init_image``, the content, seeded noise or an init file."""
    if start is None and s.init == "content":
        return resize_to(problem.content, size)
    if start is None and s.init == "noise":
        return torch.rand((1, 3, *size), generator=torch.Generator().manual_seed(s.seed))
    picture = resize_to(start if start is not None else as_image(s.init, "init image", s.max_pixels), size)
    return color.luminance(picture) if s.preserve_color == "luminance" else picture


def _with_extra(terms: Terms, extra_terms: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None) -> Terms:
    if extra_terms is None:
        return terms

    def with_extra(image: torch.Tensor) -> dict[str, torch.Tensor]:
        seed_terms = terms(image)
        extra = extra_terms(image)
        total = seed_terms.pop("total") + sum(extra.values())
        return {**seed_terms, **extra, "total": total}

    with_extra.tiled = getattr(terms, "tiled", None)  # type: ignore[attr-defined]  (run_scales looks)
    return with_extra
