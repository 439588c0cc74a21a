"""Consumers of :class:`~painterly.optimize.Step` events: the progress bar and periodic saves."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from .optimize import Step


class ProgressBar:
    """A tqdm bar over evaluations showing the scale, its size and the loss terms.

    ``disable=True`` (``--quiet``) never draws; by default the bar is drawn only when ``file``
    (stderr) is a terminal, so logs and CI get no carriage-return noise.
    """

    def __init__(self, disable: bool = False, file: TextIO | None = None) -> None:
        self.disable, self.file = disable, file
        self.bar = None

    def __call__(self, step: Step) -> None:
        if self.disable:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=step.total, initial=step.iteration - 1, unit="eval", disable=None,
                            dynamic_ncols=True, file=self.file)  # fmt: skip
        self.bar.set_description(f"scale {step.scale + 1}/{step.scales} {step.size[1]}x{step.size[0]}", refresh=False)
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in step.losses.items()}, refresh=False)
        self.bar.update(step.iteration - self.bar.n)

    def write(self, text: str) -> None:
        """One line on the bar's stream, printed above the bar when one is drawn (even when quiet)."""
        if self.bar is not None:
            self.bar.write(text, file=self.file or sys.stderr)
        else:
            print(text, file=self.file or sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
