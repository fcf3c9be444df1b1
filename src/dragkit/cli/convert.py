"""``dragkit convert``: any supported checkpoint → dragkit's native format (``model.safetensors`` + ``config.json``).

The output records provenance: source format, source file name and sha256, and the licence you state.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dragkit.errors import InvalidInputError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``convert`` sub-command."""
    p = subparsers.add_parser("convert", help="convert a checkpoint to the native format", description=__doc__)
    p.add_argument("path", metavar="PATH", help="checkpoint to convert")
    p.add_argument("out", type=Path, metavar="OUT", help="output directory")
    p.add_argument("--licence", default="unknown", help="licence of the weights, recorded in provenance")
    p.add_argument("--force", action="store_true", help="overwrite files in a non-empty OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Parse, build and check the network, then write it natively."""
    from dragkit.io import inspect_checkpoint, load_generator, save_native

    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        raise InvalidInputError(f"{out} exists and is not an empty directory (use --force to overwrite)")
    info = inspect_checkpoint(args.path)
    G = load_generator(info.path)
    provenance = {
        "source_format": info.format,
        "source_name": Path(info.path).name,
        "source_sha256": info.sha256,
        "licence": args.licence,
    }
    save_native(G, out, provenance)
    print(f"wrote {out} ({info.family}, {info.resolution[1]}x{info.resolution[0]}, {info.format} → native)")
    return 0
