"""Loss against evaluations at the final scale, by size and optimiser: how many the finest scale needs.

``python -m benchmarks.schedule SIZE [EVALS [OPTIMIZERS]]`` (default 1024 px, 150 evaluations,
``lbfgs``): vgg16-hed (real weights: the loss curve depends on them), tubingen in starry_night's
style, default settings. The coarse scales run once (their default 50 evaluations each, with the
style sized for the SIZE px output); then the final scale runs EVALS evaluations from that start
with each optimiser in OPTIMIZERS (comma-separated: ``lbfgs``, ``lbfgs3`` = 3 history pairs,
``adam`` = Adam at ``ADAM_LR_RATIO`` times L-BFGS's step, as painterly switches to at the largest
scales). Prints one JSON line: per optimiser the final scale's total loss after each evaluation,
and the first evaluation after which the loss falls less than 1 % (and 0.5 %) further by the end.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "painterly" / "examples"


def plateau(losses: list[float], within: float) -> int:
    """The first evaluation (1-based) whose loss is within ``within`` (relative) of the last one."""
    last = losses[-1]
    for i, v in enumerate(losses):
        if v <= last * (1 + within):
            return i + 1
    return len(losses)


def main(size: int = 1024, evals: int = 150, optimizers: str = "lbfgs") -> dict:
    import torch

    import painterly
    from painterly.optimize import ADAM_LR_RATIO

    s = painterly.Settings(model="vgg16-hed", size=size)
    sizes = s.resolved().scale_sizes()
    content, style = EXAMPLES / "tubingen.jpg", EXAMPLES / "starry_night.jpg"
    start = time.perf_counter()
    coarse = painterly.stylize(content, style, s, scales=tuple(sizes[:-1]), iterations=s.coarse_iterations)
    out: dict = {"size": size, "scales": sizes, "coarse_seconds": time.perf_counter() - start, "runs": {}}
    for name in optimizers.split(","):
        kw: dict = {"optimizer": "lbfgs"}
        if name == "lbfgs3":
            kw["history_size"] = 3
        elif name == "adam":
            kw = {"optimizer": "adam", "learning_rate": s.resolved().learning_rate * ADAM_LR_RATIO}
        start = time.perf_counter()
        run = painterly.stylize(content, style, s, scales=(size,), iterations=evals, init_image=coarse.image, **kw)
        losses = [h["total"] for h in run.history]
        out["runs"][name] = {
            "seconds": time.perf_counter() - start,
            "losses": losses,
            "plateau_1pct": plateau(losses, 0.01),
            "plateau_half_pct": plateau(losses, 0.005),
            "score": painterly.score(run.image, content, style, s)["total"],
        }
    out["threads"] = torch.get_num_threads()
    return out


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(main(int(a[0]) if a else 1024, int(a[1]) if len(a) > 1 else 150, a[2] if len(a) > 2 else "lbfgs")))
