"""Which style inputs (W+ rows) of a face model move landmarks, and which mostly change appearance?

    python benchmarks/style_inputs.py --out out/style_inputs
    python benchmarks/style_inputs.py --sigma 2 --seeds 8 --out out/style_inputs_s2

For each seed (``--seed-base`` … ; seeds whose face dlib does not find are skipped) and each W+ row i, row i alone
is moved by ``sigma`` × 0.42 × ε (ε ~ N(0, I), 0.42 ≈ the per-coordinate spread of this model's w; ``--directions``
draws per seed and row, from a fixed generator seed). The face is re-generated, dlib's 68 landmarks are
re-detected (512×512, as in ``dragkit eval landmarks``), and two numbers are recorded:

- D: mean landmark displacement in pixels at 512×512 (shape: what a drag needs);
- A: image change, mean |Δ| of the RGB values (0–255) at 512×512 (appearance: what a drag should keep).

Any change of the image moves dlib's landmarks a little, so D has a floor: the smallest mean D over the rows
(the finest rows change texture only). ``shape_per_change`` = (D − floor) / A ranks the rows by how much landmark
motion they buy per unit of appearance change; rows are listed in W+ order with the level they modulate.
Writes ``style_inputs.json`` (samples and the table). A benchmark, not a test: it needs ``dlib`` and the predictor.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from dragkit.io import load_generator
from dragkit.io.images import to_uint8
from dragkit.jobs.landmarks import Landmarker, image_change, mean_dist
from dragkit.nn.seeds import z_from_seed

logger = logging.getLogger("style_inputs")
W_SPREAD = 0.42  # per-coordinate standard deviation of the default model's w (mapping of z ~ N(0, I))


def summarise(samples: list[tuple[int, float, float]], levels: list[str]) -> list[dict[str, Any]]:
    """samples: (row, D, A) per probe; levels: the level name each row modulates. One dict per row in W+ order:
    ``row``, ``level``, ``D``, ``A`` (means), ``shape_per_change`` = (D − floor)/A with floor = the smallest mean D,
    and ``rank`` (1 = the most landmark motion per appearance change)."""
    rows: dict[int, list[tuple[float, float]]] = {}
    for row, d, a in samples:
        rows.setdefault(row, []).append((d, a))
    means = {r: (statistics.fmean(d for d, _ in v), statistics.fmean(a for _, a in v)) for r, v in rows.items()}
    floor = min(d for d, _ in means.values())
    table = [
        {"row": r, "level": levels[r], "D": d, "A": a, "shape_per_change": (d - floor) / a if a > 0 else 0.0}
        for r, (d, a) in sorted(means.items())
    ]
    order = sorted(table, key=lambda t: -t["shape_per_change"])
    for rank, t in enumerate(order, 1):
        t["rank"] = rank
    return table


def run(args: argparse.Namespace) -> dict[str, Any]:
    G = load_generator(args.network)
    marker = Landmarker(args.predictor)
    names = {lv.index: lv.name for lv in G.feature_levels()}
    ws_levels = getattr(G, "ws_levels", None)
    levels = [names[k] for k in ws_levels()] if callable(ws_levels) else [f"row {i}" for i in range(G.num_ws)]
    gen = torch.Generator().manual_seed(0)
    samples: list[tuple[int, float, float]] = []
    used: list[int] = []
    for seed in range(args.seed_base, args.seed_base + args.seeds):
        with torch.no_grad():
            ws = G.mapping(z_from_seed(seed, G.z_dim), psi=args.psi)
            img0 = to_uint8(G.synthesize(ws, 0).image)[0]  # type: ignore[arg-type]
        lm0 = marker(img0)
        if lm0 is None:
            logger.info("seed %d: no face detected, skipped", seed)
            continue
        used.append(seed)
        for row in range(G.num_ws):
            for _ in range(args.directions):
                moved = ws.clone()
                moved[0, row] += args.sigma * W_SPREAD * torch.randn(G.w_dim, generator=gen)
                with torch.no_grad():
                    img = to_uint8(G.synthesize(moved, 0).image)[0]  # type: ignore[arg-type]
                lm = marker(img)
                if lm is not None:
                    samples.append((row, mean_dist(lm, lm0), image_change(img0, img)))
        logger.info("seed %d done (%d samples)", seed, len(samples))
    table = summarise(samples, levels)
    result = {"network": args.network, "sigma": args.sigma, "psi": args.psi, "seeds": used, "table": table}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "style_inputs.json").write_text(json.dumps({**result, "samples": samples}, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="default", help="model name or checkpoint path (default: default)")
    parser.add_argument("--seeds", type=int, default=8, help="faces probed (default 8)")
    parser.add_argument(
        "--seed-base", type=int, default=100, help="first seed (default 100, apart from the landmark protocol's)"
    )
    parser.add_argument("--directions", type=int, default=3, help="random directions per face and row (default 3)")
    parser.add_argument("--sigma", type=float, default=1.0, help="step length in units of w's spread (default 1)")
    parser.add_argument("--psi", type=float, default=0.7, help="truncation of the faces (default 0.7)")
    parser.add_argument("--predictor", default=None, help="path of shape_predictor_68_face_landmarks.dat")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="out/style_inputs", help="output directory (default out/style_inputs)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.directions < 1 or not args.sigma > 0:
        parser.error("--seeds and --directions must be ≥ 1 and --sigma > 0")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = run(args)
    print("row level     D (px)   A (0-255)  (D-floor)/A  rank")
    for t in result["table"]:
        print(
            f"{t['row']:3d} {t['level']:7s} {t['D']:8.2f} {t['A']:10.2f} {t['shape_per_change']:11.3f} {t['rank']:5d}"
        )
    print(f"wrote {Path(args.out) / 'style_inputs.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
