"""``python -m benchmarks.startup``: how long ``painterly --help`` takes, and whether it imports torch.

Each command runs in a fresh process (median of ``--repeats``), beside ``python -c "import torch"``
for scale. Target (issue #17): help, ``--version`` and usage errors in under 0.5 s, without torch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Prints whether torch was imported after painterly's CLI answered (help and --version exit or return).
PROBE = (
    "import sys\n"
    "from painterly.cli import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    "print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)\n"
)


def timed(command: list[str], repeats: int) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    times, last = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    return statistics.median(times), last


def help_line(repeats: int = 5) -> str:
    """One Markdown line: the median time of ``painterly --help`` and of ``import torch``, here."""
    help_s, torch_note = timed([sys.executable, "-c", PROBE, "--help"], repeats)
    version_s, _ = timed([sys.executable, "-c", PROBE, "--version"], repeats)
    torch_s, _ = timed([sys.executable, "-c", "import torch"], repeats)
    return (
        f"`painterly --help`: {help_s:.2f} s median of {repeats} fresh processes ({torch_note}); "
        f"`painterly --version`: {version_s:.2f} s; `python -c 'import torch'` alone: {torch_s:.2f} s "
        "(target: help under 0.5 s)."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    print(help_line(p.parse_args(argv).repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
