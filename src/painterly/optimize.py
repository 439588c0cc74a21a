"""The optimisation loop: pixels move to lower the objective, one scale after another.

The loop counts *evaluations* of the objective (one forward and backward of the network), emits a
:class:`Step` to a callback after each, stops promptly when asked, recovers from a non-finite loss,
and can hand back a checkpoint that resumes to the same pixels as an uninterrupted run.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

CHECKPOINT_VERSION = 1
# A non-finite loss rolls back to the last good image and retries with a halved step this often.
MAX_NONFINITE_RETRIES = 4


@dataclass
class Step:
    """Progress after one evaluation; ``image`` is the evaluated image, CPU, in [0, 1]."""

    iteration: int
    total: int
    scale: int
    scales: int
    size: tuple[int, int]
    losses: dict[str, float]
    elapsed: float
    image: torch.Tensor
    note: str = ""


@dataclass
class Position:
    """Where a run stands: enough, with the image and optimiser state, to resume it."""

    scale: int = 0
    done: int = 0  # evaluations finished at this scale
    iteration: int = 0  # evaluations finished in all
    elapsed: float = 0.0
    lr_factor: float = 1.0


@dataclass
class ScalePlan:
    size: tuple[int, int]
    evaluations: int


@dataclass
class LoopResult:
    image: torch.Tensor
    losses: dict[str, float]
    history: list[dict[str, float]]
    position: Position
    interrupted: bool = False
    optimizer_state: dict[str, Any] | None = None
    message: str = ""
    params: torch.Tensor | None = None  # the optimiser's current point: what a resume restarts from

    def state(self) -> dict[str, Any]:
        """What a resume needs, as :func:`run_scales` also hands it to ``on_checkpoint``."""
        return _loop_state(self.position, self.params, self.optimizer_state, self.history)


def _loop_state(pos: Position, params, optimizer_state, history) -> dict[str, Any]:
    """The loop's resumable state: where it stands, the optimiser's point and state, the history."""
    return {"position": dataclasses.asdict(pos), "params": params, "optimizer": optimizer_state, "history": history}


class _NonFinite(Exception):
    pass


# L-BFGS keeps 2 vectors the size of the image per history pair: at 4096x3072 the default 20 pairs
# would hold 5.6 GiB. Past this budget the history shrinks (never below MIN_HISTORY pairs).
LBFGS_HISTORY_BYTES = 3 * 2**30 // 2
MIN_HISTORY = 3


def make_optimizer(name: str, param: torch.Tensor, lr: float, history_size: int) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam([param], lr=lr, betas=(0.9, 0.99))
    pair_bytes = 2 * param.numel() * param.element_size()
    history_size = min(history_size, max(MIN_HISTORY, LBFGS_HISTORY_BYTES // pair_bytes))
    # max_iter=1: each step() is exactly one evaluation, so progress, stop requests and NaN checks
    # happen between evaluations, and the state survives across calls (and checkpoints).
    return torch.optim.LBFGS(
        [param], lr=lr, max_iter=1, history_size=history_size, tolerance_grad=-1, tolerance_change=-1
    )


def upsample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Carry a coarse result up to the next scale (bicubic, kept in [0, 1])."""
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def run_scales(
    plans: list[ScalePlan],
    make_objective: Callable[[int], Callable[[torch.Tensor], dict[str, torch.Tensor]]],
    init: Callable[[tuple[int, int]], torch.Tensor],
    *,
    device: torch.device,
    optimizer: str,
    lr: float,
    history_size: int,
    callback: Callable[[Step], None] | None = None,
    stop: threading.Event | None = None,
    resume: dict[str, Any] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: float = 0.0,
) -> LoopResult:
    """Optimise at every scale in ``plans``; ``make_objective(i)`` builds scale i's objective.

    ``init(size)`` gives the first scale's starting image. With ``resume`` (a checkpoint from an
    interrupted run) the loop restarts exactly where it stopped. ``on_checkpoint``, if given,
    receives the same state (position, params, optimizer, history) every ``checkpoint_every``
    seconds, between evaluations, so a run killed outright (SIGKILL, out of memory, power) can
    resume from it too.
    """
    total = sum(p.evaluations for p in plans)
    pos = Position()
    image: torch.Tensor | None = None
    opt_state = None
    history: list[dict[str, float]] = []
    if resume is not None:
        pos = Position(**resume["position"])
        image = resume["params"]
        opt_state = resume.get("optimizer")
        history = list(resume.get("history", []))
    start = time.perf_counter() - pos.elapsed
    last_checkpoint = time.perf_counter()
    losses: dict[str, float] = {}

    for index in range(pos.scale, len(plans)):
        plan = plans[index]
        objective = make_objective(index)
        if image is None:
            image = init(plan.size)
        elif tuple(image.shape[-2:]) != plan.size:
            image = upsample(image, plan.size)
        x = image.detach().to(device=device).contiguous()  # L-BFGS flattens grads: keep NCHW
        x.requires_grad_(True)
        good = x.detach().clone()
        opt = make_optimizer(optimizer, x, lr * pos.lr_factor, history_size)
        if opt_state is not None:
            opt.load_state_dict(opt_state)
            opt_state = None
        last: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            terms = objective(x)
            if not torch.isfinite(terms["total"]):
                raise _NonFinite
            terms["total"].backward()
            last.clear()
            last.update(terms)
            return terms["total"]

        retries = 0
        while pos.done < plan.evaluations:
            if stop is not None and stop.is_set():
                pos.elapsed = time.perf_counter() - start
                return LoopResult(good.cpu(), losses, history, pos, True, opt.state_dict(), "", x.detach().cpu())
            evaluated = x.detach().clone()
            try:
                opt.step(closure)
            except _NonFinite:
                retries += 1
                if retries > MAX_NONFINITE_RETRIES:
                    pos.elapsed = time.perf_counter() - start
                    msg = (
                        f"the loss stayed non-finite after {MAX_NONFINITE_RETRIES} retries at "
                        f"{plan.size[1]}x{plan.size[0]}; kept the last good image (try lower weights)"
                    )
                    return LoopResult(good.cpu(), losses, history, pos, True, None, msg)
                # Step back to the last good image; drop the optimiser's history, halve its step.
                with torch.no_grad():
                    x.copy_(good)
                pos.lr_factor *= 0.5
                opt = make_optimizer(optimizer, x, lr * pos.lr_factor, history_size)
                continue
            with torch.no_grad():
                x.clamp_(0, 1)  # the box constraint: pixels stay displayable
            good = evaluated
            pos.done += 1
            pos.iteration += 1
            losses = {k: float(v.detach()) for k, v in last.items()}
            history.append({"iteration": pos.iteration, "scale": index, "time": time.perf_counter() - start, **losses})
            if callback is not None:
                callback(
                    Step(pos.iteration, total, index, len(plans), plan.size, losses,
                         time.perf_counter() - start, good.cpu())
                )  # fmt: skip
            # Not after a scale's last evaluation: resuming there would carry up the optimiser's point
            # instead of the last evaluated image, and the pixels would differ from an uninterrupted run.
            due = on_checkpoint is not None and time.perf_counter() - last_checkpoint >= checkpoint_every
            if due and pos.done < plan.evaluations:
                pos.elapsed = time.perf_counter() - start
                params, opt_copy = x.detach().cpu().clone(), copy.deepcopy(opt.state_dict())
                on_checkpoint(_loop_state(pos, params, opt_copy, list(history)))
                last_checkpoint = time.perf_counter()
        image = good
        pos.scale, pos.done = index + 1, 0
    pos.elapsed = time.perf_counter() - start
    assert image is not None
    return LoopResult(image.cpu(), losses, history, pos)
