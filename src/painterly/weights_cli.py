"""``painterly weights {list,download,verify} [MODEL]``: the network weights, ahead of time.

For offline machines and container images: ``download`` fetches (or converts) a model's weights
into the cache a run reads, and records their SHA-256; ``verify`` hashes the cached files in full;
``list`` shows where each file is or would be and whether it is there and unchanged since it was
hashed. torch is imported only once the arguments are parsed, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from .config import MODEL_DEFAULTS, Settings
from .errors import PainterlyError
from .flags import Parser

MODELS = tuple(MODEL_DEFAULTS)
STATES = {
    "missing": "not downloaded",
    "unverified": "present, not hashed yet",
    "verified": "present, unchanged since hashed",
    "changed": "CHANGED since hashed",
}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="painterly weights", description="Fetch and check the network weights ahead of time.")
    commands = p.add_subparsers(dest="command", required=True, metavar="{list,download,verify}",
                                parser_class=Parser)  # fmt: skip
    listing = commands.add_parser("list", help="where each model's file is, and whether it is there and unchanged")
    listing.add_argument("model", nargs="?", choices=MODELS, help="one model (default: all)")
    fetch = commands.add_parser("download", help="fetch (or convert) a model's weights now, for offline use later")
    fetch.add_argument("model", nargs="?", choices=MODELS, default=Settings.model,
                       help="the model (default: %(default)s)")  # fmt: skip
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    check = commands.add_parser("verify", help="hash the cached files in full and check every tensor")
    check.add_argument("model", nargs="?", choices=MODELS, help="one model (default: every one that is there)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from . import weights

    if args.command == "list":
        for model in [args.model] if args.model else MODELS:
            status = weights.cache_status(model)
            sha = f"  sha256 {status.record.sha256[:12]}..." if status.record else ""
            print(f"{model:<10} {STATES[status.state]:<32} {status.path}{sha}")
        return 0
    if args.command == "download":
        path = weights.fetch_weights(args.model, progress=not args.quiet, log=_say)
        record = weights.cache_status(args.model).record
        print(f"{args.model}: {path}" + (f" (sha256 {record.sha256})" if record else ""))
        return 0
    failed = 0
    for model in [args.model] if args.model else MODELS:
        if not args.model and weights.cache_status(model).state == "missing":
            print(f"{model}: not downloaded ({weights.cache_path(model)})")
            continue
        try:
            digest = weights.verify_weights(model, log=_say)
        except PainterlyError as err:
            print(f"painterly: error: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{model}: ok, sha256 {digest} ({weights.cache_path(model)})")
    return 1 if failed else 0


def _say(message: str) -> None:
    print(f"painterly: {message}", file=sys.stderr)
