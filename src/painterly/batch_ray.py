"""The Ray engine of :func:`painterly.batch.run`: each item a Ray task; the only module that imports Ray.

Inputs travel as bytes (each style is put in Ray's object store once) and the encoded output comes
back to the driver, which alone writes outputs and the report: workers need painterly and its
weights, but no shared file system. A task asks for one GPU where the cluster has them, otherwise
``threads`` CPUs (torch is told to use that many inside the task). Ray retries a task whose worker
died; the driver gets one result per task, so each output is written once.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import InputError

try:
    import ray
except ImportError:  # the message painterly.batch shows for --engine ray without the extra
    raise InputError("--engine ray needs Ray: pip install 'painterly[ray]'") from None

# A worker that dies (killed, out of host memory, a lost node) is retried this often by Ray.
WORKER_RETRIES = 3
# Tasks handed to Ray ahead of the free slots, so a slot that frees never waits for the driver,
# while a million-item batch does not pour every content image into the object store at once.
AHEAD = 2


def paint_bytes(meta: dict[str, Any], content: bytes, *styles: bytes) -> dict[str, Any]:
    """One item on a worker: inputs as bytes in, the encoded output and its numbers out.

    A user error (a corrupt image, out of memory) comes back as ``{"error": line}``, not raised,
    so Ray does not retry what would only fail again.
    """
    # A worker is painterly's process, as the painterly command's is: the same reproducible MKL
    # kernels (read when torch first runs MKL) and the same reuse of freed memory.
    os.environ.setdefault("MKL_CBWR", "AUTO")
    import torch

    from .api import stylize
    from .batch import one_line
    from .config import Settings
    from .device import reuse_freed_memory
    from .image import save_image

    torch.set_num_threads(meta["threads"])
    with tempfile.TemporaryDirectory(prefix="painterly-") as tmp:
        folder = Path(tmp)
        content_path = folder / f"content{meta['content_suffix']}"
        content_path.write_bytes(content)
        style_paths = []
        for i, (data, suffix) in enumerate(zip(styles, meta["style_suffixes"])):
            style_paths.append(folder / f"style{i}{suffix}")
            style_paths[-1].write_bytes(data)
        try:
            s = Settings.from_dict(meta["settings"])
            with reuse_freed_memory():
                result = stylize(content_path, style_paths, s)
            out = save_image(result.image, folder / f"out{meta['output_suffix']}")
        except Exception as err:  # noqa: BLE001 -- reported per item, as the local engine does
            line = one_line(err).replace(str(content_path), meta["content_name"])
            for path, name in zip(style_paths, meta["style_names"]):
                line = line.replace(str(path), name)
            return {"error": line}
        return {"image": out.read_bytes(), "losses": result.losses, "seconds": result.seconds,
                "evaluations": result.evaluations, "error": result.message or None,
                "node": os.uname().nodename}  # fmt: skip


def connect(address: str | None, cpus: int | None) -> bool:
    """Join the cluster at ``address`` (``HOST:PORT`` or ``auto``) or start a local Ray with ``cpus``
    CPUs; returns whether this call started or joined it (and so should shut it down)."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address is not None:
            ray.init(address=address, **quiet)
        else:
            # "local": a new Ray of our own, even where `ray start` left a cluster running here.
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise InputError(f"could not start or reach {where}: {' '.join(str(err).split())[:300]}") from None
    return True


def paint_on_ray(
    todo: Sequence[tuple[Any, Any]],
    *,
    address: str | None = None,
    cpus: int | None = None,
    threads: int | None = None,
    stop: threading.Event | None = None,
) -> Iterator[tuple[Any, dict]]:
    """Yield ``(item, outcome)`` as the tasks finish (in any order), for :func:`painterly.batch.run`."""
    if not todo:
        return
    started = connect(address, cpus)
    try:
        yield from _run(todo, threads, stop or threading.Event())
    finally:
        if started:
            ray.shutdown()


def _run(todo, threads: int | None, stop: threading.Event) -> Iterator[tuple[Any, dict]]:
    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0) >= 1 and todo[0][1].device in ("auto", "cuda")
    node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]]
    if threads is None:  # a task per node by default: torch's threads scale well within one machine
        threads = max(1, min(node_cpus, default=1))
    elif not gpus and threads > max(node_cpus, default=0):  # Ray would wait for such a node forever
        raise InputError(f"--threads {threads}: no node of the Ray cluster has that many CPUs "
                         f"(the largest has {max(node_cpus, default=0)})")  # fmt: skip
    task = ray.remote(paint_bytes).options(num_gpus=1 if gpus else 0, num_cpus=1 if gpus else threads,
                                           max_retries=WORKER_RETRIES, retry_exceptions=False)  # fmt: skip
    slots = int(resources.get("GPU", 0)) if gpus else max(1, int(resources.get("CPU", 1)) // threads)
    style_refs: dict[Path, Any] = {}
    waiting = list(reversed(todo))
    running: dict[Any, Any] = {}
    try:
        while waiting or running:
            while waiting and len(running) < AHEAD * slots and not stop.is_set():
                item, s = waiting.pop()
                try:
                    content = _read(item.content)
                    for path in item.styles:
                        if path not in style_refs:
                            style_refs[path] = ray.put(_read(path))
                except InputError as err:
                    yield item, {"error": str(err)}
                    continue
                refs = [style_refs[path] for path in item.styles]
                meta = {"settings": s.to_dict(), "threads": 1 if gpus else threads,
                        "content_name": str(item.content), "content_suffix": item.content.suffix,
                        "style_names": [str(p) for p in item.styles], "style_suffixes": [p.suffix for p in item.styles],
                        "output_suffix": item.output.suffix}  # fmt: skip
                running[task.remote(meta, content, *refs)] = item
            if not running:
                return
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            if stop.is_set():
                return
            for ref in done:
                item = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as err:  # the worker died more often than Ray retries
                    outcome = {"error": f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"}
                yield item, outcome
    finally:
        for ref in running:
            ray.cancel(ref, force=True)


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot be read: {err.strerror or err}") from None
