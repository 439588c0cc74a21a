"""Ctrl-C and SIGTERM for the commands: the first asks the run to stop and save, a second quits.

One handler for the ``painterly`` command, ``painterly batch`` and ``painterly video``: while
active, SIGINT and SIGTERM set :attr:`StopOnSignal.stop` (the run finishes its current
evaluation, then everything is saved) and a second signal quits at once without saving.
``saving()`` ignores both while the files are written, so they are written whole.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


class StopOnSignal:
    """``with StopOnSignal(say, "stopping ...") as signals:`` ... ``signals.stop`` is the event to pass on."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, say: Callable[[str], None], what: str, prefix: str = "painterly") -> None:
        self.say, self.what, self.prefix = say, what, prefix
        self.stop = threading.Event()
        self.caught: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals only there
            self.previous = {s: signal.signal(s, self._on_signal) for s in self.SIGNALS}
        return self

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.caught = signum
        self.stop.set()
        self.say(f"{self.prefix}: {signal.Signals(signum).name}: {self.what} (again to quit without saving)")

    def saving(self) -> None:
        for s in self.previous:
            signal.signal(s, signal.SIG_IGN)

    def exit_code(self) -> int:
        """128 + the signal caught (130 for Ctrl-C, 143 for SIGTERM), as shells report it."""
        return 128 + int(self.caught or signal.SIGINT)

    def __exit__(self, *exc: object) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
