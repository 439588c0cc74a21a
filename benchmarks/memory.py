"""Peak resident memory of a painterly run by output size, each size in its own process.

``python -m benchmarks.memory SIZE [FINAL_EVALS [TILE [WEIGHTS [OPTIMIZER]]]]`` runs painterly's default settings at
SIZE px on the final scale only, for a few evaluations: a run's peak is set at its finest scale, not
by how many scales came before or how long it runs. It prints one JSON line: peak RSS (the kernel's
high-water mark, VmHWM), seconds, and the L-BFGS history still to come, whose bound is added to give
the peak of a full-length run. TILE is ``--tile`` (0: untiled; omitted: painterly's automatic choice);
WEIGHTS ``random`` runs vgg16-hed's layout with seeded weights (memory does not depend on them;
``hed``: the real ones); OPTIMIZER ``lbfgs`` (default) or ``adam``. The child takes painterly's thread
policy (``threads.configure_threads``) as the painterly command does.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

GIB = 2**30
EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "painterly" / "examples"


def _high_water_mark() -> int:
    """This process's peak resident memory in bytes (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _live_sampler() -> list[float]:
    """Peak bytes glibc's malloc has handed out and not taken back (mallinfo2: in use + mmapped),
    sampled every 20 ms in a thread: what the run holds, beside VmHWM, which also counts what was
    freed but kept for reuse (fragmentation). ``[peak]``, or ``[]`` where mallinfo2 is missing."""
    import ctypes
    import threading

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]  # fmt: skip

    try:
        info = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return []
    info.restype = Info
    peak = [0.0]

    def sample() -> None:
        while True:
            m = info()
            peak[0] = max(peak[0], m.uordblks + m.hblkhd)
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    return peak


def child(size: int, final_evaluations: int, tile: int | None = None, weights: str | None = None,
          optimizer: str = "lbfgs") -> dict:  # fmt: skip
    from painterly.threads import configure_threads

    configure_threads()  # before torch loads, as the painterly command does (one thread per free core)
    import torch

    import painterly
    from painterly.device import reuse_freed_memory
    from painterly.optimize import LBFGS_HISTORY_BYTES, MIN_HISTORY, optimizer_at

    live = _live_sampler()
    start = time.perf_counter()
    with reuse_freed_memory():  # as the painterly command runs it
        result = painterly.stylize(
            EXAMPLES / "tubingen.jpg", EXAMPLES / "starry_night.jpg", model="vgg16-hed", size=size,
            iterations=final_evaluations, scales=(size,), tile=tile, weights=weights, optimizer=optimizer,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    image_bytes = result.image.numel() * 4
    optimizer = optimizer_at(result.settings.optimizer, result.image.numel())
    pairs = min(result.settings.history_size, max(MIN_HISTORY, LBFGS_HISTORY_BYTES // (2 * image_bytes)))
    pairs = pairs if optimizer == "lbfgs" else 0
    pairs_held = max(0, final_evaluations - 1)  # L-BFGS stores one pair per step after the first
    return {
        "size": size,
        "width": int(result.image.shape[-1]),
        "height": int(result.image.shape[-2]),
        "peak_bytes": _high_water_mark(),
        "peak_live_bytes": int(live[0]) if live else None,
        "history_to_come_bytes": max(0, pairs - pairs_held) * 2 * image_bytes,
        "history_pairs": int(pairs),
        "optimizer": optimizer,
        "seconds": seconds,
        "evaluations": result.evaluations,
        "threads": torch.get_num_threads(),
        "tile": tile,
        "weights": weights or "hed",
    }


def measure(size: int, final_evaluations: int = 2, timeout: float = 1800, tile: int | None = None,
            weights: str | None = None) -> dict:  # fmt: skip
    """Run :func:`child` in a fresh interpreter and return its report (``error`` on failure)."""
    cmd = [sys.executable, "-m", "benchmarks.memory", str(size), str(final_evaluations)]
    if tile is not None or weights is not None:
        cmd += [str(-1 if tile is None else tile)] + ([weights] if weights else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).resolve().parents[1])
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # max over children so far
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"size": size, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    report = json.loads(lines[-1])
    report["children_peak_bytes"] = children_peak
    return report


if __name__ == "__main__":
    argv = sys.argv[1:]
    tile_arg = int(argv[2]) if len(argv) > 2 else -1
    evals = int(argv[1]) if len(argv) > 1 else 2
    weights_arg = argv[3] if len(argv) > 3 and argv[3] != "hed" else None
    tile = None if tile_arg < 0 else tile_arg
    print(json.dumps(child(int(argv[0]), evals, tile, weights_arg, argv[4] if len(argv) > 4 else "lbfgs")))
