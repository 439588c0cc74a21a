"""What a batch paints: contents and styles from files, folders, globs or a manifest, paired into items.

An :class:`Item` is one output: a content, one or more styles (several are blended), the output
path and the settings that differ from the batch's. Planning reads no pixels and runs no network,
so every bad path, pairing, template or per-row setting is refused in a second, before any work.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import InputError
from .files import OUTPUT_EXTENSIONS

PAIRINGS = ("cross", "one-to-one", "random")
DEFAULT_NAME = "{content}_{style}.jpg"
# What a folder or glob contributes: the decoders' formats (image.SUPPORTED_INPUT_FORMATS) by extension.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")
MANIFEST_PATHS = ("content", "style", "styles", "output")


@dataclass(frozen=True)
class Source:
    """An input image and the folder it was found under (its tree is mirrored in the outputs)."""

    path: Path
    root: Path | None = None  # None: a file named directly, so no sub-folder in the output

    @property
    def subfolder(self) -> Path:
        return self.path.parent.relative_to(self.root) if self.root is not None else Path()


@dataclass
class Item:
    """One output of a batch. ``key`` (the output relative to the batch's folder) names it in the report."""

    content: Path
    styles: tuple[Path, ...]
    output: Path
    key: str
    overrides: dict[str, Any] = field(default_factory=dict)  # per-row settings, over the batch's


def find_images(specs: Iterable[str | Path], *, what: str, exclude: Path | None = None) -> list[Source]:
    """Files, folders (searched recursively) and globs (``photos/**/*.jpg``) as image sources, in order.

    Hidden files are left out (``.name.part`` is a write in progress), and so is anything under
    ``exclude`` (the output folder, when it lies inside an input folder).
    """
    found: dict[Path, Source] = {}
    for spec in specs:
        text = str(spec)
        path = Path(text).expanduser()
        if path.is_file():
            sources = [Source(path)]
        elif path.is_dir():
            sources = [Source(p, path) for p in sorted(path.rglob("*")) if _is_image(p, path)]
            if not sources:
                raise InputError(f"{what} folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        elif _has_magic(text):
            root = _glob_root(path)
            sources = [Source(Path(p), root) for p in sorted(glob.glob(str(path), recursive=True))]
            sources = [s for s in sources if _is_image(s.path, root)]
            if not sources:
                raise InputError(f"{what} pattern {text!r} matches no images")
        else:
            raise InputError(f"{what} {path}: no such file or folder")
        for s in sources:
            if exclude is None or not s.path.resolve().is_relative_to(exclude.resolve()):
                found.setdefault(s.path.resolve(), s)
    return list(found.values())


def _is_image(path: Path, root: Path) -> bool:
    hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
    return path.is_file() and not hidden and path.suffix.lower() in IMAGE_EXTENSIONS


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _glob_root(pattern: Path) -> Path:
    """The folder part of a glob before its first wildcard: what the output tree mirrors below."""
    parts = []
    for part in pattern.parts[:-1]:
        if _has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path()


def pair(contents: Sequence[Source], styles: Sequence[Source], how: str = "cross", seed: int = 0):
    """``(content, style)`` pairs: every combination (``cross``), in order (``one-to-one``), or one
    style per content drawn at random (``random``, the Stylized-ImageNet recipe).

    A random draw depends only on ``seed`` and the content's path under its folder, not on the
    order or the number of contents, so the same image gets the same style when the set grows.
    """
    if how not in PAIRINGS:
        raise InputError(f"unknown pairing {how!r}; choose one of: {', '.join(PAIRINGS)}")
    if not contents or not styles:
        raise InputError(f"a batch needs content and style images; got {len(contents)} and {len(styles)}")
    if how == "cross":
        return [(c, s) for c in contents for s in styles]
    if how == "one-to-one":
        if len(contents) != len(styles):
            raise InputError(f"--pair one-to-one needs as many styles as contents; got {len(contents)} and "
                             f"{len(styles)}")  # fmt: skip
        return list(zip(contents, styles))
    out = []
    for c in contents:
        name = (c.subfolder / c.path.name).as_posix()
        digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
        out.append((c, styles[int.from_bytes(digest[:8], "big") % len(styles)]))
    return out


def output_for(content: Source, styles: Sequence[Path], folder: Path, name: str) -> Path:
    """``folder / <content's sub-folder> / name`` with ``{content}`` and ``{style}`` (stems; several
    styles joined by ``+``) filled in."""
    try:
        filled = name.format(content=content.path.stem, style="+".join(s.stem for s in styles))
    except (KeyError, IndexError, ValueError) as err:
        raise InputError(f"--name {name!r}: only {{content}} and {{style}} can be filled in ({err})") from None
    return folder / content.subfolder / filled


def items_from_pairs(pairs, folder: Path, name: str = DEFAULT_NAME) -> list[Item]:
    return [_item(c.path, (s.path,), output_for(c, [s.path], folder, name), folder) for c, s in pairs]


def read_manifest(path: str | Path, folder: Path, name: str = DEFAULT_NAME) -> list[Item]:
    """Items from a CSV (with a header) or JSON Lines manifest: ``content``, ``style`` (or ``styles``,
    a list, or ``;``-separated in CSV), optionally ``output``, and any :class:`Settings` field as a
    per-row setting (empty CSV cells set nothing). Paths are relative to the manifest's folder,
    outputs to the batch's ``folder``; a row without ``output`` is named by ``name``."""
    path = Path(path).expanduser()
    rows = list(_manifest_rows(path))
    if not rows:
        raise InputError(f"manifest {path} has no rows")
    base = path.parent
    items = []
    for line, row in rows:
        where = f"manifest {path} line {line}"
        content = row.pop("content", None)
        styles = row.pop("styles", None) or row.pop("style", None)
        output = row.pop("output", None)
        if not content or not styles:
            raise InputError(f"{where}: needs a content and a style")
        if isinstance(styles, str):
            styles = [s for s in styles.split(";") if s.strip()]
        content_path = _existing(base / str(content).strip(), where)
        style_paths = tuple(_existing(base / str(s).strip(), where) for s in styles)
        overrides = _row_settings({k: v for k, v in row.items() if v not in ("", None)}, where)
        if output:
            out = folder / str(output).strip()
        else:
            inside = content_path.resolve().is_relative_to(base.resolve())
            out = output_for(Source(content_path, base if inside else None), style_paths, folder, name)
        items.append(_item(content_path, style_paths, out, folder, overrides))
    return items


def _manifest_rows(path: Path):
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"manifest {path} cannot be read ({err})") from None
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as err:
                    raise InputError(f"manifest {path} line {number} is not JSON ({err})") from None
                if not isinstance(row, dict):
                    raise InputError(f"manifest {path} line {number} is not a JSON object")
                yield number, row
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        for number, row in enumerate(reader, 2):
            if None in row:
                raise InputError(f"manifest {path} line {number} has more cells than the header")
            yield number, {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
    else:
        raise InputError(f"manifest {path}: expected a .csv or .jsonl file")


def _row_settings(values: dict[str, Any], where: str) -> dict[str, Any]:
    """A row's settings, coerced and checked by :meth:`Settings.from_dict` (only the keys it sets)."""
    try:
        parsed = Settings.from_dict(values)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    return {k: getattr(parsed, k) for k in values}


def _existing(path: Path, where: str) -> Path:
    if not path.is_file():
        raise InputError(f"{where}: {path}: no such file")
    return path


def _item(content: Path, styles: tuple[Path, ...], out: Path, folder: Path, overrides=None) -> Item:
    if out.suffix.lower() not in OUTPUT_EXTENSIONS:
        raise InputError(f"output {out}: unknown image extension; use one of {', '.join(sorted(OUTPUT_EXTENSIONS))}")
    try:
        key = out.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        key = str(out.resolve())  # a manifest may write outside the batch's folder
    return Item(content, styles, out, key, dict(overrides or {}))


def check_unique(items: Sequence[Item]) -> None:
    """Two items may not write one file (``{style}`` missing from the name, or two styles with one stem)."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.key in seen:
            raise InputError(f"items {seen[item.key] + 1} and {i + 1} would both write {item.output}; "
                             "put {content} and {style} in --name, or give outputs in the manifest")  # fmt: skip
        seen[item.key] = i


def item_settings(base: Settings, item: Item) -> Settings:
    """The batch's settings with the item's own over them, resolved (a one-line error names the item)."""
    try:
        return dataclasses.replace(base, **item.overrides).resolved()
    except InputError as err:
        raise InputError(f"{item.key}: {err}") from None
