"""``dragkit generate``: images from seeds, NVIDIA's conventions (seed → z, truncation, uint8 rounding)."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import torch
from tqdm import tqdm

from dragkit.cli._common import add_class_option, class_label, parse_device

logger = logging.getLogger(__name__)

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_seeds(text: str) -> list[int]:
    """``'0-3,7'`` → [0, 1, 2, 3, 7] (inclusive ranges, order kept, duplicates dropped)."""
    seeds: list[int] = []
    for part in text.split(","):
        m = _RANGE.match(part.strip())
        if not m:
            raise argparse.ArgumentTypeError(f"invalid seed list {text!r} (expected e.g. 0-3,7)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise argparse.ArgumentTypeError(f"invalid seed range {part!r} (end before start)")
        if hi - lo > 100_000:
            raise argparse.ArgumentTypeError(f"seed range {part!r} is too long")
        seeds.extend(s for s in range(lo, hi + 1) if s not in seeds)
    return seeds


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``generate`` sub-command."""
    p = subparsers.add_parser("generate", help="generate images from seeds", description=__doc__)
    p.add_argument("--network", required=True, metavar="PATH", help="checkpoint path or model name")
    p.add_argument("--seeds", required=True, type=parse_seeds, metavar="LIST", help="e.g. 0-3,7")
    p.add_argument("--trunc", type=float, default=1.0, metavar="PSI", help="truncation psi (default 1.0)")
    add_class_option(p)
    p.add_argument("--noise-mode", choices=("const", "random", "none"), default="const", help="default const")
    p.add_argument("--outdir", required=True, type=Path, metavar="DIR", help="writes DIR/seed0000.png …")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the network, then write one PNG per seed."""
    from dragkit.io import load_generator
    from dragkit.io.images import save_png, to_uint8
    from dragkit.nn.seeds import z_from_seed

    device = parse_device(args.device)
    G = load_generator(args.network, device=device)
    c = class_label(G, args.class_idx, device)
    args.outdir.mkdir(parents=True, exist_ok=True)
    last_block = len(G.feature_levels()) - 1
    for seed in tqdm(args.seeds, desc="generate", unit="img", disable=None):
        z = z_from_seed(seed, G.z_dim).to(device)
        with torch.no_grad():
            ws = G.mapping(z, c, psi=args.trunc)
            img = G.synthesize(ws, feature_block=last_block, noise_mode=args.noise_mode).image
        assert img is not None
        path = save_png(to_uint8(img)[0], args.outdir / f"seed{seed:04d}.png")
        logger.debug("wrote %s", path)
    logger.info("wrote %d image(s) to %s", len(args.seeds), args.outdir)
    return 0
