"""``dragkit invert PHOTO``: make your own photo draggable — align, project into W and W+, tune the generator.

    dragkit invert me.jpg --network default --outdir me
    dragkit drag --network me/generator --latent me/latent.pt --handle 500,600 --target 540,600 --outdir me-drag

Writes into ``--outdir``: ``aligned.png`` (the model-ready crop), ``reconstruction_w.png`` / ``reconstruction.png``
(after W / W+) and ``reconstruction_pti.png`` (after pivotal tuning), ``latent.pt`` (the W+ latent
[1, num_ws, w_dim]), ``generator/`` (the tuned generator, native format; provenance names the base model's and the
photo's sha256, the loss and the step counts) and ``report.json`` (PSNR, SSIM, identity distance where dlib's
face-recognition model is installed, seconds per stage, the loss that ran). Faces are aligned the FFHQ way from
dlib's 68 landmarks (the largest face is used); ``--no-align`` centre-crops instead (other domains).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dragkit.cli._common import parse_device


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``invert`` sub-command."""
    from dragkit.invert.project import InvertConfig

    d = InvertConfig()
    p = subparsers.add_parser(
        "invert",
        help="invert a photo into a model (align, W/W+ projection, pivotal tuning) so it can be dragged",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("photo", type=Path, metavar="PHOTO", help="the photo (JPEG, PNG, WebP, …)")
    p.add_argument("--network", default="default", metavar="PATH", help="checkpoint path or model name")
    p.add_argument("--outdir", required=True, type=Path, metavar="DIR", help="output directory")
    p.add_argument("--steps-w", type=int, default=d.steps_w, metavar="N", help=f"W steps (default {d.steps_w})")
    p.add_argument(
        "--steps-wplus", type=int, default=d.steps_wplus, metavar="N", help=f"W+ steps (default {d.steps_wplus})"
    )
    p.add_argument(
        "--steps-pti", type=int, default=d.steps_pti, metavar="N", help=f"tuning steps (default {d.steps_pti})"
    )
    p.add_argument("--no-align", action="store_true", help="centre-crop instead of aligning a face")
    p.add_argument("--no-pti", action="store_true", help="stop after the W+ projection (no tuned generator)")
    p.add_argument(
        "--loss",
        choices=["auto", "lap1+msssim", "lpips"],
        default="auto",
        help="reconstruction distance: lap1+msssim (offline, no learned weights) or lpips (LPIPS-VGG: needs "
        "torchvision's vgg16-397923af.pth in the cache or --vgg16); auto (default) = lpips where those weights are "
        "present, else lap1+msssim. The report names the one that ran",
    )
    p.add_argument("--vgg16", metavar="PATH", help="torchvision's vgg16-397923af.pth for --loss lpips")
    p.add_argument("--seed", type=int, default=0, help="seed of the projection noise (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Invert ``args.photo`` and write the outputs."""
    from dragkit.invert.align import read_photo
    from dragkit.invert.pipeline import invert_photo, write_outputs
    from dragkit.invert.project import InvertConfig
    from dragkit.io import load_generator
    from dragkit.io.loader import model_sha256

    config = InvertConfig(
        steps_w=args.steps_w,
        steps_wplus=args.steps_wplus,
        steps_pti=0 if args.no_pti else args.steps_pti,
        seed=args.seed,
        loss=args.loss,
        vgg16=args.vgg16,
    )
    photo = read_photo(args.photo)
    photo_sha = hashlib.sha256(args.photo.read_bytes()).hexdigest()
    device = parse_device(args.device)
    G = load_generator(args.network, device=device)
    bars: dict[str, tqdm[Any]] = {}
    names = {"w": "project W ", "w+": "project W+", "pti": "tune (PTI)"}

    def progress(stage: str, step: int, steps: int, loss: float, _preview: object) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=steps, desc=names[stage], unit="step", disable=None)
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    result = invert_photo(G, photo, config, align=not args.no_align, pti=not args.no_pti, progress=progress)
    for bar in bars.values():
        bar.close()
    result.report["photo"] = str(args.photo)
    write_outputs(result, args.outdir, str(args.network), model_sha256(args.network), photo_sha)
    q = result.report["quality"]
    last = "pti" if "pti" in q else "w+"
    ident = q[last]["identity_distance"]
    print(
        f"{last}: PSNR {q[last]['psnr_db']} dB, SSIM {q[last]['ssim']}"
        + (f", identity distance {ident}" if ident is not None else "")
        + f" — {result.report['seconds']['total']:.0f} s, loss {result.report['loss']}; wrote {args.outdir}"
    )
    if "note" in result.report:
        print(result.report["note"])
    return 0
