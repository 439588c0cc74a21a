"""Many pictures in one run: :func:`batch` and ``painterly batch``.

One process paints item after item (torch is imported and the network's weights are read once
for the process), or ``engine="ray"`` hands each item to a Ray task (:mod:`painterly.batch_ray`).
Either way this process alone writes the outputs and the report, so:

* **resumable and idempotent**: the report (``batch.json``) records, per output, a hash of its
  resolved settings and of its input files; an output whose record matches is skipped, an item
  that was mid-run resumes from ``OUT.ckpt``, and every file is written atomically, so a batch
  killed at any point and started again with the same command does only what is left;
* **failures isolated**: an item that fails (a corrupt image, out of memory) is recorded with its
  one line and the batch goes on; a rerun keeps the failure unless ``retry_failed``, or its inputs
  or settings changed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import batch_plan
from .batch_plan import DEFAULT_NAME, PAIRINGS, Item
from .config import Settings
from .errors import InputError, PainterlyError
from .files import atomic_write, remove, writable_folder
from .signals import StopOnSignal

REPORT_VERSION = 1
REPORT_NAME = "batch.json"
ENGINES = ("local", "ray")
FAILED_EXIT = 1  # some items failed (2 stays "bad command line", as everywhere in painterly)
# The report is rewritten after an item unless the last write took more than this share of the
# time since: a batch of a million items does not spend its time rewriting a growing JSON file.
REPORT_SHARE = 0.05


def plan(contents: Sequence[str | Path] = (), styles: Sequence[str | Path] = (), output_dir: str | Path = ".", *,
         manifest: str | Path | None = None, pair: str = "cross", pair_seed: int = 0,
         name: str = DEFAULT_NAME) -> list[Item]:  # fmt: skip
    """The items a batch would paint, checked (paths, pairing, names), in order."""
    folder = Path(output_dir).expanduser()
    if manifest is not None:
        if contents or styles:
            raise InputError("give either a manifest or contents and styles, not both")
        items = batch_plan.read_manifest(manifest, folder, name)
    else:
        found = batch_plan.find_images(contents, what="content", exclude=folder)
        pairs = batch_plan.pair(found, batch_plan.find_images(styles, what="style", exclude=folder), pair, pair_seed)
        items = batch_plan.items_from_pairs(pairs, folder, name)
    batch_plan.check_unique(items)
    return items


def batch(contents: Sequence[str | Path] = (), styles: Sequence[str | Path] = (), output_dir: str | Path = ".",
          settings: Settings | None = None, *, manifest: str | Path | None = None, pair: str = "cross",
          pair_seed: int = 0, name: str = DEFAULT_NAME, **options: Any) -> dict[str, Any]:  # fmt: skip
    """Paint every item of a batch into ``output_dir``; returns the report (what ``batch.json`` holds).

    Contents and styles are files, folders or globs, paired ``cross`` (every combination),
    ``one-to-one`` or ``random`` (a style per content, seeded by ``pair_seed``); or a ``manifest``
    (CSV or JSON Lines, see :func:`painterly.batch_plan.read_manifest`). ``options`` are those of
    :func:`run`. A failed item does not raise: it is in the report with its error.
    """
    items = plan(contents, styles, output_dir, manifest=manifest, pair=pair, pair_seed=pair_seed, name=name)
    return run(items, output_dir, settings, **options)


def run(items: Sequence[Item], output_dir: str | Path, settings: Settings | None = None, *, engine: str = "local",
        ray_address: str | None = None, ray_cpus: int | None = None, threads: int | None = None,
        retry_failed: bool = False, checkpoint_every: float = 300.0, report: str | Path | None = None,
        on_item: Callable[[dict[str, Any]], None] | None = None, stop: threading.Event | None = None,
        progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Paint ``items`` (from :func:`plan`), skipping what the report says is done.

    ``engine`` is ``local`` (this process) or ``ray`` (a local Ray, or the cluster at
    ``ray_address``: ``HOST:PORT`` or ``auto``); ``threads`` are the CPU threads per item;
    ``checkpoint_every`` seconds an item's ``OUT.ckpt`` is written (local engine; 0: never).
    ``on_item`` receives each item's report entry once, when it is settled; ``stop`` ends the batch
    after the current item's evaluation, keeping its checkpoint; ``progress`` draws a bar.
    """
    if engine not in ENGINES and ray_address is None:
        raise InputError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    engine = "ray" if ray_address is not None else engine
    if engine == "ray":  # without the extra: its one line, before anything is written
        from .batch_ray import paint_on_ray
    folder = Path(output_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    if (problem := writable_folder(folder)) is not None:
        raise InputError(problem)
    base = settings or Settings()
    resolved = [batch_plan.item_settings(base, item) for item in items]  # every per-row setting checked before any work
    book = Report(Path(report).expanduser() if report else folder / REPORT_NAME, items, engine, base)
    hashes: dict[Path, str] = {}
    todo = []
    for item, s in zip(items, resolved):
        keys = {"settings_key": _settings_key(s), "inputs_key": _inputs_key(item, hashes)}
        if book.settled(item, keys, retry_failed):
            continue
        book.entries[item.key].update(keys)
        todo.append((item, s))
    book.write(force=True)
    for item in items:  # what the last run settled is settled now, too
        if book.entries[item.key]["status"] != "pending" and on_item is not None:
            on_item(book.entries[item.key])
    bar = _Bar(len(todo), book, enabled=progress)
    stop = stop or threading.Event()
    if engine == "ray":
        outcomes = paint_on_ray(todo, address=ray_address, cpus=ray_cpus, threads=threads, stop=stop)
    else:
        outcomes = _paint_here(todo, threads=threads, checkpoint_every=checkpoint_every, stop=stop)
    try:
        for item, outcome in outcomes:
            entry = _settle(item, outcome, book)
            bar.update(entry)
            if on_item is not None and entry["status"] != "interrupted":
                on_item(entry)
    finally:
        bar.close()
        book.write(force=True, finished=not stop.is_set())
    return book.data()


# --------------------------------------------------------------------------------- the local engine
def _paint_here(todo, *, threads: int | None, checkpoint_every: float, stop: threading.Event) -> Iterator:
    """Each item in this process; an item that was mid-run resumes from its ``OUT.ckpt``."""
    import torch

    from .api import stylize

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield from _paint_each(todo, stylize, checkpoint_every, stop, threads)
    finally:
        torch.set_num_threads(before)  # the caller's process keeps its own setting


def _paint_each(todo, stylize, checkpoint_every: float, stop: threading.Event, threads: int | None) -> Iterator:
    import torch

    from .checkpoint import load_checkpoint, save_checkpoint
    from .threads import match_checkpoint

    count = torch.get_num_threads()  # the batch's; an item resumed on its checkpoint's count goes back to it
    for item, s in todo:
        if stop.is_set():
            return
        ckpt = checkpoint_path(item)
        item.output.parent.mkdir(parents=True, exist_ok=True)  # the checkpoint goes there before the output
        resume = None
        if ckpt.exists():
            with contextlib.suppress(InputError):  # a damaged checkpoint: start the item over
                resume = load_checkpoint(ckpt)
        torch.set_num_threads(count)
        match_checkpoint(resume, threads)  # unpinned: the count the item's first part ran on
        save = None if checkpoint_every <= 0 else (lambda state, ckpt=ckpt: save_checkpoint(state, ckpt))
        began = time.perf_counter()
        try:
            try:
                result = stylize(item.content, list(item.styles), s, stop=stop, resume=resume, on_checkpoint=save,
                                 checkpoint_every=checkpoint_every)  # fmt: skip
            except InputError as err:
                if resume is None or not str(err).startswith("the checkpoint"):
                    raise
                resume = None  # made with other settings or inputs: this item starts over
                result = stylize(item.content, list(item.styles), s, stop=stop, on_checkpoint=save,
                                 checkpoint_every=checkpoint_every)  # fmt: skip
        except Exception as err:  # noqa: BLE001 -- one item's failure, whatever it is, must not end the batch
            yield item, {"error": one_line(err), "seconds": time.perf_counter() - began}
            continue
        if result.interrupted and result.checkpoint() is not None:
            save_checkpoint(result.checkpoint(), ckpt)
        yield item, {
            "image": result.image, "losses": result.losses, "seconds": result.seconds,
            "evaluations": result.evaluations, "error": result.message or None, "interrupted": result.interrupted,
            "resumed_from": None if resume is None else resume["position"]["iteration"],
        }  # fmt: skip


def checkpoint_path(item: Item) -> Path:
    return Path(f"{item.output}.ckpt")


def one_line(err: BaseException) -> str:
    """An error as the report's one line: a PainterlyError's own message, anything else with its type."""
    text = " ".join(str(err).split())
    return text if isinstance(err, PainterlyError) else f"{type(err).__name__}: {text}"


# ------------------------------------------------------------------------------- settling an item
def _settle(item: Item, outcome: dict[str, Any], book: Report) -> dict[str, Any]:
    """Write the item's output (here, and only here), then its report entry, then drop its checkpoint."""
    entry = book.entries[item.key]
    entry.update(seconds=round(outcome.get("seconds") or 0.0, 3), resumed_from=outcome.get("resumed_from"),
                 evaluations=outcome.get("evaluations"), error=outcome.get("error"))  # fmt: skip
    if outcome.get("losses"):
        entry.update(losses=outcome["losses"], loss=outcome["losses"].get("total"))
    if outcome.get("interrupted"):
        entry["status"] = "interrupted"  # its checkpoint stays: the next run resumes it
        book.write(force=True)
        return entry
    if outcome.get("image") is not None:
        try:
            _write_output(item, outcome["image"])
        except PainterlyError as err:
            entry["error"] = one_line(err)
    entry["status"] = "failed" if entry["error"] else "done"
    entry["finished"] = _now()
    book.write()
    remove(checkpoint_path(item))  # with any half-written one a killed batch left
    return entry


def _write_output(item: Item, image: Any) -> None:
    """The one place a batch writes an output: an image tensor (local) or its encoded bytes (Ray)."""
    item.output.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, bytes):
        atomic_write(item.output, image)
    else:
        from .image import save_image

        save_image(image, item.output)


def _settings_key(s: Settings) -> str:
    """The resolved settings an output depends on (the device only changes where it is painted)."""
    values = {k: v for k, v in s.to_dict().items() if k != "device"}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _inputs_key(item: Item, cache: dict[Path, str]) -> str:
    digest = hashlib.sha256()
    for path in (item.content, *item.styles):
        if path not in cache:
            try:
                cache[path] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as err:  # unreadable now: the item will fail with the loader's own line
                cache[path] = f"unreadable: {err.strerror}"
        digest.update(cache[path].encode())
    return digest.hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------------------------------ report
class Report:
    """``batch.json``: the batch's settings, a summary and one entry per item, rewritten atomically."""

    def __init__(self, path: Path, items: Sequence[Item], engine: str, settings: Settings) -> None:
        self.path, self.engine, self.settings = path, engine, settings
        self.previous = self._read_previous()
        self.entries = {
            item.key: {"output": item.key, "content": str(item.content), "styles": [str(s) for s in item.styles],
                       "overrides": _jsonable(item.overrides), "status": "pending", "seconds": None, "loss": None,
                       "losses": None, "evaluations": None, "error": None, "resumed_from": None, "finished": None,
                       "settings_key": None, "inputs_key": None}
            for item in items
        }  # fmt: skip
        self.started, self.finished = _now(), None
        self.last_write, self.write_cost = 0.0, 0.0

    def _read_previous(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        try:
            old = json.loads(self.path.read_text())
            return {e["output"]: e for e in old["items"]} if old.get("version") == REPORT_VERSION else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # unreadable: everything is done again, which is safe

    def settled(self, item: Item, keys: dict[str, str], retry_failed: bool) -> bool:
        """Take over the last run's entry if it still holds: same settings, same inputs, output there."""
        old = self.previous.get(item.key)
        if old is None or any(old.get(k) != v for k, v in keys.items()):
            return False
        entry = self.entries[item.key]
        if old.get("status") in ("done", "skipped") and item.output.is_file():
            entry.update({k: old.get(k) for k in entry if k in old}, status="skipped")
            return True
        if old.get("status") == "failed" and not retry_failed:
            entry.update({k: old.get(k) for k in entry if k in old})
            return True
        return False

    def summary(self) -> dict[str, int]:
        counts = {s: 0 for s in ("done", "skipped", "failed", "interrupted", "pending")}
        for e in self.entries.values():
            counts[e["status"]] += 1
        return {"total": len(self.entries), **counts}

    def data(self) -> dict[str, Any]:
        return {"version": REPORT_VERSION, "engine": self.engine, "started": self.started, "updated": _now(),
                "finished": self.finished, "summary": self.summary(), "settings": self.settings.to_dict(),
                "items": list(self.entries.values())}  # fmt: skip

    def write(self, force: bool = False, finished: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_write < self.write_cost / REPORT_SHARE:
            return
        if finished:
            self.finished = _now()
        atomic_write(self.path, json.dumps(self.data(), indent=1) + "\n", durable=False)
        self.last_write = time.perf_counter()
        self.write_cost = self.last_write - now


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


class _Bar:
    """Progress over the items to paint: a tqdm bar on a terminal (done, failed, time left), else a
    line per item."""

    def __init__(self, total: int, book: Report, enabled: bool) -> None:
        self.total, self.book, self.enabled, self.count, self.began = total, book, enabled, 0, time.monotonic()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="item", dynamic_ncols=True, desc="painterly batch")

    def update(self, entry: dict[str, Any]) -> None:
        self.count += 1
        if not self.enabled:
            return
        c = self.book.summary()
        if self.bar is not None:
            self.bar.set_postfix(done=c["done"], failed=c["failed"], refresh=False)
            self.bar.update(1)
            return
        rate = (time.monotonic() - self.began) / self.count
        left = f", about {rate * (self.total - self.count):.0f} s left" if self.count < self.total else ""
        what = f"failed: {entry['error']}" if entry["status"] == "failed" else entry["status"]
        print(f"painterly batch: {self.count}/{self.total} {entry['output']} {what} ({c['done']} done, "
              f"{c['failed']} failed{left})", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    from .flags import Parser, add_settings_flags, count, seconds

    about = (
        "Paint many pictures: contents x styles, or a manifest, into a folder tree that mirrors the contents'. "
        "Run the same command again to finish a stopped batch."
    )
    p = Parser(prog="painterly batch", description=about)
    p.add_argument("contents", nargs="*", metavar="content", help="content images: files, folders or globs")
    p.add_argument("-s", "--style", dest="styles", action="append", default=[], metavar="STYLE",
                   help="style images: a file, folder or glob (repeat for more)")  # fmt: skip
    p.add_argument("--manifest", metavar="FILE", help="CSV or JSON Lines: content, style(s), output, settings")
    p.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="where the outputs and batch.json go")
    p.add_argument("--pair", choices=PAIRINGS, default="cross",
                   help="cross: every content with every style; one-to-one; random: one style per content "
                        "(default: %(default)s)")  # fmt: skip
    p.add_argument("--pair-seed", type=int, default=0, metavar="N", help="seed of --pair random (default: 0)")
    p.add_argument("--name", default=DEFAULT_NAME, metavar="TEMPLATE", help="output name (default: %(default)s)")
    p.add_argument("--report", metavar="FILE", help=f"the report (default: DIR/{REPORT_NAME})")
    p.add_argument("--retry-failed", action="store_true", help="paint again the items that failed last time")
    p.add_argument("--checkpoint-every", type=seconds, default=300.0, metavar="SECONDS",
                   help="write an item's OUT.ckpt this often, so a killed batch resumes it "
                        "(default: %(default)s)")  # fmt: skip
    p.add_argument("--engine", choices=ENGINES, default="local", help="local (this process) or ray")
    p.add_argument("--ray-address", metavar="HOST:PORT", help="run on this Ray cluster ('auto': the one here)")
    p.add_argument("--ray-cpus", type=count, metavar="N", help="CPUs of the local Ray it starts (default: all)")
    p.add_argument("--threads", type=count, metavar="N", help="CPU threads per item (Ray: the CPUs each task asks for)")
    p.add_argument("--quiet", action="store_true", help="no progress, only the summary line")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    add_settings_flags(p)
    return p


def main(argv: Sequence[str]) -> int:
    from .flags import settings_from

    args = build_parser().parse_args(list(argv))
    if not args.manifest and not args.contents:
        raise InputError("give content images (files, folders or globs) or --manifest FILE")
    if not args.manifest and not args.styles:
        raise InputError("give at least one --style (a file, folder or glob), or --manifest FILE")
    items = plan(args.contents, args.styles, args.output_dir, manifest=args.manifest, pair=args.pair,
                 pair_seed=args.pair_seed, name=args.name)  # fmt: skip
    memory: contextlib.AbstractContextManager = contextlib.nullcontext()
    if args.engine == "local" and args.ray_address is None:  # this process paints: as for one picture
        from .device import reuse_freed_memory
        from .threads import configure_threads

        configure_threads(args.threads)  # the thread policy (#17); args.threads stays None unless pinned
        memory = reuse_freed_memory()
    # With Ray the driver only reads inputs and writes outputs: it never imports torch (2 s it would
    # add to Ray's own start; tests/test_batch.py checks it).
    say = functools.partial(print, file=sys.stderr)
    signals = StopOnSignal(say, "stopping after this evaluation, keeping the item's checkpoint", "painterly batch")
    with signals, memory:
        report = run(items, args.output_dir, settings_from(args), engine=args.engine, ray_address=args.ray_address,
                     ray_cpus=args.ray_cpus, threads=args.threads, retry_failed=args.retry_failed,
                     checkpoint_every=args.checkpoint_every, report=args.report, stop=signals.stop,
                     progress=not args.quiet)  # fmt: skip
    where = Path(args.report) if args.report else Path(args.output_dir) / REPORT_NAME
    print(f"painterly batch: {summary_line(report)} (report: {where})", file=sys.stderr)
    if signals.stop.is_set():
        return 130
    return FAILED_EXIT if report["summary"]["failed"] else 0


def summary_line(report: dict[str, Any]) -> str:
    """``16 items: 14 done, 1 skipped, 1 failed in 212 s`` (the time is this run's painting)."""
    c = report["summary"]
    parts = [f"{c[s]} {s}" for s in ("done", "skipped", "failed", "interrupted", "pending") if c[s]]
    return f"{c['total']} items: {', '.join(parts) or 'none'}"


class _CallableModule(types.ModuleType):
    """This module, callable: ``painterly.batch(...)`` is :func:`batch`, and ``painterly.batch.plan``,
    ``.run`` and the rest stay this module's (a function of the same name would hide them)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return batch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
