"""The Python API: :func:`stylize` and :func:`score`. The CLI and the studio are thin layers on these."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from . import color
from .config import Settings
from .device import resolve_device
from .errors import InputError
from .image import load_image, resize, resize_to
from .network import VGGFeatures
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
    return load_image(value, **kwargs)


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
    return net.to(device).to(memory_format=torch.channels_last)


def _fit(image: torch.Tensor, longest: int) -> torch.Tensor:
    return resize(image, longest) if max(image.shape[-2:]) != longest else image


def stylize(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    settings: Settings | None = None,
    *,
    masks: Sequence[ImageLike | None] | None = None,
    callback: Callable[[Step], None] | None = None,
    stop: threading.Event | None = None,
    resume: dict[str, Any] | None = None,
    **overrides: Any,
) -> Result:
    """Paint ``content`` in the style of ``styles``; see :class:`Settings` for every option.

    ``masks`` (one per style, content-space, white = this style applies) give spatial control via
    guided Gram matrices; ``callback`` receives a :class:`Step` after every evaluation; setting
    ``stop`` returns promptly with ``interrupted=True`` and a checkpoint that ``resume`` accepts.
    """
    s = dataclasses.replace(settings or Settings(), **overrides).resolved()
    if resume is not None:
        _check_resume(resume, s)
    style_list = list(styles) if isinstance(styles, list | tuple) else [styles]
    if not style_list:
        raise InputError("at least one style image is needed")
    blend = s.style_blend_weights or (1.0,) * len(style_list)
    if len(blend) != len(style_list):
        raise InputError(f"--style-blend-weights has {len(blend)} values for {len(style_list)} style images")
    if masks is not None and len(masks) != len(style_list):
        raise InputError(f"{len(masks)} masks given for {len(style_list)} style images")
    device = resolve_device(s.device)
    torch.manual_seed(s.seed)

    content_full = _fit(_as_image(content, "content", s.max_pixels), s.size)
    style_full = [_as_image(x, "style", s.max_pixels) for x in style_list]
    if s.preserve_color == "histogram":
        style_full = [color.match_color(x, content_full) for x in style_full]
    net_content = color.luminance(content_full) if s.preserve_color == "luminance" else content_full
    if s.preserve_color == "luminance":
        style_full = [color.luminance(x) for x in style_full]
    mask_list = [_as_mask(m) for m in masks] if masks is not None else None

    net = build_network(s, device)
    height, width = content_full.shape[-2:]
    plans = []
    for longest in s.scale_sizes():
        h, w = _scaled(height, width, longest)
        if min(h, w) < net.min_size:
            raise InputError(
                f"at {longest} px the image is {w}x{h}, smaller than the {net.min_size} px the network needs; "
                f"raise --size or --start-size"
            )
        plans.append(ScalePlan((h, w), s.iterations if longest == s.size else s.coarse_iterations))

    def make_objective(index: int) -> Objective:
        h, w = plans[index].size
        c = resize_to(net_content, (h, w)).to(device)
        style_side = s.style_size or max(16, round(max(h, w) * s.style_scale))
        st = [_fit(x, style_side).to(device) for x in style_full]
        out_masks = None
        if mask_list is not None:
            out_masks = [None if m is None else resize_to(m, (h, w)).clamp(0, 1).to(device) for m in mask_list]
        return Objective(
            net, c, st, content_layer=s.content_layer, style_layers=s.style_layers,
            layer_weights=s.style_layer_weights, blend_weights=blend, alpha=s.content_weight,
            beta=s.style_weight, gamma=s.tv_weight, output_area=float(height * width), output_masks=out_masks,
        )  # fmt: skip

    def init(size: tuple[int, int]) -> torch.Tensor:
        if s.init == "content":
            return resize_to(net_content, size)
        if s.init == "noise":
            gen = torch.Generator().manual_seed(s.seed)
            return torch.rand((1, 3, *size), generator=gen)
        start = resize_to(_as_image(s.init, "init image"), size)
        return color.luminance(start) if s.preserve_color == "luminance" else start

    emit = callback
    if callback is not None and s.preserve_color == "luminance":

        def emit(step: Step) -> None:
            callback(dataclasses.replace(step, image=color.with_chroma_of(step.image, content_full)))

    out = run_scales(
        plans, make_objective, init, optimizer=s.optimizer, lr=s.learning_rate, history_size=s.history_size,
        callback=emit, stop=stop, resume=resume,
    )  # fmt: skip
    image = out.image
    if s.preserve_color == "luminance":
        image = color.with_chroma_of(image, content_full)
    checkpoint = None
    if out.interrupted and out.params is not None:
        checkpoint = {
            "version": CHECKPOINT_VERSION,
            "settings": _resume_key(s),
            "position": dataclasses.asdict(out.position),
            "params": out.params,
            "optimizer": out.optimizer_state,
            "history": out.history,
        }
    return Result(image, out.losses, out.history, out.position.elapsed, out.position.iteration, s,
                  out.interrupted, out.message, checkpoint)  # fmt: skip


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


def score(
    image: ImageLike,
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    settings: Settings | None = None,
    *,
    masks: Sequence[ImageLike | None] | None = None,
    **overrides: Any,
) -> dict[str, float]:
    """The seed's objective for ``image`` at its own size: each term, the weights and the total."""
    img = _as_image(image, "image")
    s = dataclasses.replace(settings or Settings(), size=max(img.shape[-2:]), **overrides).resolved()
    device = resolve_device(s.device)
    style_list = list(styles) if isinstance(styles, list | tuple) else [styles]
    blend = s.style_blend_weights or (1.0,) * len(style_list)
    h, w = img.shape[-2:]
    c = resize_to(_as_image(content, "content"), (h, w))
    style_side = s.style_size or max(16, round(max(h, w) * s.style_scale))
    st = [_fit(_as_image(x, "style"), style_side).to(device) for x in style_list]
    if s.preserve_color == "histogram":
        st = [color.match_color(x, c) for x in st]
    out_masks = None
    if masks is not None:
        out_masks = [None if m is None else resize_to(_as_mask(m), (h, w)).to(device) for m in masks]
    net = build_network(s, device)
    with torch.no_grad():
        objective = Objective(
            net, c.to(device), st, content_layer=s.content_layer, style_layers=s.style_layers,
            layer_weights=s.style_layer_weights, blend_weights=blend, alpha=s.content_weight,
            beta=s.style_weight, gamma=s.tv_weight, output_area=float(h * w), output_masks=out_masks,
        )  # fmt: skip
        terms = objective(img.to(device).contiguous(memory_format=torch.channels_last))
    out = {k: float(v) for k, v in terms.items()}
    out.update(alpha=s.content_weight, beta=s.style_weight, gamma=s.tv_weight, width=w, height=h)
    return out
