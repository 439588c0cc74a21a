"""The thread policy: what configure_threads sets, that importing it sets nothing, the busy-core count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from painterly import threads

SRC = Path(__file__).resolve().parents[1] / "src"


def fresh_python(code: str, **env: str) -> dict:
    """Run ``code`` in a new interpreter (OpenMP reads its environment once per process); return its JSON."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    base["PYTHONPATH"] = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


# threads.py loaded on its own, as the CLI will once painterly/__init__ no longer imports torch.
STANDALONE = f"""
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("t", {str(SRC / "painterly" / "threads.py")!r})
t = importlib.util.module_from_spec(spec); sys.modules["t"] = t; spec.loader.exec_module(t)
"""


def test_before_torch_the_default_limits_spinning_and_counts_the_free_cores() -> None:
    out = fresh_python(
        STANDALONE + "plan = t.configure_threads(None)\nimport torch\n"
        "print(json.dumps({'plan': plan.__dict__, 'spin': os.environ.get('GOMP_SPINCOUNT'),"
        " 'policy': os.environ.get('OMP_WAIT_POLICY'), 'torch': torch.get_num_threads()}))"
    )
    cores, busy = len(os.sched_getaffinity(0)), out["plan"]["busy_elsewhere"]
    assert out["spin"] == str(threads.SPIN_COUNT) and out["policy"] is None and out["plan"]["limited_spin"]
    assert out["plan"]["threads"] == out["torch"] == max(1, min(cores, round(cores - busy)))


def test_the_users_openmp_settings_stand() -> None:
    code = STANDALONE + (
        "plan = t.configure_threads(None)\n"
        "print(json.dumps({'plan': plan.__dict__, 'spin': os.environ.get('GOMP_SPINCOUNT')}))"
    )
    out = fresh_python(code, OMP_WAIT_POLICY="ACTIVE")
    assert out["spin"] is None and not out["plan"]["limited_spin"]
    out = fresh_python(code, GOMP_SPINCOUNT="123")
    assert out["spin"] == "123" and not out["plan"]["limited_spin"]


def test_requested_threads_are_taken_as_they_are() -> None:
    before = torch.get_num_threads()
    try:
        plan = threads.configure_threads(1)
        assert plan.threads == torch.get_num_threads() == 1 and plan.why == "as requested"
    finally:
        torch.set_num_threads(before)


def test_the_users_omp_num_threads_is_the_count_however_busy_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pinned count is what a resumed studio job needs to repeat the uninterrupted one bit for bit."""
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "_plan", None)
    monkeypatch.setattr(threads, "_busy_since", lambda *args: 2.6)  # a look at the CPU would say one thread
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        plan = threads.configure_threads(None, look_again=True)
        assert plan.threads == torch.get_num_threads() == 3 and plan.why == "as OMP_NUM_THREADS says"
        monkeypatch.setenv("OMP_NUM_THREADS", "2,1")  # OpenMP's nested list: the outer count
        assert threads.configure_threads(None, look_again=True).threads == 2
        assert threads.configure_threads(1).threads == 1  # --threads still wins
        for junk in ("", "0", "-2", "many"):  # not a count: the machine is looked at
            monkeypatch.setenv("OMP_NUM_THREADS", junk)
            assert threads.configure_threads(None, look_again=True).threads == 1
    finally:
        torch.set_num_threads(before)


def test_the_count_follows_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Of 4 cores, 2.6 busy elsewhere leave one thread; 0.2 busy leave all four."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "_plan", None)
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(threads, "_busy_since", lambda *args: 2.6)
        assert threads.configure_threads(None).threads == torch.get_num_threads() == 1
        monkeypatch.setattr(threads, "_busy_since", lambda *args: 0.2)
        assert threads.configure_threads(None).threads == 1  # looked once per process...
        plan = threads.configure_threads(None, look_again=True)  # ...unless asked to look again
        assert plan.threads == torch.get_num_threads() == 4
        assert not plan.limited_spin and "GOMP_SPINCOUNT" not in os.environ  # torch is loaded: too late, not set
    finally:
        torch.set_num_threads(before)


def test_importing_painterly_threads_sets_nothing() -> None:
    out = fresh_python(
        "import os, json\nbefore = dict(os.environ)\nimport painterly.threads\n"
        "print(json.dumps({'changed': sorted(set(os.environ.items()) ^ set(before.items()))}))"
    )
    assert out["changed"] == []


def test_busy_cores_elsewhere_subtracts_our_own_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Machine busy time rises 0.25 s in 0.1 s of wall, 0.05 s of it ours: others kept 2 cores busy."""
    machine = iter([100.0, 100.25])
    own = iter([7.0, 7.05])
    wall = iter([50.0, 50.1])
    monkeypatch.setattr(threads, "_machine_busy_seconds", lambda: next(machine))
    monkeypatch.setattr(threads.time, "process_time", lambda: next(own))
    monkeypatch.setattr(threads.time, "perf_counter", lambda: next(wall))
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    assert threads.busy_cores_elsewhere() == pytest.approx(2.0)


def test_busy_cores_elsewhere_reads_this_machine() -> None:
    busy = threads.busy_cores_elsewhere(0.05)
    assert 0.0 <= busy <= (os.cpu_count() or 1) + 0.5


def test_a_resumed_run_goes_back_to_its_checkpoints_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unless the count is pinned (--threads, OMP_NUM_THREADS) or the checkpoint names none."""
    from painterly.checkpoint import make_checkpoint
    from painterly.config import Settings

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        checkpoint = make_checkpoint(Settings(), "inputs", {"position": {}})
        assert checkpoint["threads"] == 2
        torch.set_num_threads(1)
        assert threads.match_checkpoint(checkpoint) == 2 and torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert threads.match_checkpoint(checkpoint, requested=1) is None and torch.get_num_threads() == 1
        assert threads.match_checkpoint({"position": {}}) is None and torch.get_num_threads() == 1  # an old one
        assert threads.match_checkpoint(None) is None and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert threads.match_checkpoint(checkpoint) is None and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
