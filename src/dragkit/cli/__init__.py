"""Command-line interface: ``dragkit <command> ...`` (also ``python -m dragkit``).

Each command lives in its own module here and exposes ``register(subparsers)``; the parser calls
``args.func(args) -> int``. Errors caused by the user (:class:`dragkit.errors.DragkitError`) and errors the system
reports (``OSError``: disk full, not a directory, permission denied) print one line and exit with status 2 — never
a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from dragkit.errors import DragkitError

# Module names under dragkit.cli, in the order their commands appear in --help.
COMMANDS: tuple[str, ...] = (
    "generate",
    "inspect_cmd",
    "convert",
    "models",
    "invert",
    "drag",
    "batch",
    "evaluate",
    "studio",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered sub-command."""
    from dragkit import __version__

    parser = argparse.ArgumentParser(prog="dragkit", description="DragGAN: drag points on GAN images.")
    parser.add_argument("--version", action="version", version=f"dragkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dragkit.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DragkitError as exc:
        print(f"dragkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the system refused (disk full, permission denied, …): one line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"dragkit {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dragkit {args.command}: interrupted", file=sys.stderr)
        return 130
