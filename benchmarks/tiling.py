"""Cost of the exact tiled evaluation against an untiled one, in one run.

``python -m benchmarks.tiling [SIZE] [TILE] [REPEATS] [VARIANTS] [reuse]`` (default 2048 px, 1024 px tiles,
2 repeats, all variants; TILE may be a comma list, ``896,2048``: then each tiled variant runs at each
tile side, named ``VARIANT@TILE``, all against the one untiled baseline):
vgg16-hed's layout with random weights (the cost does not depend on the weights) evaluates one
content/style pair at SIZE px untiled, then tiled with each of the tiled path's savings and without them
(pass 2 starting from the tile pass 1 kept; the Gram's backward as one channels-last product; the halo
trimmed layer by layer), untiled without recomputing (``untiled_no_recompute``: the network keeps every
activation for the backward, whatever the size), untiled as the memory rule chooses (``untiled_auto``:
``tiling.choose_recompute``; the JSON says its choice), and tiled through the first three blocks only.
The ``untiled`` baseline recomputes above ``network.RECOMPUTE_ABOVE_PIXELS`` whatever the memory free,
as every table before the rule was measured. Each
forward + backward is timed REPEATS times after the targets are built, the variants interleaved round by
round (so a burst of other work on a shared machine spreads over all of them); the fastest of each
counts. Prints one JSON line with the seconds and the ratios tiled / untiled. With ``reuse`` all of it
runs inside ``device.reuse_freed_memory`` as the painterly command runs it, each tiled variant inside
``device.large_blocks_returned`` as a tiled scale does, with its own threshold (``tiled_mmap32``: 32
MiB, the third session's). The process takes painterly's thread policy (``threads.configure_threads``),
as the painterly command and ``benchmarks.memory`` do; ``OMP_NUM_THREADS`` fixes the count.
``tiled_auto`` keeps as many of pass 1's tiles as ``tiling.choose_keep`` chooses (with ``budget=GIB``
among the last arguments: as under ``--memory-budget``; without it the default's limit); the JSON says
each tiled variant's count (``keep_NAME``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "painterly" / "examples"

# name: (tile?, depth, KEEP_LAST_TILE, CHANNELS_LAST_GRAM, mmap threshold under reuse (None: device's),
#        TRIM_HALO)
VARIANTS = {
    "untiled": (False, None, True, True, None, True),
    "untiled_no_recompute": (False, None, True, True, None, True),  # the network keeps every activation
    "untiled_auto": (False, None, True, True, None, True),  # recomputing as tiling.choose_recompute says
    "tiled": (True, None, True, True, None, True),
    "tiled_no_trim": (True, None, True, True, None, False),
    "tiled_keep2": (True, None, True, True, None, True),  # KEEP_TILES 2 (KEEP below)
    "tiled_keep4": (True, None, True, True, None, True),
    "tiled_auto": (True, None, True, True, None, True),  # KEEP_TILES None: tiling.keep_for's choice (BUDGET)
    "tiled_no_keep": (True, None, False, True, None, True),
    "tiled_before": (True, None, False, False, None, False),
    "tiled_pool3": (True, "pool3", True, True, None, True),
    "tiled_mmap32": (True, None, True, True, 32 * 2**20, True),
}

# tiling.KEEP_TILES of each variant: 1 (today's before the eighth session) unless named here; None is
# the automatic choice, by the memory model under BUDGET (GiB: --memory-budget; 0: none, the default's)
KEEP = {"tiled_keep2": 2, "tiled_keep4": 4, "tiled_auto": None}


def main(size: int = 2048, tile: int | str = 1024, repeats: int = 2, variants: str = ",".join(VARIANTS),
         reuse: bool = False, budget: float = 0) -> dict:  # fmt: skip
    import contextlib

    from painterly.threads import configure_threads

    configure_threads()  # before torch loads, as the painterly command does (one thread per free core)
    import torch

    from painterly import device, tiling
    from painterly.api import build_problem
    from painterly.config import Settings
    from painterly.image import load_image, resize

    s = Settings(model="vgg16-hed", weights="random", size=size, memory_budget=budget or None).resolved()
    content = resize(load_image(EXAMPLES / "tubingen.jpg"), size)
    problem = build_problem(content, [str(EXAMPLES / "starry_night.jpg")], s)
    shape = tuple(content.shape[-2:])
    out: dict = {"size": size, "height": shape[0], "width": shape[1], "tile": tile, "repeats": repeats, "reuse": reuse}
    sides = [int(t) for t in str(tile).split(",")]
    names = []
    for name in variants.split(","):
        several = VARIANTS[name][0] and len(sides) > 1
        names += [f"{name}@{t}" for t in sides] if several else [name]
    objectives = {}
    for name in names:
        tiled, depth, *_ = VARIANTS[name.split("@")[0]]
        tiling.Tiler.__init__.__defaults__ = (depth,)
        side = int(name.split("@")[1]) if "@" in name else sides[0]
        problem.settings = s.__class__(**{**s.__dict__, "tile": side if tiled else 0})
        tiling.KEEP_TILES = KEEP.get(name.split("@")[0], 1)
        objectives[name] = problem.objective_at(shape)
        if name == "untiled":  # recomputing above the network's 1.5 MP, as before the memory rule
            objectives[name].recompute = None
        elif name == "untiled_no_recompute":
            objectives[name].recompute = False
        elif name == "untiled_auto":  # as objective_at chose it
            out["recompute_untiled_auto"] = objectives[name].recompute
        if objectives[name].tiler is not None:
            out["keep_" + name] = tiling.KEEP_TILES or objectives[name].tiler.keep
    times: dict[str, list[float]] = {name: [] for name in names}
    threshold = device.TILED_MMAP_THRESHOLD
    with device.reuse_freed_memory() if reuse else contextlib.nullcontext():
        for _ in range(repeats):
            for name in names:
                tiled, _, keep, gram, mmap, trim = VARIANTS[name.split("@")[0]]
                tiling.KEEP_LAST_TILE, tiling.CHANNELS_LAST_GRAM, tiling.TRIM_HALO = keep, gram, trim
                tiling.KEEP_TILES = KEEP.get(name.split("@")[0], 1)
                device.TILED_MMAP_THRESHOLD = threshold if mmap is None else mmap
                x = content.clone().requires_grad_(True)
                scale = device.large_blocks_returned(x.device) if tiled else contextlib.nullcontext()
                start = time.perf_counter()
                with scale:
                    objectives[name](x)["total"].backward()
                times[name].append(time.perf_counter() - start)
    device.TILED_MMAP_THRESHOLD = threshold
    for name in names:
        out[name] = min(times[name])
        out[name + "_all"] = times[name]
        if name != "untiled" and "untiled" in times:
            out["ratio_" + name] = out[name] / out["untiled"]
    for name, objective in objectives.items():
        if objective.tiler is not None:
            out["tiles_" + name] = len(objective.tiler.tiles(*shape))
    out["threads"] = torch.get_num_threads()
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    nums = [int(a) if i != 1 else a for i, a in enumerate(args[:3])]
    budget = next((float(a.split("=", 1)[1]) for a in args[4:] if a.startswith("budget=")), 0)
    print(json.dumps(main(*nums, *args[3:4], reuse="reuse" in args[4:], budget=budget)))
