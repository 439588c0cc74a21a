"""The two contestants of the time-to-quality race, each traced evaluation by evaluation.

* :func:`plain_recipe`, the baseline: painterly's network, objective and weights at the output size
  only, started from the content image, ``torch.optim.LBFGS`` with its defaults (lr 1, history 100,
  no line search) stepping one evaluation at a time, pixels clamped to [0, 1] after each step,
  float32 throughout. This is the recipe of the PyTorch tutorial and of most Gatys ports.
* :func:`painterly_run`: ``painterly.stylize`` with its default settings (only the number of
  final-scale evaluations may be raised, which leaves every earlier evaluation unchanged).

Both record wall and CPU seconds and the loss of every evaluation; the loss of a painterly
evaluation counts only at the final scale, where it is the same objective the baseline minimises.
Images are kept every few evaluations (and painterly's final-scale ones near the target) so that
:func:`painterly.score` can judge saved images afterwards.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import painterly
from painterly.api import build_problem
from painterly.config import Settings
from painterly.device import reuse_freed_memory
from painterly.image import load_image, resize, save_image


@dataclass
class Trace:
    """One run: per evaluation (1-based) its wall and CPU seconds since the start and its loss."""

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    final_from: int = 1  # first evaluation on the final scale's objective (comparable losses)
    images: dict[int, torch.Tensor] = field(default_factory=dict)  # image *evaluated* at eval i
    result: torch.Tensor | None = None  # the run's output image

    def record(self, wall: float, cpu: float, loss: float) -> int:
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.loss.append(loss)
        return len(self.loss)

    def first_reaching(self, target: float) -> int | None:
        """First final-scale evaluation whose in-loop loss is at most ``target``."""
        for i in range(self.final_from, len(self.loss) + 1):
            if self.loss[i - 1] <= target:
                return i
        return None


class _Clock:
    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall0, time.process_time() - self.cpu0


def plain_recipe(content: Path, style: Path, settings: Settings, evaluations: int, keep_every: int = 10) -> Trace:
    """The baseline (see the module docstring), timed from the same point as painterly's run:
    before the images are loaded and the targets computed."""
    trace = Trace("plain recipe")
    clock = _Clock()
    s = settings.resolved()
    image = resize(load_image(content), s.size)
    problem = build_problem(image, [style], s)
    objective = problem.objective_at(tuple(image.shape[-2:]))
    x = image.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=1)  # torch's defaults otherwise: history 100, no line search

    def closure() -> torch.Tensor:
        opt.zero_grad()
        total = objective(x)["total"]
        total.backward()
        return total

    # The same allocator settings as the painterly command: the baseline is not slowed by page faults it avoids.
    with reuse_freed_memory():
        for _ in range(evaluations):
            evaluated = x.detach().clone()
            loss = float(opt.step(closure).detach())
            with torch.no_grad():
                x.clamp_(0, 1)
            i = trace.record(*clock.read(), loss)
            if i % keep_every == 0 or i == 1:
                trace.images[i] = evaluated
    trace.result = x.detach().clone()
    return trace


def painterly_run(
    content: Path, style: Path, settings: Settings, keep_below: float, keep_every: int = 10, stop_after: int = 0
) -> Trace:
    """painterly.stylize with ``settings``; final-scale images are kept every ``keep_every``
    evaluations and at every evaluation whose loss is within 1.5 % of ``keep_below``. After
    ``stop_after`` final-scale evaluations the run stops once its loss is 1 % under ``keep_below``."""
    trace = Trace("painterly")
    clock = _Clock()
    last_scale = len(settings.scale_sizes()) - 1
    stop = threading.Event()

    def callback(step: painterly.Step) -> None:
        loss = step.losses["total"]
        i = trace.record(*clock.read(), loss)
        if step.scale < last_scale:
            trace.final_from = i + 1
            return
        if (i - trace.final_from + 1) % keep_every == 0 or loss <= 1.015 * keep_below:
            trace.images[i] = step.image
        if stop_after and i - trace.final_from + 1 >= stop_after and loss <= 0.99 * keep_below:
            stop.set()

    with reuse_freed_memory():  # as the painterly command runs it
        result = painterly.stylize(content, style, settings, callback=callback, stop=stop)
    trace.result = result.image
    return trace


def score_image(image: torch.Tensor, content: Path, style: Path, settings: Settings, folder: Path) -> float:
    """painterly.score of ``image`` after a round trip through an 8-bit PNG, as a user would save it."""
    path = save_image(image, folder / "scored.png")
    return float(painterly.score(path, content, style, settings)["total"])


def time_to_quality(
    trace: Trace, target: float, content: Path, style: Path, settings: Settings, folder: Path
) -> tuple[int, float] | None:
    """Earliest kept evaluation whose *saved* image scores at most ``target``: (evaluation, score)."""
    for i in sorted(trace.images):
        if i < trace.final_from or trace.loss[i - 1] > 1.015 * target:
            continue
        value = score_image(trace.images[i], content, style, settings, folder)
        if value <= target:
            return i, value
    return None
