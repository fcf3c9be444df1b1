"""``dragkit inspect``: what a checkpoint holds (format, family, resolution, num_ws, parameters, pickle globals).

Reads the file the same way loading does — nothing stored in it is executed.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``inspect`` sub-command."""
    p = subparsers.add_parser("inspect", help="describe a checkpoint without running it", description=__doc__)
    p.add_argument("path", metavar="PATH", help="checkpoint file, model directory or model name")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the :class:`~dragkit.io.CheckpointInfo` of ``args.path``."""
    from dragkit.io import inspect_checkpoint

    info = inspect_checkpoint(args.path)
    if args.json:
        json.dump(info.to_dict(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    h, w = info.resolution
    rows = [
        ("path", info.path),
        ("format", info.format),
        ("family", f"{info.family} — {info.variant}" if info.variant else info.family),
        ("resolution", f"{w}x{h}"),
        ("z_dim / w_dim / c_dim", f"{info.z_dim} / {info.w_dim} / {info.c_dim}"),
        ("num_ws", str(info.num_ws)),
        ("parameters", f"{info.parameters:,}"),
        ("sha256", info.sha256),
    ]
    rows += [(k, str(v)) for k, v in info.details.items()]
    if info.globals_named:
        rows.append(("pickle globals", ", ".join(info.globals_named)))
    rows.append(("config", ", ".join(f"{k}={v}" for k, v in info.config.items())))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
