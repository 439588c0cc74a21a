"""Where a tiled run's resident memory goes, phase by phase and tile by tile.

``python -m benchmarks.memory_trace SIZE [FINAL_EVALS [TILE [OPTIMIZER [MODE [OUT.json]]]]]`` runs what
``benchmarks.memory`` runs (painterly's defaults, vgg16-hed's layout with seeded random weights, the
final scale only, TILE -1: the automatic choice) and samples, every 10 ms in a thread, VmRSS with its
anonymous and file-backed parts (``/proc/self/status``) beside glibc's ``mallinfo2``: live bytes (in use
plus mapped), the heap's free bytes and its size. The samples are cut at every tile's end and every
pass of the tiled evaluation; for each stretch it prints the peak RSS and what was live, free and
mapped at that moment, and the stretch's peak live. MODE ``reuse`` (default) runs inside
``device.reuse_freed_memory`` as the painterly command does; ``default`` leaves glibc's thresholds alone.
Prints one JSON summary line last (VmHWM, the sampled peaks); OUT.json keeps every stretch.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

GIB = 2**30
EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "painterly" / "examples"


class _Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]  # fmt: skip


def main(size: int, evals: int = 2, tile: int = -1, optimizer: str = "adam", mode: str = "reuse",
         out: str | None = None) -> dict:  # fmt: skip
    import painterly
    from painterly import tiling
    from painterly.device import reuse_freed_memory

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Info
    status = os.open("/proc/self/status", os.O_RDONLY)

    def rss() -> tuple[int, int, int]:
        text = os.pread(status, 4096, 0).decode()
        return tuple(int(re.search(rf"{k}:\s+(\d+)", text).group(1)) * 1024 for k in ("VmRSS", "RssAnon", "RssFile"))

    samples: list[tuple[float, ...]] = []  # t, rss, anon, file, live, heap free, heap, mapped
    events: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    running = [True]

    def sample() -> None:
        while running[0]:
            m = libc.mallinfo2()
            samples.append((time.perf_counter() - t0, *rss(), m.uordblks + m.hblkhd, m.fordblks, m.arena, m.hblkhd))
            time.sleep(0.01)

    def marked(fn, before: str | None, after: str):
        def wrapper(*args, **kwargs):
            if before:
                events.append((time.perf_counter() - t0, before))
            result = fn(*args, **kwargs)
            events.append((time.perf_counter() - t0, after))
            return result

        return wrapper

    release = tiling.release_freed
    tiling.release_freed = marked(release, None, "tile_end")
    first, second = tiling.TiledEvaluation.first, tiling.TiledEvaluation.second
    tiling.TiledEvaluation.first = marked(first, "p1_start", "p1_end")
    tiling.TiledEvaluation.second = marked(second, "p2_start", "p2_end")
    threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    try:
        with reuse_freed_memory() if mode == "reuse" else contextlib.nullcontext():
            result = painterly.stylize(
                EXAMPLES / "tubingen.jpg", EXAMPLES / "starry_night.jpg", model="vgg16-hed", size=size,
                iterations=evals, scales=(size,), tile=None if tile < 0 else tile, weights="random",
                optimizer=optimizer,
            )  # fmt: skip
    finally:
        tiling.release_freed, tiling.TiledEvaluation.first, tiling.TiledEvaluation.second = release, first, second
    seconds = time.perf_counter() - start
    running[0] = False
    time.sleep(0.05)
    hwm = int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024

    def at(s: tuple[float, ...]) -> dict:
        names = ("rss", "anon", "file", "live", "heap_free", "heap", "mapped")
        return {k: round(v / GIB, 3) for k, v in zip(names, s[1:])}

    bounds = [(0.0, "start"), *events, (samples[-1][0] + 1, "end")]
    stretches = []
    for (a, la), (b, lb) in zip(bounds, bounds[1:]):
        inside = [s for s in samples if a <= s[0] < b]
        if inside:
            top = max(inside, key=lambda s: s[1])
            stretches.append({"stretch": f"{la}->{lb}", "t": round(a, 1), "seconds": round(b - a, 2), **at(top),
                              "live_max": round(max(s[4] for s in inside) / GIB, 3)})  # fmt: skip
    top, most = max(samples, key=lambda s: s[1]), max(samples, key=lambda s: s[4])
    summary = {"size": size, "shape": list(result.image.shape[-2:]), "evaluations": result.evaluations,
               "optimizer": optimizer, "mode": mode, "tile": tile, "seconds": round(seconds, 1),
               "peak_bytes": hwm, "peak_gib": round(hwm / GIB, 3), "at_sampled_peak": at(top),
               "peak_live_gib": round(most[4] / GIB, 3), "samples": len(samples)}  # fmt: skip
    if out:
        from painterly.files import atomic_write

        atomic_write(out, json.dumps({"summary": summary, "stretches": stretches}))
    for s in stretches:
        print(json.dumps(s))
    return summary


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(main(int(a[0]), *(int(x) for x in a[1:3]), *a[3:6])))
