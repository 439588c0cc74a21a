"""Help, --version and usage errors answer without importing torch (issue #17: help took 2.6 s).

Each case runs in a fresh interpreter, which then lists the torch modules it ended up with.
``benchmarks/startup.py`` times the same commands.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PROBE = """
import json, sys
from painterly.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch")}))
"""


def run_cli(*argv: str) -> tuple[int, list[str], str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, capture_output=True, text=True, timeout=60)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], report["torch"], done.stderr


@pytest.mark.parametrize(
    "argv, code",
    [
        (["--help"], 0),
        (["--version"], 0),
        (["--bogus"], 2),
        (["content.jpg", "style.jpg"], 2),  # no -o
        (["content.jpg", "style.jpg", "-o", "out.png", "--size", "big"], 2),
        (["score", "--help"], 0),
        (["weights", "--help"], 0),
        (["weights", "list", "--bogus"], 2),
        (["weights", "download", "alexnet"], 2),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_help_version_and_usage_errors_do_not_import_torch(argv: list[str], code: int) -> None:
    got, torch_modules, stderr = run_cli(*argv)
    assert got == code, stderr
    assert torch_modules == [], f"painterly {' '.join(argv)} imported torch"
    if code == 2:
        assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("painterly")
