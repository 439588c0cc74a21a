"""Command-line flags shared by every sub-command: one flag per :class:`Settings` field, the
parsers that turn text into values, and a parser whose errors are one plain line.

Kept apart from :mod:`painterly.cli` so sub-commands (``experiment``, ``batch``, ``video``,
``serve``, ``weights``) share them without importing each other, and so that none of this
imports torch: ``--help`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

from .config import MODEL_DEFAULTS, OPTIMIZERS, PADDINGS, PRESERVE_COLOR, STYLE_LOSSES, Settings
from .errors import InputError

CHOICES = {
    "optimizer": OPTIMIZERS,
    "preserve_color": PRESERVE_COLOR,
    "model": tuple(MODEL_DEFAULTS),
    "style_loss": STYLE_LOSSES,
    "padding": PADDINGS,
}


def number_list(kind: type) -> Any:
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None

    return parse


def names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def number(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def flag_type(annotation: Any) -> Any:
    """argparse type for a Settings field annotation like ``float | None`` or ``tuple[int, ...] | None``."""
    hint = annotation
    args = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) else [hint]
    base = args[0]
    if typing.get_origin(base) is tuple:
        inner = typing.get_args(base)[0]
        return names if inner is str else number_list(inner)
    return number(base) if base in (int, float) else base


def add_settings_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    """One flag per :class:`Settings` field, with its help and default taken from the field."""
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = f.metadata.get("help", "")
        if default is not None:
            help_text += f" (default: {default})"
        elif f.name in ("content_weight", "style_weight", "tv_weight", "content_layer", "style_layers"):
            help_text += " (default: the model's)"
        if hints[f.name] is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)  # fmt: skip
            continue
        parser.add_argument(
            flag, dest=f.name, type=flag_type(hints[f.name]), default=argparse.SUPPRESS,
            choices=CHOICES.get(f.name), help=help_text, metavar=None if f.name in CHOICES else f.name.upper(),
        )  # fmt: skip


def settings_from(args: argparse.Namespace) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    return Settings(**{k: v for k, v in vars(args).items() if k in names})


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as painterly's one plain line (exit 2), not usage + error."""

    def error(self, message: str) -> typing.NoReturn:
        raise InputError(f"{message} (see {self.prog} --help)")


def count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value
