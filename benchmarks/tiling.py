"""Cost of the exact tiled evaluation against an untiled one, in one run.

``python -m benchmarks.tiling [SIZE] [TILE] [REPEATS]`` (default 2048 px, 1024 px tiles, 1 repeat):
vgg16-hed's layout with random weights (the cost does not depend on the weights) evaluates one
content/style pair at SIZE px untiled, tiled through the whole network and tiled through the
first three blocks only, each forward + backward timed REPEATS times after the targets are built
(the fastest counts: the first evaluation of each pays one-off set-up), and prints one JSON line
with the seconds of each and the ratios tiled/untiled.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "painterly" / "examples"


def main(size: int = 2048, tile: int = 1024, repeats: int = 1) -> dict:
    import torch

    from painterly import tiling
    from painterly.api import build_problem
    from painterly.config import Settings
    from painterly.image import load_image, resize

    s = Settings(model="vgg16-hed", weights="random", size=size).resolved()
    content = resize(load_image(EXAMPLES / "tubingen.jpg"), size)
    problem = build_problem(content, [str(EXAMPLES / "starry_night.jpg")], s)
    shape = tuple(content.shape[-2:])
    out: dict = {"size": size, "height": shape[0], "width": shape[1], "tile": tile, "repeats": repeats}
    for name, t, depth in (("untiled", 0, None), ("tiled_whole", tile, None), ("tiled_pool3", tile, "pool3")):
        tiling.TILE_DEPTH = depth
        tiling.Tiler.__init__.__defaults__ = (depth,)
        problem.settings = s.__class__(**{**s.__dict__, "tile": t})
        objective = problem.objective_at(shape)
        times = []
        for _ in range(repeats):
            x = content.clone().requires_grad_(True)
            start = time.perf_counter()
            objective(x)["total"].backward()
            times.append(time.perf_counter() - start)
        out[name] = min(times)  # the first of each pays one-off set-up (copies, kernel choice)
        out[name + "_all"] = times
        del objective
    out["ratio_whole"] = out["tiled_whole"] / out["untiled"]
    out["ratio_pool3"] = out["tiled_pool3"] / out["untiled"]
    out["threads"] = torch.get_num_threads()
    return out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(main(*args)))
