"""How many CPU threads a run uses and how long they spin: right on an idle CPU and on a busy one.

torch's CPU kernels run on an OpenMP thread pool (GNU libgomp in the Linux wheels), one thread per
core. A thread that reaches the end of a parallel step first *spins* waiting for the others, by
default for 300,000 rounds, before it sleeps. On an idle machine the spinning is what makes two
threads fast. Beside another busy program the scheduler puts one thread aside, and the other spins
through its time slice for nothing: a 128 px run beside a second stylisation took six times as long
with two threads as with one (issue #17; BENCHMARKS.md, "Sharing the CPU", has the measurements
behind every choice here). :func:`configure_threads` decides both, once per process:

- **Spinning is cut short** (``GOMP_SPINCOUNT`` = :data:`SPIN_COUNT`): long enough to bridge the
  short gaps between torch's parallel steps (on an idle CPU within noise of the default), short
  enough that a thread whose partner lost its core soon sleeps instead of burning the core.
  ``OMP_WAIT_POLICY=PASSIVE`` (no spinning at all) was measured too: best beside busy programs,
  but 10-15 % slower than the default on an idle CPU at 128 px, so it is not the default.
  libgomp reads its environment once, when torch loads it, so this only takes effect if torch is
  not imported yet; where the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, theirs stands.
- **One thread per free core**: the cores this process may use (``os.sched_getaffinity``: follows
  ``taskset``, cpusets, a container's or a Ray worker's CPU set) less those other processes kept
  busy while torch was being imported (or for :data:`SAMPLE_SECONDS`), read from ``/proc/stat``.
  Beside one busy program on two cores, one thread has no partner to wait for and takes the core
  the scheduler gives it; on an idle CPU it is every core, as before.

It is for whoever owns the process (``painterly`` itself, ``painterly serve``, a batch worker),
never run on import. ``requested`` (``--threads N``) replaces the count but keeps the short spin, and so does the user's
``OMP_NUM_THREADS`` where nothing is requested.
With OpenMP, torch applies a thread count to the calling thread (and to threads that have not
yet run a parallel operation), so a server calls it in the thread that runs the jobs, and may pass
``look_again=True`` before each job to look at the CPU afresh.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

SPIN_COUNT = 3000  # libgomp's spin rounds before a waiting thread sleeps (its default: 300,000)
SAMPLE_SECONDS = 0.1  # the shortest look at /proc/stat when torch is already imported
_USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ThreadPlan:
    """What :func:`configure_threads` decided, for a log line or a benchmark."""

    threads: int
    limited_spin: bool  # GOMP_SPINCOUNT was set in time (torch not yet imported, user set neither)
    busy_elsewhere: float  # cores other processes kept busy while we looked (0.0 when not measured)
    why: str


def configure_threads(requested: int | None = None, *, look_again: bool = False) -> ThreadPlan:
    """Set this process's OpenMP spinning and torch's CPU thread count; return what was chosen.

    Call it where painterly owns the process, before anything imports torch if possible (it then
    imports torch itself, and the import doubles as the look at how busy the CPU is). ``requested``
    is taken as it is; ``None`` means the user's ``OMP_NUM_THREADS`` where set, else one thread per
    usable core not kept busy by other processes, at least one. The CPU is looked at once per
    process: later calls apply the same count (so two runs in one process compute alike) unless
    ``look_again`` (a long-lived server, before a job).
    """
    global _plan
    limited = _limit_spinning()
    why = "as requested"
    if requested is None and (from_env := openmp_thread_count()) is not None:
        requested, why = from_env, "as OMP_NUM_THREADS says"
    if requested is not None:
        import torch

        torch.set_num_threads(requested)
        return ThreadPlan(requested, limited, 0.0, why)
    if _plan is None or look_again:
        cores = usable_cores()
        before = _machine_busy_seconds()
        own, start = time.process_time(), time.perf_counter()
        import torch  # often the first import: it takes a second or two, which this look reuses

        time.sleep(max(0.0, SAMPLE_SECONDS - (time.perf_counter() - start)))
        busy = _busy_since(before, own, start)
        threads = max(1, min(cores, round(cores - busy)))
        why = f"{threads} of {cores} usable cores free ({busy:.1f} busy elsewhere)"
        _plan = ThreadPlan(threads, limited, busy, why)
    import torch

    torch.set_num_threads(_plan.threads)
    return _plan


_plan: ThreadPlan | None = None  # the first look at the CPU, kept for the process
_spin_limited: bool | None = None  # whether GOMP_SPINCOUNT was ours and in time, decided on the first call


def _limit_spinning() -> bool:
    """Shorten OpenMP's spin-wait (first call only) unless the user chose a policy or libgomp is loaded."""
    global _spin_limited
    if _spin_limited is None:
        chosen = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
        _spin_limited = not chosen and "torch" not in sys.modules  # torch loads libgomp, which reads it then
        if _spin_limited:
            os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return _spin_limited


def openmp_thread_count() -> int | None:
    """The user's ``OMP_NUM_THREADS`` (its first entry, as OpenMP reads a list), or None if unset or not a count.

    It stands as ``--threads`` would: a count chosen from the machine's load can differ from job to job,
    and two thread counts sum in different orders, so a job resumed under a different count would not
    repeat the uninterrupted one bit for bit; whoever pins the count gets the same count every time.
    """
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def match_checkpoint(checkpoint: dict | None, requested: int | None = None) -> int | None:
    """Before resuming ``checkpoint``: run on the thread count its first part ran on; return the count set.

    Nothing changes where the count is pinned (``requested``, i.e. ``--threads``, or ``OMP_NUM_THREADS``)
    or the checkpoint names none (written before it was recorded): the chosen count then stands.
    Without this, a run interrupted on an idle machine and resumed beside a busy neighbour would
    continue on fewer threads and end on other pixels than the uninterrupted run.
    """
    count = None if checkpoint is None else checkpoint.get("threads")
    if requested is not None or openmp_thread_count() is not None or not isinstance(count, int) or count < 1:
        return None
    import torch

    torch.set_num_threads(count)
    return count


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask where the OS has one, else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def busy_cores_elsewhere(seconds: float = SAMPLE_SECONDS) -> float:
    """Cores kept busy by other processes over the next ``seconds`` (0.0 where ``/proc/stat`` is absent).

    The whole machine's busy time from ``/proc/stat`` less this process's own CPU time over the
    same interval, divided by the interval. Counts every core, not only this process's affinity.
    """
    before = _machine_busy_seconds()
    own, start = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return _busy_since(before, own, start)


def _busy_since(before: float | None, own: float, start: float) -> float:
    after = _machine_busy_seconds()
    wall = time.perf_counter() - start
    if before is None or after is None or wall <= 0:
        return 0.0
    return max(0.0, (after - before - (time.process_time() - own)) / wall)


def _machine_busy_seconds() -> float | None:
    """CPU seconds spent not idle, summed over all cores, since boot; None off Linux."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if len(fields) < 5 or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal (guest is in user)
    return (sum(ticks) - ticks[3] - ticks[4]) / _USER_HZ
