"""The job queue: worker threads run the engine one job at a time (by default), in order.

Waiting jobs sit in a FIFO shared by ``workers`` threads; the database holds the same order, so a
restarted server picks the queue up again. A running job writes a checkpoint every
``checkpoint_every`` seconds and when the server stops, and goes back to the head of the queue: the
next server resumes it from that checkpoint to the pixels an uninterrupted run makes, even after a
``kill -9``. Progress goes to a :class:`~painterly.studio.events.Broker` that fans events out to
the server-sent-event streams; steps are throttled so a fast run cannot flood a browser.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PainterlyError
from ..progress import TimeLeft
from . import engine
from .events import Broker
from .store import CANCELLED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, UNREADABLE, Store

log = logging.getLogger(__name__)

STEP_EVENT_INTERVAL = 0.1  # s between step events to the page (points in between are batched)
PREVIEW_INTERVAL = 0.25  # s between preview JPEGs: at most 4 per second


@dataclass
class Live:
    """What the page needs of a running job that is not (yet) in the database."""

    stop: threading.Event = field(default_factory=threading.Event)
    progress: dict[str, Any] = field(default_factory=dict)
    history: list[list[float]] = field(default_factory=list)  # [iteration, total, content, style, tv, scale]
    preview: bytes | None = None
    preview_version: int = 0
    sent_points: int = 0
    time_left: TimeLeft = field(default_factory=TimeLeft)  # the CLI's estimate, from the same steps
    last_event: float = 0.0
    last_preview: float = 0.0
    cancelled: bool = False


class JobQueue:
    """Runs queued jobs on ``workers`` threads and reports every change to ``broker``."""

    def __init__(
        self,
        store: Store,
        broker: Broker,
        resolve_inputs: Callable[[dict], tuple[Path, list[Path]]],
        results_dir: Path,
        checkpoints_dir: Path,
        runner: engine.Runner = engine.run_engine,
        workers: int = 1,
        checkpoint_every: float = 60.0,
    ) -> None:
        self.store = store
        self.broker = broker
        self.resolve_inputs = resolve_inputs
        self.results_dir = results_dir
        self.checkpoints_dir = checkpoints_dir
        self.runner = runner
        self.workers = workers
        self.checkpoint_every = checkpoint_every
        self._waiting: deque[str] = deque()
        self._live: dict[str, Live] = {}
        self._cond = threading.Condition()
        self._closing = False
        self._threads: list[threading.Thread] = []

    # lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Queue the jobs a previous server left waiting, those it left running first (they resume)."""
        self.store.requeue_running()
        with self._cond:
            self._waiting.extend(self.store.queued_ids())
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"painterly-studio-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, timeout: float = 30.0) -> None:
        """Stop running jobs (each saves a checkpoint and waits to resume) and end the worker threads."""
        with self._cond:
            self._closing = True
            for live in self._live.values():
                live.stop.set()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    # requests from the web side ------------------------------------------------------------------

    def submit(self, job_id: str) -> None:
        with self._cond:
            self._waiting.append(job_id)
            self._cond.notify()
        self._announce(job_id)

    def cancel(self, job_id: str) -> bool:
        """Cancel a waiting or running job; False if it is neither."""
        with self._cond:
            if job_id in self._waiting:
                self._waiting.remove(job_id)
                self.store.update_job(job_id, status=CANCELLED, finished=time.time())
                self.checkpoint_path(job_id).unlink(missing_ok=True)
            elif job_id in self._live:
                self._live[job_id].cancelled = True
                self._live[job_id].stop.set()
                return True
            else:
                return False
        self._announce(job_id)
        return True

    def position(self, job_id: str) -> int | None:
        """1 for the next job to start, 2 for the one after, ...; None if not waiting."""
        with self._cond:
            try:
                return self._waiting.index(job_id) + 1
            except ValueError:
                return None

    def positions(self) -> dict[str, int]:
        with self._cond:
            return {job_id: n + 1 for n, job_id in enumerate(self._waiting)}

    def live(self, job_id: str) -> Live | None:
        with self._cond:
            return self._live.get(job_id)

    def describe(self, job: dict[str, Any], history: bool = False) -> dict[str, Any]:
        """The record the page sees: the stored job plus queue position and live progress."""
        public = {k: v for k, v in job.items() if k not in ("seq", "result", "history")}
        public["position"] = self.position(job["id"])
        live = self.live(job["id"])
        public["progress"] = dict(live.progress) if live and live.progress else None
        public["preview"] = live.preview_version if live and live.preview else None
        public["has_result"] = bool(job.get("result"))
        if history:
            public["history"] = list(live.history) if live else (job.get("history") or [])
        return public

    def _announce(self, job_id: str) -> None:
        job = self.store.get_job(job_id)
        if job is not None:
            self.broker.publish("job", self.describe(job))
        self.broker.publish("queue", {"positions": self.positions()})

    # the worker side -----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                job_id = self._waiting.popleft()
                live = self._live[job_id] = Live()
            try:
                self._run(job_id, live)
            finally:
                with self._cond:
                    del self._live[job_id]
                self._announce(job_id)

    def checkpoint_path(self, job_id: str) -> Path:
        return self.checkpoints_dir / f"{job_id}.ckpt"

    def _run(self, job_id: str, live: Live) -> None:
        job = self.store.get_job(job_id)
        if job is None:  # deleted while waiting
            return
        if job["status"] == UNREADABLE:
            self.store.update_job(job_id, status=FAILED, error="its record could not be read", finished=time.time())
            return
        resume = self._load_checkpoint(job_id)
        if resume is not None:  # the loss curve so far, up to where the checkpoint stands
            done = resume["position"]["iteration"]
            live.history = [row for row in job.get("history") or [] if row[0] <= done]
            log.info("job %s resumes from its checkpoint after evaluation %d", job_id, done)
        self.store.update_job(job_id, status=RUNNING, started=job.get("started") or time.time())
        self._announce(job_id)
        try:
            content, styles = self.resolve_inputs(job)
            settings = engine.settings_from_record(job["settings"])
            outcome = self._paint(job_id, live, content, styles, settings, resume)
        except Exception as err:  # noqa: BLE001 - any failure is reported on the job, never kills the worker
            if not isinstance(err, PainterlyError):  # a bug: keep its traceback for the server's log
                log.exception("job %s failed", job_id)
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            self.store.update_job(job_id, status=FAILED, error=message, finished=time.time(), history=live.history)
            self.checkpoint_path(job_id).unlink(missing_ok=True)
            return
        self._flush_steps(job_id, live)
        if outcome.interrupted and self._closing and not live.cancelled and not outcome.message:
            # The server is stopping, not the user: keep the place and wait for the next server.
            if outcome.checkpoint is not None:
                self._save_checkpoint(job_id, live, outcome.checkpoint)
            self.store.update_job(job_id, status=QUEUED, history=live.history)
            return
        if outcome.interrupted:
            status = CANCELLED if live.cancelled else INTERRUPTED
        else:
            status = DONE
        result = None
        if outcome.image is not None:
            path = self.results_dir / f"{job_id}.png"
            engine.save_result(outcome.image, path)
            result = path.name
        self.store.update_job(
            job_id,
            status=status,
            finished=time.time(),
            result=result,
            losses=outcome.losses,
            history=live.history,
            seconds=outcome.seconds,
            error=outcome.message or None,
        )
        self.checkpoint_path(job_id).unlink(missing_ok=True)

    def _paint(self, job_id: str, live: Live, content, styles, settings, resume) -> engine.Outcome:
        def run(resume: dict | None) -> engine.Outcome:
            return self.runner(
                content, styles, settings, lambda step: self._on_step(job_id, live, settings, step), live.stop,
                resume=resume, on_checkpoint=lambda state: self._save_checkpoint(job_id, live, state),
                checkpoint_every=self.checkpoint_every,
            )  # fmt: skip

        if resume is None:
            return run(None)
        try:
            return run(resume)
        except PainterlyError as err:  # the checkpoint no longer fits (another painterly wrote it)
            log.warning("job %s: cannot resume (%s); starting it again", job_id, err)
            self.checkpoint_path(job_id).unlink(missing_ok=True)
            live.history.clear()
            return run(None)

    def _load_checkpoint(self, job_id: str) -> dict[str, Any] | None:
        path = self.checkpoint_path(job_id)
        if not path.is_file():
            return None
        from ..checkpoint import load_checkpoint

        try:
            return load_checkpoint(path)
        except PainterlyError as err:
            log.warning("job %s: %s; starting it again", job_id, err)
            path.unlink(missing_ok=True)
            return None

    def _save_checkpoint(self, job_id: str, live: Live, state: dict[str, Any]) -> None:
        """Write the loss curve up to a resumable state, then the state (atomically).

        In this order a SIGKILL between the two leaves a curve that runs past the older checkpoint,
        which the resume cuts back; the other way round the curve could stop short of the checkpoint
        and the resumed job's curve would miss the evaluations between (seen once under load).
        """
        from ..checkpoint import save_checkpoint

        done = state["position"]["iteration"]
        self.store.update_job(job_id, history=[row for row in live.history if row[0] <= done])
        save_checkpoint(state, self.checkpoint_path(job_id))

    def _on_step(self, job_id: str, live: Live, settings: Any, step: Any) -> None:
        losses = {k: float(v) for k, v in step.losses.items()}
        live.history.append(
            [step.iteration, losses.get("total", 0.0), losses.get("content", 0.0), losses.get("style", 0.0),
             losses.get("tv", 0.0), step.scale]
        )  # fmt: skip
        left = live.time_left(step)  # None until an evaluation has been timed: the page says nothing
        live.progress = {
            "iteration": step.iteration,
            "total": step.total,
            "scale": step.scale,
            "scales": step.scales,
            "size": list(step.size),
            "elapsed": step.elapsed,
            "eta": left,
            "losses": losses,
        }
        now = time.monotonic()
        if now - live.last_preview >= PREVIEW_INTERVAL:
            live.preview = engine.jpeg_bytes(step.image)
            live.preview_version += 1
            live.last_preview = now
        if now - live.last_event >= STEP_EVENT_INTERVAL or step.iteration == step.total:
            self._flush_steps(job_id, live)

    def _flush_steps(self, job_id: str, live: Live) -> None:
        points = live.history[live.sent_points :]
        live.sent_points = len(live.history)
        live.last_event = time.monotonic()
        preview = live.preview_version if live.preview else None
        self.broker.publish("step", {"id": job_id, "progress": live.progress, "points": points, "preview": preview})
