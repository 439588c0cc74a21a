"""JSON in and out of the studio: strict where browsers are strict.

JSON has no Infinity or NaN; Python's ``json`` writes them anyway, and a browser's ``JSON.parse``
then rejects the whole message (one infinite loss would silence the event stream). So every
number the studio sends or stores passes through :func:`finite` (non-finite becomes ``null``), and
bodies are read with a bound on nesting, so a hostile request is a 400, never a crash.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32  # a job body nests three levels; far deeper is an attack, not a mistake


class BadJSON(ValueError):
    """A request body that is not JSON the studio reads; ``str()`` is one line for the client."""


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (dicts, lists and tuples walked)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Standard JSON text (never ``Infinity``/``NaN``) for a response, an event or the database."""
    return json.dumps(finite(value), allow_nan=False, separators=(",", ":"))


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of ``value``, counted without recursion; stops counting past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def loads(body: bytes, what: str) -> Any:
    """Parse a request body, or raise :class:`BadJSON` (not JSON, nested past MAX_DEPTH)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadJSON(f"send {what} as JSON") from None
    if depth(value) > MAX_DEPTH:
        raise BadJSON(f"the JSON nests deeper than {MAX_DEPTH} levels; send {what}")
    return value
