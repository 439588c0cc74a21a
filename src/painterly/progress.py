"""Consumers of :class:`~painterly.optimize.Step` events: the progress bar and periodic saves."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # annotations only: the studio imports this module without torch
    from .optimize import Step


class ProgressBar:
    """Progress over evaluations showing the scale, its size and the loss terms.

    On a terminal, a tqdm bar. Elsewhere (a log file, CI, a pipe) a plain line when a scale
    starts, every ``log_every`` seconds and at the end, so a long run still says how far it is
    without carriage-return noise. ``disable=True`` (``--quiet``) prints nothing.
    """

    def __init__(self, disable: bool = False, file: TextIO | None = None, log_every: float = 30.0) -> None:
        self.disable, self.file, self.log_every = disable, file, log_every
        self.bar = None
        self.interactive: bool | None = None
        self.last_line: float | None = None
        self.last_scale = -1
        self.rate = TimeLeft()

    def __call__(self, step: Step) -> None:
        if self.disable:
            return
        left = self.rate(step)
        if getattr(step, "later_seconds", None) is not None and step.iteration == 1 and left is not None:
            # A long run says what it will take before it is under way (after its first, smallest evaluation).
            self.write(f"painterly: {step.total} evaluations over {step.scales} scales, about "
                       f"{duration(step.elapsed + left)} in all (from a timed evaluation)")  # fmt: skip
        if self.interactive is None:
            stream = self.file or sys.stderr
            self.interactive = bool(getattr(stream, "isatty", lambda: False)())
        if not self.interactive:
            self._log(step, left)
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=step.total, initial=step.iteration - 1, unit="eval", dynamic_ncols=True,
                            file=self.file)  # fmt: skip
        self.bar.set_description(_where(step), refresh=False)
        postfix = shown_terms(step.losses)
        if left is not None:
            postfix["left"] = duration(left)
        self.bar.set_postfix(postfix, refresh=False)
        if step.scale != self.last_scale and left is not None:
            self.last_scale = step.scale
            self.write(f"painterly: {_where(step)}, about {duration(left)} left")
        self.bar.update(step.iteration - self.bar.n)

    def _log(self, step: Step, left: float | None = None) -> None:
        new_scale = step.scale != self.last_scale
        due = self.last_line is None or step.elapsed - self.last_line >= self.log_every
        if not (new_scale or due or step.iteration == step.total):
            return
        self.last_scale, self.last_line = step.scale, step.elapsed
        terms = " ".join(f"{k} {v}" for k, v in shown_terms(step.losses).items())
        still = "" if left is None else f", about {duration(left)} left"
        self.write(f"painterly: {_where(step)}, eval {step.iteration}/{step.total} "
                   f"({step.iteration / step.total:.0%}), {step.elapsed:.0f} s{still}, {terms}")  # fmt: skip

    def write(self, text: str) -> None:
        """One line on the bar's stream, printed above the bar when one is drawn (even when quiet)."""
        if self.bar is not None:
            self.bar.write(text, file=self.file or sys.stderr)
        else:
            print(text, file=self.file or sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TimeLeft:
    """Seconds per evaluation measured at the current scale, and so the time left: the step's
    ``work_left`` (evaluations to come, each counted at this scale's cost) times that rate. One per
    run, called with each step; ``None`` until an evaluation has been timed. The progress line and
    the studio's jobs both use it."""

    def __init__(self) -> None:
        self.scale, self.since, self.first, self.last = -1, 0.0, 0, None

    def __call__(self, step: Step) -> float | None:
        if step.scale != self.scale:
            self.scale = step.scale
            if self.last is not None:  # from the previous evaluation's end
                self.since, self.first = self.last, step.iteration - 1
            else:  # a run's first evaluation pays its one-off set-up (a 256 px one took 3 s, then
                # 0.3 s each, and promised 39 min for a 5 min run); a resumed run's too: timed from its end
                self.since, self.first = step.elapsed, step.iteration
        self.last = step.elapsed
        done = step.iteration - self.first
        later = getattr(step, "later_seconds", None)  # a long run's model for the scales to come
        if done <= 0 or step.elapsed <= self.since:
            return later
        rate = (step.elapsed - self.since) / done
        if later is not None:
            return step.here_left * rate + later
        return step.work_left * rate


def duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``2 h 05 min``: a time left, as precise as it can be."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


WEIGHTED = "weighted:"  # objective.WEIGHTED (not imported: that would import torch)


def shown_terms(losses: dict[str, float]) -> dict[str, str]:
    """The terms a progress line has room for: the seed's three and any extra, each as its share of
    the total as the objective weighs them (the raw terms differ by orders of magnitude: style 1e8
    beside content 10 says nothing), then the total; the raw terms where no weighted ones are given."""
    plain = {k: v for k, v in losses.items() if ":" not in k}
    total = plain.get("total")
    weighted = {k[len(WEIGHTED) :]: v for k, v in losses.items() if k.startswith(WEIGHTED)}
    if not weighted or not total or total <= 0:
        return {k: f"{v:.3g}" for k, v in plain.items()}
    # the rest (a video's temporal term) is weighted already; a term with a weighted copy is shown by it
    extra = {k: v for k, v in plain.items() if k not in ("content", "style", "tv", "total") and k not in weighted}
    seed_first = {k: weighted[k] for k in ("content", "style", "tv") if k in weighted} | weighted
    shares = {k: f"{v / total:.0%}" for k, v in {**seed_first, **extra}.items()}
    return {**shares, "total": f"{total:.3g}"}


def _where(step: Step) -> str:
    return f"scale {step.scale + 1}/{step.scales} {step.size[1]}x{step.size[0]}"


class Saver:
    """Writes ``OUT_<iteration>.<ext>`` every ``every`` evaluations (0: never), atomically."""

    def __init__(self, out: Path, every: int, bit_depth: int = 8) -> None:
        self.out, self.every, self.bit_depth = Path(out), every, bit_depth

    def path_for(self, iteration: int) -> Path:
        return self.out.with_name(f"{self.out.stem}_{iteration:05d}{self.out.suffix}")

    def __call__(self, step: Step) -> None:
        if self.every > 0 and step.iteration % self.every == 0:
            from .image import save_image

            save_image(step.image, self.path_for(step.iteration), bit_depth=self.bit_depth)
