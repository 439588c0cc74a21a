"""``python -m benchmarks.contention``: painterly's thread policy on an idle CPU and beside busy neighbours.

Issue #17: torch's OpenMP threads spin while they wait, so beside another busy program a two-thread
run was six times slower than a one-thread one. This runs the same stylisation (``--model vgg16-hed``
at 128 px, a few evaluations, the examples' tubingen + starry_night) under each thread setting, in a
fresh process each time (OpenMP reads its environment once), in three conditions:

- ``idle``: nothing of ours beside it (the machine may still be shared: the table says how busy
  the other processes kept it, in cores, measured from ``/proc/stat`` during each run);
- ``painterly``: beside a second stylisation that runs without pause with today's default (one
  spinning thread per core);
- ``busy loop``: beside one ``while True: pass`` process per core.

Each setting gets its own process, started once (OpenMP reads its environment once) and warmed up;
it then runs ``--repeats`` times per condition, interleaved with the other settings. The table gives
medians and the ratio to the best setting *in the same condition*. ``--write`` puts the tables in
BENCHMARKS.md between markers. Timed: ``stylize``; not timed: starting Python, importing torch,
the warm-up, and the look at the CPU (the CLI makes it while torch is being imported).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import startup

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "src" / "painterly" / "examples"
START, END = "<!-- contention:start -->", "<!-- contention:end -->"


@dataclass(frozen=True)
class Setting:
    name: str
    env: dict[str, str]
    threads: str  # "torch" (leave torch's default), "auto" (configure_threads(None)), or a number
    note: str


SETTINGS = [
    Setting("before", {}, "torch", "torch's default: one thread per core, spinning 300,000 rounds (before #17)"),
    Setting("painterly default", {}, "auto", "configure_threads(None): GOMP_SPINCOUNT=3000, one thread per free core"),
    Setting("1 thread", {}, "1", "torch.set_num_threads(1)"),
    Setting("passive", {"OMP_WAIT_POLICY": "PASSIVE"}, "torch", "OMP_WAIT_POLICY=PASSIVE, one thread per core"),
    Setting(
        "free cores",
        {},
        "free",
        "threads = cores not busy elsewhere, spinning as before (the fallback when "
        "torch was imported before configure_threads)",
    ),  # fmt: skip
    Setting("spin 3k", {"GOMP_SPINCOUNT": "3000"}, "torch", "GOMP_SPINCOUNT=3000, one thread per core"),
    Setting("spin 1k", {"GOMP_SPINCOUNT": "1000"}, "torch", "GOMP_SPINCOUNT=1000, one thread per core"),
    Setting("spin 10k", {"GOMP_SPINCOUNT": "10000"}, "torch", "GOMP_SPINCOUNT=10000, one thread per core"),
]
DEFAULT_SETTINGS = 5  # the first five run unless --only names others (the spin counts were tried while tuning)
CONDITIONS = ("idle", "painterly", "busy loop")
# On a shared machine nothing is idle. Where we may (root), the "idle" runs are emulated by giving our
# worker nice -20: the scheduler then gives it ~87 times the share of any other (nice 0) session, so
# the other processes hardly run while it does. The table says how busy they kept the CPU anyway.
# A look at the CPU (the default's, and "free cores") would still see the others, pushed aside but
# busy, so in this condition it is given what it finds on an idle machine: 0 cores busy elsewhere.
# Every worker and neighbour runs in a session of its own, as separate programs do.
IDLE_NICE = -20


# --- the workers: one fresh process per setting, kept for all its runs -----------------------------


def worker(threads: str, evaluations: int, size: int, loop: bool) -> None:
    """In the child: configure, warm up, then one timed stylisation per "run" line on stdin (or loop)."""
    if threads == "auto":  # before torch is imported, as the CLI does
        _standalone_threads_module().configure_threads(None)
    import torch

    import painterly
    from painterly import threads as painterly_threads
    from painterly.config import Settings
    from painterly.threads import busy_cores_elsewhere, configure_threads, usable_cores

    content, style = EXAMPLES / "tubingen.jpg", EXAMPLES / "starry_night.jpg"
    settings = Settings(model="vgg16-hed", size=size, iterations=evaluations, scales=(size,))
    if threads not in ("torch", "auto", "free"):
        torch.set_num_threads(int(threads))
    painterly.stylize(content, style, dataclasses.replace(settings, iterations=2))  # weights, kernels: warm
    print("ready", flush=True)
    if loop:
        while True:
            painterly.stylize(content, style, settings)
    for line in sys.stdin:
        if line.split()[:1] != ["run"]:
            break
        # Each run looks at the CPU again, as a new CLI process would; not timed, because the CLI looks
        # while torch is being imported (threads.configure_threads), which costs nothing extra. In the
        # emulated idle condition the look is given what it finds on an idle machine (see IDLE_NICE).
        busy = (lambda *args: 0.0) if "idle" in line.split() else painterly_threads._busy_since
        if threads == "auto":
            with _patched(painterly_threads, "_busy_since", busy):
                configure_threads(None, look_again=True)
        elif threads == "free":
            free = usable_cores() - (0.0 if "idle" in line.split() else busy_cores_elsewhere())
            torch.set_num_threads(max(1, min(usable_cores(), round(free))))
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = painterly.stylize(content, style, settings)
        out = {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - cpu0,
               "threads": torch.get_num_threads(), "evaluations": result.evaluations}  # fmt: skip
        print(json.dumps(out), flush=True)


@contextlib.contextmanager
def _patched(module: types.ModuleType, name: str, value: object) -> Iterator[None]:
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


def _standalone_threads_module() -> types.ModuleType:
    """painterly/threads.py loaded on its own: ``import painterly.threads`` may import torch first
    (through ``painterly/__init__``), which would leave OpenMP's wait policy unset in this process."""
    spec = importlib.util.spec_from_file_location("_painterly_threads", ROOT / "src" / "painterly" / "threads.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def spawn(threads: str, env: dict[str, str], evaluations: int, size: int, loop: bool = False) -> subprocess.Popen:
    command = [sys.executable, "-m", "benchmarks.contention", "--worker", threads, "--evaluations", str(evaluations)]
    command += ["--size", str(size)] + (["--loop"] if loop else [])
    return subprocess.Popen(command, env=_child_env(env), cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip


def wait_ready(p: subprocess.Popen) -> None:
    assert p.stdout is not None
    if p.stdout.readline().strip() != "ready":
        raise SystemExit(f"a worker failed to start (exit {p.wait()})")


def measure(p: subprocess.Popen, ours: list[subprocess.Popen], command: str = "run") -> dict:
    """One timed run in worker ``p``; adds how many cores processes not ours kept busy meanwhile."""
    from painterly.threads import _machine_busy_seconds

    assert p.stdin is not None and p.stdout is not None
    busy0, ours0, t0 = _machine_busy_seconds() or 0.0, sum(_cpu_seconds(q.pid) for q in ours), time.perf_counter()
    p.stdin.write(command + "\n")
    p.stdin.flush()
    line = p.stdout.readline()
    if not line:
        raise SystemExit(f"a worker died (exit {p.wait()})")
    row = json.loads(line)
    wall = time.perf_counter() - t0
    busy = (_machine_busy_seconds() or 0.0) - busy0 - (sum(_cpu_seconds(q.pid) for q in ours) - ours0)
    row["others"] = max(0.0, busy / wall)
    return row


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def _renice(pid: int, nice: int) -> None:
    """Give process ``pid`` (alone in its session, so in its own scheduling autogroup) the nice value ``nice``.

    With autogroups (Linux's default for desktops and here) the scheduler shares the CPU between
    sessions first, so the nice value that counts is the autogroup's; without them, each thread's.
    """
    group = Path(f"/proc/{pid}/autogroup")
    if group.exists():
        group.write_text(str(nice))
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.setpriority(os.PRIO_PROCESS, int(task.name), nice)


def can_renice() -> bool:
    try:
        os.setpriority(os.PRIO_PROCESS, 0, IDLE_NICE)
        os.setpriority(os.PRIO_PROCESS, 0, 0)
        return True
    except OSError:
        return False


def start_neighbours(condition: str, size: int) -> list[subprocess.Popen]:
    if condition == "idle":
        return []
    from painterly.threads import usable_cores

    if condition == "busy loop":
        spin = [sys.executable, "-c", "while True: pass"]
        return [subprocess.Popen(spin, start_new_session=True) for _ in range(usable_cores())]
    neighbour = spawn("torch", {}, 1000, size, loop=True)
    wait_ready(neighbour)  # torch loaded, warm, painting
    return [neighbour]


def stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.kill()
    for p in processes:
        p.wait()


# --- the whole benchmark -------------------------------------------------------------------------


def run(
    settings: list[Setting],
    conditions: list[str],
    evaluations: int,
    size: int,
    repeats: dict[str, int],
    idle_nice: bool,
) -> dict:
    rows: dict[str, dict[str, list[dict]]] = {c: {s.name: [] for s in settings} for c in conditions}
    workers = {s.name: spawn(s.threads, s.env, evaluations, size) for s in settings}
    try:
        for p in workers.values():
            wait_ready(p)
        for condition in conditions:
            neighbours = start_neighbours(condition, size)
            try:
                for p in workers.values():  # see IDLE_NICE
                    _renice(p.pid, IDLE_NICE if condition == "idle" and idle_nice else 0)
                for r in range(repeats[condition]):
                    order = settings[r % len(settings) :] + settings[: r % len(settings)]  # rotate: no fixed slot
                    for setting in order:
                        command = "run idle" if condition == "idle" and idle_nice else "run"
                        row = measure(workers[setting.name], [*workers.values(), *neighbours], command)
                        rows[condition][setting.name].append(row)
                        print(f"{condition:>9} | {setting.name:<24} {row['seconds']:6.2f} s, {row['threads']} threads,"
                              f" others {row['others']:.2f} cores", file=sys.stderr, flush=True)  # fmt: skip
            finally:
                stop(neighbours)
    finally:
        stop(list(workers.values()))
    return rows


def tables(rows: dict, settings: list[Setting], idle_nice: bool) -> list[str]:
    lines: list[str] = []
    for condition, by_setting in rows.items():
        medians = {name: statistics.median(r["seconds"] for r in runs) for name, runs in by_setting.items()}
        best = min(medians.values())
        others = statistics.median(r["others"] for runs in by_setting.values() for r in runs)
        spread = max(r["others"] for runs in by_setting.values() for r in runs)
        how = " (emulated: our run at nice -20, see IDLE_NICE)" if condition == "idle" and idle_nice else ""
        lines += [
            f"**{condition}**{how}: other processes kept {others:.2f} cores busy (median; up to {spread:.2f})",
            "",
            "| setting | threads | median s | × best | runs (s) |",
            "|---|---|---|---|---|",
        ]
        for s in settings:
            runs = by_setting[s.name]
            ratio = medians[s.name] / best
            mark = " **(best)**" if medians[s.name] == best else ""
            runs_text = ", ".join(f"{r['seconds']:.2f}" for r in runs)
            lines.append(
                f"| {s.name}{mark} | {runs[0]['threads']} | {medians[s.name]:.2f} | {ratio:.2f} | {runs_text} |"
            )
        lines.append("")
    return lines


def machine() -> str:
    from painterly.threads import usable_cores

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    return f"{cpu}, {usable_cores()} usable cores, Python {platform.python_version()}"


def write(lines: list[str], path: Path) -> None:
    from painterly.files import atomic_write

    text = path.read_text()
    block = "\n".join([START, *lines, END])
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write(path, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.contention", description=__doc__.splitlines()[0])
    p.add_argument("--evaluations", type=int, default=10)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="runs per setting beside a neighbour")
    p.add_argument("--idle-repeats", type=int, default=5, help="runs per setting on the idle CPU (short, noisier)")
    p.add_argument("--only", default=None, help="comma-separated setting names (default: all)")
    p.add_argument("--conditions", default=",".join(CONDITIONS))
    p.add_argument("--write", action="store_true", help="put the tables in BENCHMARKS.md")
    p.add_argument("--no-nice", action="store_true", help="run the idle condition at nice 0 (see IDLE_NICE)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.evaluations, args.size, args.loop)
        return 0
    chosen = (
        SETTINGS[:DEFAULT_SETTINGS] if args.only is None else [s for s in SETTINGS if s.name in args.only.split(",")]
    )
    settings = chosen
    conditions = [c.strip() for c in args.conditions.split(",")]
    started = time.perf_counter()
    help_line = startup.help_line(repeats=3)
    idle_nice = can_renice() and not args.no_nice
    repeats = {c: args.idle_repeats if c == "idle" else args.repeats for c in conditions}
    rows = run(settings, conditions, args.evaluations, args.size, repeats, idle_nice)
    command = "python -m benchmarks.contention" + (" --write" if args.write else "")
    lines = [
        f"`{command}` ({args.evaluations} evaluations at {args.size} px, vgg16-hed, medians of "
        f"{args.idle_repeats} runs idle and {args.repeats} beside a neighbour; "
        f"{machine()}; whole benchmark {time.perf_counter() - started:.0f} s):",
        "",
        *tables(rows, settings, idle_nice),
        "Settings: " + "; ".join(f"*{s.name}*: {s.note}" for s in settings) + ".",
        "",
        help_line,
    ]
    print("\n".join(lines))
    if args.write:
        write(lines, ROOT / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
