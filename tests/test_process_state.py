"""Importing painterly and calling its API leave the process as they found it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import painterly
from painterly import device

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = dict(weights="random", model="vgg16", size=32, scales=(32,), iterations=2, content_layer="relu1_2",
            style_layers=("relu1_2",))  # fmt: skip


def _python(code: str, env: dict[str, str] | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout


def test_import_changes_no_environment_variable_and_no_allocator_setting():
    code = """
import json, os
before = dict(os.environ)
import painterly, painterly.api, painterly.cli, painterly.studio  # every entry point, torch included
painterly.stylize  # the lazy names too
print(json.dumps(sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))))
"""
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": SRC}, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_importing_painterly_does_not_import_torch():
    out = _python("import sys, painterly; print('torch' in sys.modules, painterly.__version__)")
    assert out.split() == ["False", painterly.__version__]


def test_stylize_neither_reseeds_the_global_rng_nor_touches_malloc(monkeypatch):
    calls = []

    class Recorder:
        def mallopt(self, *args):
            calls.append(("mallopt", args))

        def malloc_trim(self, *args):
            calls.append(("malloc_trim", args))

    monkeypatch.setattr(device, "_glibc", lambda: Recorder())
    gen = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 32, 32, generator=gen), torch.rand(1, 3, 32, 32, generator=gen)
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    painterly.stylize(content, style, init="noise", seed=7, **TINY)
    assert torch.equal(torch.rand(3), expected)  # the caller's stream goes on as if nothing ran
    assert calls == []
    with device.reuse_freed_memory():  # the CLI's opt-in, for the process it owns
        pass
    assert [c[0] for c in calls] == ["mallopt", "mallopt", "malloc_trim"]


def test_a_tiled_stylize_leaves_malloc_alone_but_the_command_trims_after_each_tile(monkeypatch):
    # Tiles trim what they freed only where the painterly command keeps freed memory
    # (reuse_freed_memory); a library call, tiled or not, never calls into malloc.
    calls = []

    class Recorder:
        def mallopt(self, *args):
            calls.append("mallopt")

        def malloc_trim(self, *args):
            calls.append("malloc_trim")

    monkeypatch.setattr(device, "_glibc", lambda: Recorder())
    gen = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 48, 64, generator=gen), torch.rand(1, 3, 48, 64, generator=gen)
    kw = {**TINY, "size": 64, "scales": (64,), "tile": 16}
    painterly.stylize(content, style, init="noise", seed=7, **kw)
    assert calls == []
    with device.reuse_freed_memory():
        painterly.stylize(content, style, init="noise", seed=7, **kw)
    # the opt-in's two thresholds, then per evaluation the tiles' trims (4 tiles, 2 passes) and the
    # scale's lowered thresholds set and restored, and the trim on leaving
    assert calls.count("malloc_trim") > 4
    assert calls[:2] == ["mallopt", "mallopt"] and calls[-1] == "malloc_trim"


def test_a_run_without_content_term_runs_on_the_chosen_device():
    # alpha = 0 leaves no content target, from which the loop used to guess its device.
    gen = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 32, 32, generator=gen), torch.rand(1, 3, 32, 32, generator=gen)
    result = painterly.stylize(content, style, content_weight=0.0, device="cpu", **TINY)
    assert result.losses["content"] == 0.0 and result.evaluations == 2
