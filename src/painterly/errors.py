"""One family of user-facing errors.

Every error a user can cause (bad file, bad flag, missing weights) is a :class:`PainterlyError`
whose message is one plain line naming the thing, the value and the limit. The CLI prints that
line and exits non-zero; bugs stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class PainterlyError(Exception):
    """A problem the user can fix; ``str(err)`` is a single actionable line."""

    exit_code = 2


class InputError(PainterlyError):
    """An input image, output path or option is unusable."""


class WeightsError(PainterlyError):
    """Network weights are missing, corrupt or of the wrong shape."""


class OutOfMemory(PainterlyError):
    """A size needed more memory than the device has."""

    exit_code = 3


class Interrupted(PainterlyError):
    """The run was stopped by a signal or a cancel request; the current state was saved."""

    exit_code = 130


def as_exit_code(command: Callable[[], int], *, debug: bool = False) -> int:
    """Run a command-line entry point: a :class:`PainterlyError` becomes its one line on stderr and
    its exit code (re-raised with ``debug``), Ctrl-C exit 130; everything else (a bug) propagates."""
    try:
        return command()
    except PainterlyError as err:
        if debug:
            raise
        print("painterly: error: " + " ".join(str(err).splitlines()), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("painterly: interrupted", file=sys.stderr)
        return 130
