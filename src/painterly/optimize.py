"""The optimisation loop: pixels move to lower the objective, one scale after another.

The loop counts *evaluations* of the objective (one forward and backward of the network), emits a
:class:`Step` to a callback after each, stops promptly when asked, recovers from a non-finite loss,
and can hand back a checkpoint that resumes to the same pixels as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .image import gaussian_blur
from .plan import ScalePlan, evaluations, modelled_seconds, seconds_left

# A non-finite loss rolls back to the last good image and retries with a halved step this often.
MAX_NONFINITE_RETRIES = 4

# L-BFGS here takes fixed steps (no line search: one evaluation a step), and on a stiff objective it
# can oscillate and then blow up (docs/quality.md: the portrait at Laplacian weight 3 went 0.587,
# 0.655, 0.950, 365.7 and never came back). An L-BFGS evaluation above BLOWUP_RATIO times the
# scale's lowest total is treated like a non-finite one: back to the last good image, the history
# dropped, the step halved, at most MAX_NONFINITE_RETRIES times. The ratio is far above an
# oscillation's, so a run that does not blow up is painted exactly as before; Adam's early steps
# may rise, so it is left alone.
BLOWUP_RATIO = 10.0


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
    # Evaluations still to come, each counted at this scale's cost (a later scale's by its pixels):
    # times the seconds per evaluation measured at this scale, the time the run still needs.
    work_left: float = 0.0
    # With a time model (a long run, see painterly.api): its seconds for the scales after this one,
    # and this scale's evaluations still to come; the progress line adds the two parts.
    later_seconds: float | None = None
    here_left: int = 0


@dataclass
class Position:
    """Where a run stands: enough, with the image and optimiser state, to resume it."""

    scale: int = 0
    done: int = 0  # evaluations finished at this scale
    iteration: int = 0  # evaluations finished in all
    elapsed: float = 0.0
    lr_factor: float = 1.0


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
    average: torch.Tensor | None = None  # with ``average``: the scale's running average, unbiased by resume

    def state(self) -> dict[str, Any]:
        """What a resume needs, as :func:`run_scales` also hands it to ``on_checkpoint``."""
        return _loop_state(self.position, self.params, self.optimizer_state, self.history, self.average)


def _loop_state(pos: Position, params, optimizer_state, history, average=None) -> dict[str, Any]:
    """The loop's resumable state: where it stands, the optimiser's point and state, the history, and
    (with an iterate average) the scale's running average; a checkpoint without one resumes as before."""
    state = {"position": dataclasses.asdict(pos), "params": params, "optimizer": optimizer_state, "history": history}
    if average is not None:
        state["average"] = average
    return state


class _NonFinite(Exception):
    pass


class _BlownUp(_NonFinite):
    pass


Terms = Callable[[torch.Tensor], dict[str, torch.Tensor]]  # an objective: image -> named terms and "total"


# L-BFGS keeps 2 vectors the size of the image per history pair: at 4096x3072 the default 20 pairs
# would hold 5.6 GiB. Past this budget the history shrinks (never below MIN_HISTORY pairs).
LBFGS_HISTORY_BYTES = 3 * 2**30 // 2
MIN_HISTORY = 3


# L-BFGS's whole state (its history and the image-sized buffers of its step) is kept within
# LBFGS_STATE_BYTES: besides x, its gradient and the last good image, a step holds LBFGS_WORK_IMAGES
# of them (the previous gradient, the old and the new direction, q, and the new pair y, s, one
# passing) and 2 per history pair. The history shrinks to fit (2048x1536 keeps its 20 pairs,
# 4096x3072 gets 3); where even MIN_HISTORY pairs would not fit (8192x6144: 13 images, 7.3 GiB), the
# scale is optimised with Adam instead (2 moments and 2 passing buffers, 2.3 GiB), its step the
# L-BFGS step times ADAM_LR_RATIO (Adam's default 0.02 for L-BFGS's 1). BENCHMARKS.md ("Print
# size") measures the peaks and compares the two.
LBFGS_STATE_BYTES = 2 * 2**30
LBFGS_WORK_IMAGES = 7
ADAM_LR_RATIO = 0.02


def history_at(history_size: int, numel: int, element_size: int = 4) -> int:
    """L-BFGS history pairs at a scale of ``numel`` image values (below MIN_HISTORY: use Adam)."""
    image = numel * element_size
    pairs = min(history_size, max(MIN_HISTORY, LBFGS_HISTORY_BYTES // (2 * image)))
    return min(pairs, max(0, (LBFGS_STATE_BYTES - LBFGS_WORK_IMAGES * image) // (2 * image)))


def optimizer_at(name: str, numel: int, element_size: int = 4, history_size: int = 20) -> str:
    """The optimiser a scale of ``numel`` image values really uses: ``name``, or Adam where
    L-BFGS's state would not fit its budget (see :data:`LBFGS_STATE_BYTES`)."""
    return "adam" if name == "lbfgs" and history_at(history_size, numel, element_size) < MIN_HISTORY else name


class _LBFGS(torch.optim.LBFGS):
    """torch's L-BFGS, its flat gradient a view of the one parameter's gradient instead of a copy
    (one image fewer; L-BFGS reads it and never writes it)."""

    def _gather_flat_grad(self):
        params = self._params
        if len(params) == 1 and params[0].grad is not None and not params[0].grad.is_sparse:
            grad = params[0].grad
            if grad.is_contiguous() and not torch.is_complex(grad):
                return grad.view(-1)
        return super()._gather_flat_grad()


def make_optimizer(name: str, param: torch.Tensor, lr: float, history_size: int) -> torch.optim.Optimizer:
    if optimizer_at(name, param.numel(), param.element_size(), history_size) != name:
        name, lr = "adam", lr * ADAM_LR_RATIO
    if name == "adam":
        return torch.optim.Adam([param], lr=lr, betas=(0.9, 0.99))
    history_size = max(1, history_at(history_size, param.numel(), param.element_size()))
    # max_iter=1: each step() is exactly one evaluation, so progress, stop requests and NaN checks
    # happen between evaluations, and the state survives across calls (and checkpoints).
    return _LBFGS([param], lr=lr, max_iter=1, history_size=history_size, tolerance_grad=-1, tolerance_change=-1)


def upsample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Carry a coarse result up to the next scale (bicubic, kept in [0, 1])."""
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def run_scales(
    plans: list[ScalePlan],
    make_objective: Callable[[int], Terms],
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
    average: float = 0.0,
    detail: Callable[[tuple[int, int], tuple[int, int]], torch.Tensor] | None = None,
    carry_blur: float = 0.0,
    seconds_at: Callable[[tuple[int, int]], float] | None = None,
) -> LoopResult:
    """Optimise on ``device`` at every scale in ``plans``; ``make_objective(i)`` builds scale i's objective.

    ``init(size)`` gives the first scale's starting image. With ``resume`` (a checkpoint from an
    interrupted run) the loop restarts exactly where it stopped. ``on_checkpoint``, if given,
    receives the same state (position, params, optimizer, history) every ``checkpoint_every``
    seconds, between evaluations, so a run killed outright (SIGKILL, out of memory, power) can
    resume from it too. ``seconds_at(size)``, a model of one evaluation's seconds, gives each
    :class:`Step` the time the later scales need (``later_seconds``).

    With ``average`` (a decay in (0, 1); 0: off) each scale's result, carried up to the next scale
    and returned at the last, is the bias-corrected exponential moving average of the images it
    evaluated, ā_t = (Σ_i (1−d) d^(t−i) x_i) / (1 − d^t), rather than the last of them (crowsonkb keeps
    one, decay 0.99): it smooths the last steps' jitter. The average restarts at each scale.

    With ``carry_blur`` (σ in pixels of the coarser scale; 0: off) each coarse result is blurred by a
    Gaussian of that σ before it is upsampled: its pixel-level grain is not carried up and magnified.

    With ``detail``, ``detail(coarse_size, size)`` is added to each upsampled result (then clamped to
    [0, 1]): what the content loses between the two sizes, so the finer scale does not start blurry.
    """
    loop = _Loop(plans, device, optimizer, lr, history_size, callback, stop, on_checkpoint, checkpoint_every)
    loop.decay, loop.seconds_at = average, seconds_at
    image, opt_state = loop.restore(resume)
    for index in range(loop.pos.scale, len(plans)):
        size = plans[index].size
        if image is None:
            image = init(size)
        elif tuple(image.shape[-2:]) != size:
            coarse = tuple(image.shape[-2:])
            image = upsample(gaussian_blur(image, carry_blur), size)
            if detail is not None:
                image = (image + detail(coarse, size).to(image.device)).clamp(0, 1)
        objective = make_objective(index)
        with _memory_for(objective, device):
            outcome = loop.run_scale(index, objective, image, opt_state)
        del objective
        if outcome is not None:
            return outcome
        image, opt_state = loop.output(), None
        loop.pos.scale, loop.pos.done, loop.average = index + 1, 0, None
    assert image is not None
    return loop.result(image.cpu())


def _memory_for(objective: Terms, device: torch.device) -> contextlib.AbstractContextManager:
    """A tiled scale (an objective with a ``tiled`` evaluation) runs, its optimiser step included,
    with large freed blocks handed back (:func:`painterly.device.large_blocks_returned`): its
    whole-picture buffers and temporaries then leave no holes in the heap for the tiles' blocks to
    fragment (BENCHMARKS.md, "Print size, fourth session")."""
    from .device import large_blocks_returned

    tiled = getattr(objective, "tiled", None) is not None
    return large_blocks_returned(device) if tiled else contextlib.nullcontext()


class _Loop:
    """The state of :func:`run_scales` between evaluations, and one scale's optimisation."""

    def __init__(self, plans, device, optimizer, lr, history_size, callback, stop, on_checkpoint, every) -> None:
        self.plans, self.device = plans, device
        self.optimizer, self.lr, self.history_size = optimizer, lr, history_size
        self.callback, self.stop, self.on_checkpoint, self.every = callback, stop, on_checkpoint, every
        self.total = evaluations(plans)
        self.pos = Position()
        self.history: list[dict[str, float]] = []
        self.losses: dict[str, float] = {}
        self.good: torch.Tensor | None = None  # the last image whose evaluation was finite
        self.decay = 0.0  # iterate average's decay (0: off), and the scale's running sum (not yet unbiased)
        self.average: torch.Tensor | None = None
        self.seconds_at: Callable[[tuple[int, int]], float] | None = None

    def restore(self, resume: dict[str, Any] | None) -> tuple[torch.Tensor | None, dict[str, Any] | None]:
        image = opt_state = None
        if resume is not None:
            self.pos = Position(**resume["position"])
            image, opt_state = resume["params"], resume.get("optimizer")
            self.history = list(resume.get("history", []))
            self.average = resume.get("average")
        self.start = time.perf_counter() - self.pos.elapsed
        self.last_checkpoint = time.perf_counter()
        return image, opt_state

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def result(self, image: torch.Tensor, interrupted: bool = False, opt_state=None, message: str = "",
               params: torch.Tensor | None = None) -> LoopResult:  # fmt: skip
        self.pos.elapsed = self.elapsed()
        average = None if self.average is None or params is None else self.average.cpu()
        return LoopResult(image, self.losses, self.history, self.pos, interrupted, opt_state, message, params, average)

    def output(self) -> torch.Tensor:
        """The scale's result so far: the last good image, or with an average the unbiased average."""
        if self.average is None or self.pos.done == 0:
            return self.good
        return self.average / (1 - self.decay**self.pos.done)

    def _accumulate(self, image: torch.Tensor) -> None:
        if self.decay:
            if self.average is None:
                self.average = torch.zeros_like(image)
            self.average.mul_(self.decay).add_(image, alpha=1 - self.decay)

    def run_scale(self, index: int, objective: Terms, image: torch.Tensor, opt_state) -> LoopResult | None:
        """Scale ``index``'s evaluations from ``image``; a :class:`LoopResult` if the run ends here."""
        plan, pos = self.plans[index], self.pos
        x = image.detach().to(device=self.device).contiguous()  # L-BFGS flattens grads: keep NCHW
        x.requires_grad_(True)
        self.good = x.detach().clone()  # the last image whose evaluation was finite
        if self.average is not None:
            self.average = self.average.to(self.device)
        opt = make_optimizer(self.optimizer, x, self.lr * pos.lr_factor, self.history_size)
        if opt_state is not None:
            opt.load_state_dict(opt_state)
        last: dict[str, torch.Tensor] = {}
        lowest = float("inf")  # the scale's lowest total so far (L-BFGS's blow-up guard)

        def closure() -> torch.Tensor:
            nonlocal lowest
            opt.zero_grad(set_to_none=True)
            terms = objective(x)
            if not torch.isfinite(terms["total"]):
                raise _NonFinite
            total = float(terms["total"].detach())
            if isinstance(opt, torch.optim.LBFGS) and total > BLOWUP_RATIO * lowest > 0:
                raise _BlownUp
            lowest = min(lowest, total)
            terms["total"].backward()
            # x is still the image evaluated (the optimiser moves it after this): it becomes the
            # good one in place, so the loop holds no third image (0.56 GiB at 8192x6144).
            with torch.no_grad():
                self.good.copy_(x)
            last.clear()
            last.update(terms)
            return terms["total"]

        retries = 0
        while pos.done < plan.evaluations:
            if self.stop is not None and self.stop.is_set():
                return self.result(self.output().cpu(), True, opt.state_dict(), "", x.detach().cpu())
            try:
                opt.step(closure)
            except _NonFinite as error:
                retries += 1
                if retries > MAX_NONFINITE_RETRIES:
                    what = "kept blowing up" if isinstance(error, _BlownUp) else "stayed non-finite"
                    msg = (f"the loss {what} after {MAX_NONFINITE_RETRIES} retries at "
                           f"{plan.size[1]}x{plan.size[0]}; kept the last good image (try lower weights)")  # fmt: skip
                    return self.result(self.output().cpu(), True, None, msg)
                # Step back to the last good image; drop the optimiser's history, halve its step.
                with torch.no_grad():
                    x.copy_(self.good)
                pos.lr_factor *= 0.5
                opt = make_optimizer(self.optimizer, x, self.lr * pos.lr_factor, self.history_size)
                continue
            with torch.no_grad():
                x.clamp_(0, 1)  # the box constraint: pixels stay displayable
            self._accumulate(self.good)  # the image just evaluated (the closure copied it in)
            self._record(index, last)
            self._maybe_checkpoint(plan, x, opt)
        return None

    def _record(self, index: int, last: dict[str, torch.Tensor]) -> None:
        """Count an evaluation, log its terms and tell the callback."""
        pos = self.pos
        pos.done += 1
        pos.iteration += 1
        self.losses = {k: float(v.detach()) for k, v in last.items()}
        self.history.append({"iteration": pos.iteration, "scale": index, "time": self.elapsed(), **self.losses})
        if self.callback is not None:
            plan = self.plans[index]
            left = seconds_left(self.plans, index, pos.done, 1.0)
            image = self.good.cpu()
            image = image.clone() if image is self.good else image  # good is overwritten by the next evaluation
            later = None if self.seconds_at is None else modelled_seconds(self.plans, self.seconds_at, index + 1)
            self.callback(Step(pos.iteration, self.total, index, len(self.plans), plan.size, self.losses,
                               self.elapsed(), image, work_left=left, later_seconds=later,
                               here_left=max(0, plan.evaluations - pos.done)))  # fmt: skip

    def _maybe_checkpoint(self, plan: ScalePlan, x: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        # Not after a scale's last evaluation: resuming there would carry up the optimiser's point
        # instead of the last evaluated image, and the pixels would differ from an uninterrupted run.
        due = self.on_checkpoint is not None and time.perf_counter() - self.last_checkpoint >= self.every
        if due and self.pos.done < plan.evaluations:
            self.pos.elapsed = self.elapsed()
            params, opt_copy = x.detach().cpu().clone(), copy.deepcopy(opt.state_dict())
            average = None if self.average is None else self.average.cpu().clone()
            self.on_checkpoint(_loop_state(self.pos, params, opt_copy, list(self.history), average))
            self.last_checkpoint = time.perf_counter()
