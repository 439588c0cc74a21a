"""Cost of the exact tiled evaluation against an untiled one, in one run.

``python -m benchmarks.tiling [SIZE] [TILE] [REPEATS]`` (default 2048 px, 1024 px tiles, 2 repeats):
vgg16-hed's layout with random weights (the cost does not depend on the weights) evaluates one
content/style pair at SIZE px untiled, then tiled with each of the tiled path's savings and without
them (pass 2 starting from the tile pass 1 kept; the Gram's backward as one channels-last product),
and tiled through the first three blocks only. Each forward + backward is timed REPEATS times after
the targets are built, the variants interleaved round by round (so a burst of other work on a shared
machine spreads over all of them); the fastest of each counts. Prints one JSON line with the seconds
and the ratios tiled / untiled.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "painterly" / "examples"

# name: (tile?, depth, KEEP_LAST_TILE, CHANNELS_LAST_GRAM)
VARIANTS = {
    "untiled": (False, None, True, True),
    "tiled": (True, None, True, True),
    "tiled_no_keep": (True, None, False, True),
    "tiled_before": (True, None, False, False),
    "tiled_pool3": (True, "pool3", True, True),
}


def main(size: int = 2048, tile: int = 1024, repeats: int = 2, variants: str = ",".join(VARIANTS)) -> dict:
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
    names = variants.split(",")
    objectives = {}
    for name in names:
        tiled, depth, _, _ = VARIANTS[name]
        tiling.Tiler.__init__.__defaults__ = (depth,)
        problem.settings = s.__class__(**{**s.__dict__, "tile": tile if tiled else 0})
        objectives[name] = problem.objective_at(shape)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            _, _, keep, gram = VARIANTS[name]
            tiling.KEEP_LAST_TILE, tiling.CHANNELS_LAST_GRAM = keep, gram
            x = content.clone().requires_grad_(True)
            start = time.perf_counter()
            objectives[name](x)["total"].backward()
            times[name].append(time.perf_counter() - start)
    for name in names:
        out[name] = min(times[name])
        out[name + "_all"] = times[name]
        if name != "untiled" and "untiled" in times:
            out["ratio_" + name] = out[name] / out["untiled"]
    tiler = next((o.tiler for o in objectives.values() if o.tiler is not None), None)
    out["tiles"] = len(tiler.tiles(*shape)) if tiler is not None else 1
    out["threads"] = torch.get_num_threads()
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    nums = [int(a) for a in args[:3]]
    print(json.dumps(main(*nums, *args[3:4])))
