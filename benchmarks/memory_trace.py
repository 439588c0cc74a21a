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

The process takes painterly's thread policy (``threads.configure_threads``: one thread per free core,
OpenMP's short spin) as the painterly command does; with torch's defaults (two threads spinning 300,000
rounds) a tiled evaluation beside another busy process took 1.6x as long (BENCHMARKS.md, "Print size,
sixth session"). The sampler keeps each stretch's peaks only, not every sample: a list of every
10 ms sample grew by ~0.1 GiB an hour and was counted in the very VmHWM it measured.
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
    from painterly.threads import configure_threads

    configure_threads()  # before torch loads, as the painterly command does
    import painterly
    from painterly import tiling
    from painterly.device import reuse_freed_memory

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Info
    status = os.open("/proc/self/status", os.O_RDONLY)

    def rss() -> tuple[int, int, int]:
        text = os.pread(status, 4096, 0).decode()
        return tuple(int(re.search(rf"{k}:\s+(\d+)", text).group(1)) * 1024 for k in ("VmRSS", "RssAnon", "RssFile"))

    # Per stretch (between two events): its sample of highest RSS and its highest live bytes; and the
    # run's highest-RSS and highest-live samples. Constant memory, however long the run.
    stretches: list[dict] = []
    current: dict = {"label": "start", "t": 0.0, "top": None, "live_max": 0, "n": 0}
    overall = {"top": None, "most": None, "n": 0}
    t0 = time.perf_counter()
    running = [True]
    lock = threading.Lock()

    def sample() -> None:
        while running[0]:
            m = libc.mallinfo2()
            s = (time.perf_counter() - t0, *rss(), m.uordblks + m.hblkhd, m.fordblks, m.arena, m.hblkhd)
            with lock:
                if current["top"] is None or s[1] > current["top"][1]:
                    current["top"] = s
                current["live_max"] = max(current["live_max"], s[4])
                current["n"] += 1
                if overall["top"] is None or s[1] > overall["top"][1]:
                    overall["top"] = s
                if overall["most"] is None or s[4] > overall["most"][4]:
                    overall["most"] = s
                overall["n"] += 1
            time.sleep(0.01)

    def event(label: str) -> None:
        now = time.perf_counter() - t0
        with lock:
            stretches.append({**current, "label": f"{current['label']}->{label}", "seconds": now - current["t"]})
            current.update(label=label, t=now, top=None, live_max=0, n=0)
        if label.startswith("p"):  # progress on stderr, for a long run: the pass, its time, VmHWM so far
            hwm = re.search(r"VmHWM:\s+(\d+)", os.pread(status, 4096, 0).decode()).group(1)
            print(f"{label} t={now:.0f}s VmHWM={int(hwm) / 2**20:.3f} GiB", file=sys.stderr, flush=True)

    def marked(fn, before: str | None, after: str):
        def wrapper(*args, **kwargs):
            if before:
                event(before)
            result = fn(*args, **kwargs)
            event(after)
            return result

        return wrapper

    release = tiling.release_tile
    tiling.release_tile = marked(release, None, "tile_end")
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
        tiling.release_tile, tiling.TiledEvaluation.first, tiling.TiledEvaluation.second = release, first, second
    seconds = time.perf_counter() - start
    running[0] = False
    time.sleep(0.05)
    hwm = int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024

    def at(s: tuple[float, ...]) -> dict:
        names = ("rss", "anon", "file", "live", "heap_free", "heap", "mapped")
        return {k: round(v / GIB, 3) for k, v in zip(names, s[1:])}

    event("end")
    out_stretches = []
    for st in stretches:
        if st["top"] is not None:
            out_stretches.append({"stretch": st["label"], "t": round(st["t"], 1), "seconds": round(st["seconds"], 2),
                                  **at(st["top"]), "live_max": round(st["live_max"] / GIB, 3)})  # fmt: skip
    stretches = out_stretches
    top, most = overall["top"], overall["most"]
    summary = {"size": size, "shape": list(result.image.shape[-2:]), "evaluations": result.evaluations,
               "optimizer": optimizer, "mode": mode, "tile": tile, "seconds": round(seconds, 1),
               "peak_bytes": hwm, "peak_gib": round(hwm / GIB, 3), "at_sampled_peak": at(top),
               "peak_live_gib": round(most[4] / GIB, 3), "samples": overall["n"]}  # fmt: skip
    if out:
        from painterly.files import atomic_write

        atomic_write(out, json.dumps({"summary": summary, "stretches": stretches}))
    for s in stretches:
        print(json.dumps(s))
    return summary


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(main(int(a[0]), *(int(x) for x in a[1:3]), *a[3:6])))
