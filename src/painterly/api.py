"""The Python API: :func:`stylize` and :func:`score`. The CLI and the studio are thin layers on these."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from . import color
from .config import Settings
from .device import resolve_device, reuse_freed_memory
from .errors import InputError, OutOfMemory
from .image import load_image, resize, resize_to
from .network import VGGFeatures, layer_names, resolve_precision
from .objective import Objective
from .optimize import CHECKPOINT_VERSION, ScalePlan, Step, run_scales

ImageLike = str | Path | torch.Tensor


@dataclass
class Result:
    """What :func:`stylize` hands back. ``image`` is CPU (1, 3, H, W) in [0, 1]."""

    image: torch.Tensor
    losses: dict[str, float]
    history: list[dict[str, float]]
    seconds: float
    evaluations: int
    settings: Settings
    weights: dict[str, Any]  # α, β, γ and w_l as applied (see Problem._effective_weights)
    interrupted: bool = False
    message: str = ""
    _checkpoint: dict[str, Any] | None = field(default=None, repr=False)

    def checkpoint(self) -> dict[str, Any] | None:
        """State to resume an interrupted run from (``None`` for a finished one)."""
        return self._checkpoint


def _as_image(value: ImageLike, what: str, max_pixels: int | None = None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.dim() == 3:
            value = value.unsqueeze(0)
        if value.dim() != 4 or value.shape[1] != 3:
            raise InputError(f"{what} tensor must have shape (1, 3, H, W), got {tuple(value.shape)}")
        return value.float().clamp(0, 1)
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    return load_image(example_path(value), **kwargs)


EXAMPLES = Path(__file__).parent / "examples"


def example_path(value: str | Path) -> str | Path:
    """``example:NAME`` names an image shipped with painterly (see ``painterly/examples``)."""
    if isinstance(value, str) and value.startswith("example:"):
        name = value.removeprefix("example:")
        matches = sorted(EXAMPLES.glob(f"{name}.*")) if name and "/" not in name else []
        if not matches:
            known = ", ".join(sorted(p.stem for p in EXAMPLES.glob("*.jpg")))
            raise InputError(f"no shipped example {name!r}; examples: {known}")
        return matches[0]
    return value


def _as_mask(value: ImageLike | None) -> torch.Tensor | None:
    if value is None:
        return None
    mask = _as_image(value, "mask") if not isinstance(value, torch.Tensor) or value.shape[-3] == 3 else value
    if mask.dim() == 3:
        mask = mask.unsqueeze(0)
    return mask.mean(dim=1, keepdim=True).float() if mask.shape[1] != 1 else mask.float()


@lru_cache(maxsize=2)
def _weights(model: str, weights: str | None, seed: int) -> dict[str, torch.Tensor]:
    from .weights import load_weights

    return load_weights(model, weights, seed=seed)


def build_network(s: Settings, device: torch.device) -> VGGFeatures:
    """The frozen, truncated network a resolved :class:`Settings` asks for."""
    taps = list(dict.fromkeys([s.content_layer, *s.style_layers]))
    net = VGGFeatures(s.model_defaults().arch, taps, _weights(s.model, s.weights, s.seed))
    net.compute_dtype = resolve_precision(s.precision, device)
    return net.to(device).to(memory_format=torch.channels_last)


def _fit(image: torch.Tensor, longest: int) -> torch.Tensor:
    return resize(image, longest) if max(image.shape[-2:]) != longest else image


@dataclass
class Problem:
    """Everything a run's objective needs, built once: network, images in the network's colour
    space, style blend, masks and the effective weights. :meth:`objective_at` gives the
    objective at any output size; stylize and score both use it, so they cannot disagree."""

    settings: Settings
    net: VGGFeatures
    content: torch.Tensor  # at the output's size, as the network sees it (luminance if asked)
    styles: list[torch.Tensor]
    blend: tuple[float, ...]
    masks: list[torch.Tensor | None] | None
    weights: dict[str, Any]
    device: torch.device

    @classmethod
    def build(cls, content: torch.Tensor, styles: Sequence[ImageLike], s: Settings, masks=None) -> Problem:
        if not styles:
            raise InputError("at least one style image is needed")
        blend = s.style_blend_weights or (1.0,) * len(styles)
        if len(blend) != len(styles):
            raise InputError(f"--style-blend-weights has {len(blend)} values for {len(styles)} style images")
        if masks is not None and len(masks) != len(styles):
            raise InputError(f"{len(masks)} masks given for {len(styles)} style images")
        device = resolve_device(s.device)
        style_full = [_as_image(x, "style", s.max_pixels) for x in styles]
        if s.preserve_color == "histogram":
            style_full = [color.match_color(x, content) for x in style_full]
        if s.preserve_color == "luminance":
            style_full = [color.match_luminance(x, content) for x in style_full]
            content = color.luminance(content)
        mask_list = [_as_mask(m) for m in masks] if masks is not None else None
        net = build_network(s, device)
        problem = cls(s, net, content, style_full, tuple(blend), mask_list, {}, device)
        problem.weights = problem._effective_weights()
        return problem

    def _style_images(self, size: tuple[int, int]) -> list[torch.Tensor]:
        """The styles at this scale: longest side = style size (default output size × style scale)
        times this scale's share of the output, so strokes keep their size relative to the output
        at every scale of the pyramid."""
        s = self.settings
        final = s.style_size or s.size * s.style_scale
        side = final * max(size) / max(self.content.shape[-2:])
        out = []
        for x in self.styles:
            # Never smaller than the network can take: the shorter side keeps at least min_size.
            least = self.net.min_size * max(x.shape[-2:]) / min(x.shape[-2:])
            out.append(_fit(x, max(round(side), math.ceil(least))).to(self.device))
        return out

    def _objective(self, size: tuple[int, int], alpha, beta, gamma, layer_weights) -> Objective:
        s = self.settings
        out_masks = None
        if self.masks is not None and any(m is not None for m in self.masks):  # all None: a plain blend
            out_masks = [None if m is None else resize_to(m, size).clamp(0, 1).to(self.device) for m in self.masks]
        height, width = self.content.shape[-2:]
        return Objective(
            self.net, resize_to(self.content, size).to(self.device), self._style_images(size),
            content_layer=s.content_layer, style_layers=s.style_layers, layer_weights=layer_weights,
            blend_weights=self.blend, alpha=alpha, beta=beta, gamma=gamma, output_area=float(height * width),
            output_masks=out_masks,
        )  # fmt: skip

    def objective_at(self, size: tuple[int, int]) -> Objective:
        w = self.weights
        return self._objective(size, w["alpha"], w["beta"], w["gamma"], w["layer_weights"])

    def _effective_weights(self) -> dict[str, Any]:
        """α, β, γ and w_l as applied. With ``normalize`` (the default) each term is divided by its
        own scale for this image pair, measured once at a reference size, so one set of defaults
        works for any network, image pair and output size:

        * content by the mean square of the content image's features at the content tap,
        * each style layer by its loss between the content image and the style at the output's H·W,
        * total variation by the number of values 3·H·W of the output.

        Departure from the seed, which weighs raw terms; ``normalize=False`` uses α, β, γ and w_l
        exactly as given.
        """
        s = self.settings
        if not s.normalize:
            return {"alpha": s.content_weight, "beta": s.style_weight, "gamma": s.tv_weight,
                    "layer_weights": list(s.style_layer_weights)}  # fmt: skip
        height, width = self.content.shape[-2:]
        longest = min(NORMALIZE_REFERENCE, max(height, width))
        longest = max(longest, math.ceil(self.net.min_size * max(height, width) / min(height, width)))  # thin ones
        ref = _scaled(height, width, longest)
        ones = [1.0] * len(s.style_layers)
        with torch.no_grad():
            objective = self._objective(ref, 1.0, 1.0, 0.0, ones)
            content_target = objective.net(resize_to(self.content, ref).to(self.device))
            scale_c = float(content_target[s.content_layer].pow(2).mean())
            per_layer = objective.style_terms(resize_to(self.content, ref).to(self.device))
        layer_weights = [w / max(float(v), 1e-12) for w, v in zip(s.style_layer_weights, per_layer)]
        return {
            "alpha": s.content_weight / max(scale_c, 1e-12),
            "beta": s.style_weight,
            "gamma": s.tv_weight / (3 * height * width),
            "layer_weights": layer_weights,
        }


# The normalisers are measured at this longest side (or the output's, if smaller): big enough to
# be representative, small enough to cost one cheap forward pass even for print-size outputs.
NORMALIZE_REFERENCE = 512


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
        _check_resume(resume, s)
    style_list = list(styles) if isinstance(styles, list | tuple) else [styles]
    torch.manual_seed(s.seed)
    content_full = _fit(_as_image(content, "content", s.max_pixels), s.size)
    height, width = content_full.shape[-2:]
    plans = []
    sizes = s.scale_sizes()
    for longest in sizes:  # checked before any work: a too-small scale fails inside the network
        h, w = _scaled(height, width, longest)
        if min(h, w) < _min_side(s):
            if longest != sizes[-1]:
                continue  # a very wide or tall picture starts its pyramid at the first scale it fits
            name = "the content" if isinstance(content, torch.Tensor) else f"content {content}"
            raise InputError(
                f"at {longest} px {name} is {w}x{h}, smaller than the {_min_side(s)} px the network needs; raise --size"
            )
        plans.append(ScalePlan((h, w), s.iterations if longest == s.size else s.coarse_iterations))
    at = [(height, width)]  # the size being worked on, for an out-of-memory message
    with _memory_guard(at):
        problem = Problem.build(content_full, style_list, s, masks)

    def init(size: tuple[int, int]) -> torch.Tensor:
        if init_image is not None:
            start = resize_to(_as_image(init_image, "init image", s.max_pixels), size)
            return color.luminance(start) if s.preserve_color == "luminance" else start
        if s.init == "content":
            return resize_to(problem.content, size)
        if s.init == "noise":
            gen = torch.Generator().manual_seed(s.seed)
            return torch.rand((1, 3, *size), generator=gen)
        start = resize_to(_as_image(s.init, "init image", s.max_pixels), size)
        return color.luminance(start) if s.preserve_color == "luminance" else start

    emit = callback
    if callback is not None and s.preserve_color == "luminance":

        def emit(step: Step) -> None:
            callback(dataclasses.replace(step, image=color.with_chroma_of(step.image, content_full)))

    inputs = _fingerprint(problem)
    if resume is not None:
        _check_resume_inputs(resume, inputs, plans)

    def checkpoint(state: dict[str, Any]) -> dict[str, Any]:
        """The loop's state (position, params, optimizer, history) as a resumable checkpoint."""
        return {"version": CHECKPOINT_VERSION, "settings": _resume_key(s), "inputs": inputs, **state}

    def objective(index: int) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
        at[0] = plans[index].size
        seed_terms = problem.objective_at(plans[index].size)
        if extra_terms is None:
            return seed_terms

        def with_extra(image: torch.Tensor) -> dict[str, torch.Tensor]:
            terms = seed_terms(image)
            extra = extra_terms(image)
            total = terms.pop("total") + sum(extra.values())
            return {**terms, **extra, "total": total}

        return with_extra

    with _memory_guard(at), reuse_freed_memory():
        out = run_scales(
            plans, objective, init, optimizer=s.optimizer, lr=s.learning_rate, history_size=s.history_size,
            device=problem.device, callback=emit, stop=stop, resume=resume, checkpoint_every=checkpoint_every,
            on_checkpoint=None if on_checkpoint is None else lambda part: on_checkpoint(checkpoint(part)),
        )  # fmt: skip
    image = out.image
    if s.preserve_color == "luminance":
        image = color.with_chroma_of(image, content_full)
    final = None
    if out.interrupted and out.params is not None:
        final = checkpoint(out.state())
    return Result(image, out.losses, out.history, out.position.elapsed, out.position.iteration, s,
                  problem.weights, out.interrupted, out.message, final)  # fmt: skip


def _min_side(s: Settings) -> int:
    """``VGGFeatures.min_size`` for these settings, known before the network is built."""
    names = layer_names(s.model_defaults().arch)
    depth = max(names.index(t) for t in (s.content_layer, *s.style_layers)) + 1
    return 2 ** sum(1 for n in names[:depth] if n.startswith("pool"))


def _scaled(height: int, width: int, longest: int) -> tuple[int, int]:
    ratio = longest / max(height, width)
    return max(1, round(height * ratio)), max(1, round(width * ratio))


def _resume_key(s: Settings) -> dict[str, Any]:
    d = s.to_dict()
    d.pop("device")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _check_resume(checkpoint: dict[str, Any], s: Settings) -> None:
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise InputError("the checkpoint was written by another version of painterly")
    saved, now = checkpoint["settings"], _resume_key(s)
    diff = [k for k in now if saved.get(k) != now[k]]
    if diff:
        raise InputError(f"the checkpoint was made with other settings ({', '.join(diff)}); resume with the same ones")


def _fingerprint(problem: Problem) -> str:
    """A hash of the images as the network sees them: a checkpoint resumes only the same inputs."""
    digest = hashlib.sha256()
    for t in [problem.content, *problem.styles, *(m for m in problem.masks or () if m is not None)]:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _check_resume_inputs(checkpoint: dict[str, Any], inputs: str, plans: list[ScalePlan]) -> None:
    if checkpoint.get("inputs") != inputs:
        raise InputError("the checkpoint was made from other content, style or mask images; resume with the same ones")
    scale = checkpoint["position"]["scale"]
    params = checkpoint["params"]
    if scale >= len(plans) or tuple(params.shape[-2:]) != plans[scale].size:
        raise InputError("the checkpoint does not fit this run's scales; resume with the same settings")


@contextlib.contextmanager
def _memory_guard(at: list[tuple[int, int]]):
    """Turn running out of memory into :class:`OutOfMemory` naming the size ``at[0]`` being worked on.

    CUDA raises ``torch.OutOfMemoryError``; the CPU allocator a plain ``RuntimeError`` ("can't
    allocate memory"); MPS a ``RuntimeError`` ("out of memory"); numpy and Python ``MemoryError``.
    """
    try:
        yield
    except (RuntimeError, MemoryError) as err:
        text = str(err)
        oom = isinstance(err, MemoryError | torch.cuda.OutOfMemoryError)
        if not (oom or "out of memory" in text or "can't allocate memory" in text):
            raise
        height, width = at[0]
        smaller = max(16, round(max(height, width) / 2**0.5))  # half the pixels
        raise OutOfMemory(
            f"out of memory at {width}x{height} px ({type(err).__name__}); try a smaller --size (e.g. {smaller}), "
            "a smaller --history-size (e.g. 5) or --optimizer adam, which keep less state"
        ) from err


def score(
    image: ImageLike,
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    settings: Settings | None = None,
    *,
    masks: Sequence[ImageLike | None] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The objective for ``image`` at its own size: each seed term, the weights applied, the total."""
    img = _as_image(image, "image")
    s = dataclasses.replace(settings or Settings(), size=max(img.shape[-2:]), **overrides).resolved()
    style_list = list(styles) if isinstance(styles, list | tuple) else [styles]
    h, w = img.shape[-2:]
    if min(h, w) < _min_side(s):
        raise InputError(f"the image is {w}x{h}, smaller than the {_min_side(s)} px the network needs")
    problem = Problem.build(resize_to(_as_image(content, "content"), (h, w)), style_list, s, masks)
    if s.preserve_color == "luminance":
        img = color.luminance(img)
    with torch.no_grad():
        terms = problem.objective_at((h, w))(img.to(problem.device))
    out: dict[str, Any] = {k: float(v) for k, v in terms.items()}
    out.update(problem.weights, width=w, height=h, model=s.model)
    return out
