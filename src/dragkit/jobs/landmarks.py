"""The paper's face-landmark protocol (DragGAN Table 1; docs/architecture.md §6) as cases: ``dragkit eval landmarks``.

Pair i uses seeds (b + 2i, b + 2i + 1) (b: ``seed_base``). Both faces are generated (truncation ``psi``); dlib finds
68 landmarks on each (frontal detector and ``shape_predictor_68_face_landmarks.dat``) on the image resized to
512×512 (Lanczos); for each point count n the same n landmarks of face 1 (a subset drawn with a generator seeded
by 1000 + i: :func:`draw_subsets`) are dragged to face 2's positions for at most ``max_steps`` steps, and the
landmarks are found again on the result. A pair where dlib finds no face in one of the two images is recorded as
skipped. One case per (pair, n), id ``pair0007-n5``.

Each record (all distances in pixels at 512×512):

- ``md``: mean distance between the result's landmarks and the targets (the paper's metric; None when the result
  has no face any more: ``face_lost``); ``md_no_edit``: the same for face 1 itself (what doing nothing scores);
- ``drift``: mean distance between where the tracker has the handles and where dlib finds those landmarks;
- ``image_change``: mean |Δ| of the RGB values (0–255) between face 1 and the result — large when the edit changed
  identity or left the image manifold, which the MD alone does not show;
- ``steps``, ``arrived`` (the stop test passed), ``stopped`` (why the session ended).

The summary per n: mean MD, no-edit MD, their ratio over the edits that kept a face, the ratio counting a lost
face as no progress, faces lost, arrivals, seconds per edit — beside the paper's numbers.

Points are image pixels with pixel (x, y) the centre of column x, row y, so a 512-grid landmark x maps to
``2·x + 0.5`` on a 1024 image and back. The stop distance is the paper's (1 px for ≤ 5 handles, 2 px otherwise)
*at 512×512*, i.e. scaled by H/512 on the model's image.

Two research options: ``oracle`` re-detects the landmarks before every step and puts the handles there (perfect
tracking: what the optimisation can reach); ``inverted`` starts each edit from face 1 *inverted*: a folder with
``seed<NNNN>/generator`` and ``latent.pt`` per first seed (as ``benchmarks/invert.py`` writes them), recording
also the identity distance to the generated face.
"""

from __future__ import annotations

import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dragkit.errors import InvalidInputError
from dragkit.jobs.execute import Outcome

EVAL_RES = 512  # the paper's metric resolution
#: The paper's Table 1 (DragGAN on StyleGAN2 FFHQ 512): MD for 1 / 5 / 68 points, and with no edit.
PAPER_MD = {1: 2.44, 5: 3.18, 68: 4.73}
PAPER_MD_NO_EDIT = {1: 12.93, 5: 11.66, 68: 16.02}


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


def image_change(before: np.ndarray, after: np.ndarray) -> float:
    """Mean |Δ| of the uint8 RGB values at 512×512 (0–255): how much the whole image changed."""
    a = to_eval(before).astype(np.float64)
    b = to_eval(after).astype(np.float64)
    return float(np.abs(a - b).mean())


def draw_subsets(pair_index: int, counts: list[int]) -> dict[int, np.ndarray]:
    """The landmark subsets of one pair: for each count n in order, n sorted indices drawn without replacement
    from a generator seeded with 1000 + pair_index (all 68 for n ≥ 68). Later counts depend on the earlier ones,
    so ``draw_points`` fixes the order when a run does only some of the counts."""
    rng = np.random.RandomState(1000 + pair_index)
    out: dict[int, np.ndarray] = {}
    for n in counts:
        out[n] = np.arange(68) if n >= 68 else np.sort(rng.choice(68, size=n, replace=False))
    return out


@dataclass(frozen=True)
class LandmarkCase:
    """One edit of the protocol: pair ``pair`` (``seeds``), ``landmarks``: the dlib indices dragged."""

    id: str
    pair: int
    seeds: tuple[int, int]
    landmarks: tuple[int, ...]

    @property
    def points(self) -> int:
        return len(self.landmarks)


def landmark_cases(
    pairs: int, points: list[int], seed_base: int = 0, draw_points: list[int] | None = None
) -> list[LandmarkCase]:
    """The protocol's cases for pairs 0 … ``pairs`` − 1, each with every count of ``points``; ``draw_points``
    (default ``points``) is the order the subsets are drawn in (it must include every count of ``points``)."""
    if pairs < 1:
        raise InvalidInputError(f"--cases: expected at least 1 pair, got {pairs}")
    if not points or any(n < 1 for n in points):
        raise InvalidInputError(f"--points: expected counts ≥ 1, got {points}")
    order = draw_points or points
    if not set(points) <= set(order):
        raise InvalidInputError("--draw-points must include every count of --points")
    out = []
    for i in range(pairs):
        subsets = draw_subsets(i, order)
        seeds = (seed_base + 2 * i, seed_base + 2 * i + 1)
        out += [LandmarkCase(f"pair{i:04d}-n{n}", i, seeds, tuple(int(k) for k in subsets[n])) for n in points]
    return out


class Landmarker:
    """dlib 68-point landmarks of the largest face, found on the image resized to 512×512."""

    def __init__(self, predictor: str | None = None) -> None:
        try:
            import dlib
        except ImportError:
            raise InvalidInputError("the landmark protocol needs dlib: pip install 'dragkit[eval]'") from None
        from dragkit.invert.faces import find_predictor

        path = Path(predictor) if predictor else find_predictor(fetch=True)
        if not path.is_file():
            raise InvalidInputError(f"{path}: no such landmark model (shape_predictor_68_face_landmarks.dat)")
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(path))

    def __call__(self, img: np.ndarray) -> np.ndarray | None:
        """[68, 2] float (x, y) on the 512 grid, or None when no face is found. ``img``: uint8 [H, W, 3]."""
        small = to_eval(img)
        faces = self.detector(small, 1)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        shape = self.predictor(small, face)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


@dataclass(frozen=True)
class LandmarkSpec:
    """Worker recipe: the model (``network`` on ``device``), drag ``config`` (a DragConfig dict), ``psi``, the
    landmark model path (None: found or fetched), and the research options ``oracle`` / ``inverted``."""

    network: str
    device: str = "cpu"
    config: dict[str, Any] = field(default_factory=dict)
    psi: float = 0.7
    predictor: str | None = None
    oracle: bool = False
    inverted: str | None = None
    panels: int = 4  # pairs 0 … panels − 1 return a picture of source | target | result

    def build(self) -> LandmarkWorker:
        return LandmarkWorker(self)


class LandmarkWorker:
    """Runs landmark cases with one loaded model and one dlib landmarker."""

    def __init__(self, spec: LandmarkSpec) -> None:
        from dragkit.engine import DragConfig
        from dragkit.io import load_generator

        self.spec = spec
        self.G = load_generator(spec.network, device=spec.device)
        self.config = DragConfig.from_dict(spec.config)
        self.marker = Landmarker(spec.predictor)
        self._pair: tuple[tuple[int, int], Any] | None = None  # the last pair's faces (n = 1, 5 … share them)

    def _faces(self, seeds: tuple[int, int]) -> Any:
        if self._pair is not None and self._pair[0] == seeds:
            return self._pair[1]
        import torch

        from dragkit.io import load_generator
        from dragkit.nn.seeds import z_from_seed

        G, device = self.G, self.G.w_avg.device
        G1, photo = G, None
        with torch.no_grad():
            ws = [G.mapping(z_from_seed(s, G.z_dim).to(device), psi=self.spec.psi) for s in seeds]
            imgs = [render(G, w) for w in ws]
            if self.spec.inverted:
                folder = Path(self.spec.inverted) / f"seed{seeds[0]:04d}"
                if not (folder / "generator").is_dir():
                    found = None
                    self._pair = (seeds, found)
                    return found
                G1 = load_generator(folder / "generator", device=device)
                ws[0] = torch.load(folder / "latent.pt", weights_only=True).to(device)
                photo = imgs[0]
                imgs[0] = render(G1, ws[0])
        lms = [self.marker(img) for img in imgs]
        found = None if lms[0] is None or lms[1] is None else (G1, ws, imgs, lms, photo)
        self._pair = (seeds, found)
        return found

    def run(self, case: LandmarkCase) -> Outcome:
        """Edit one case; the record is described in the module docstring."""
        from dragkit.engine import DragSession

        base: dict[str, Any] = {"pair": case.pair, "seeds": list(case.seeds), "points": case.points}
        found = self._faces(case.seeds)
        if found is None:
            why = "no inversion" if self.spec.inverted else "no face in one of the two images"
            return Outcome({**base, "skipped": why})
        G1, ws, imgs, (lm1, lm2), photo = found
        idx = np.array(case.landmarks)
        H, W = G1.img_shape
        handles = eval_to_image(lm1[idx], (H, W))
        targets = eval_to_image(lm2[idx], (H, W))
        d_stop = (1.0 if case.points <= 5 else 2.0) * H / EVAL_RES
        sess = DragSession(
            G1, ws[0], config=self.config.replace(stop_rule=d_stop), history_limit=2 if self.spec.oracle else 1000
        )
        sess.set_points(handles, targets)
        last = self._oracle(sess, idx, targets) if self.spec.oracle else sess.run(max_steps=self.config.max_steps)
        result = sess.image()
        lm_res = self.marker(result)
        tracked = image_to_eval(last.handles, (H, W))
        rec: dict[str, Any] = {
            **base,
            "landmarks": list(case.landmarks),
            "md_no_edit": mean_dist(lm1[idx], lm2[idx]),
            "md": None if lm_res is None else mean_dist(lm_res[idx], lm2[idx]),
            "drift": None if lm_res is None else mean_dist(tracked, lm_res[idx]),
            "tracked_to_target": mean_dist(tracked, lm2[idx]),
            "image_change": image_change(imgs[0], result),
            "steps": last.step,
            "arrived": bool(last.done),
            "stopped": "degraded" if last.degraded else "arrived" if last.done else "max_steps",
            "face_lost": lm_res is None,
        }
        if photo is not None:
            from dragkit.invert.identity import identity_distance

            rec["identity_to_photo"] = identity_distance(photo, result)
            rec["identity_inverted_to_photo"] = identity_distance(photo, imgs[0])
        files = {}
        if case.pair < self.spec.panels:
            groups = [(lm2[idx], "blue")] + ([] if lm_res is None else [(lm_res[idx], "lime")])
            sheet = _sheet(
                [
                    _draw(imgs[0], [(lm1[idx], "red")]),
                    _draw(imgs[1], [(lm2[idx], "blue")]),
                    _draw(result, [*groups, (tracked, "yellow")]),
                ]
            )
            files["panel.png"] = sheet
        return Outcome(rec, files)

    def _oracle(self, sess: Any, idx: np.ndarray, targets: list[tuple[float, float]]) -> Any:
        """Perfect tracking: before every step the handles are put where dlib finds the landmarks."""
        last = sess.status()
        H, W = sess.image_shape
        for _ in range(self.config.max_steps):
            found = self.marker(sess.image())
            if found is None:
                break
            sess.set_points(eval_to_image(found[idx], (H, W)), targets)
            last = sess.step()
            if last.done:
                break
        return last


def render(G: Any, ws: Any) -> np.ndarray:
    """uint8 [H, W, 3] image of W+ ``ws`` [1, num_ws, w_dim]."""
    from dragkit.nn.images import to_uint8

    image = G.synthesize(ws, 0).image
    assert image is not None
    return to_uint8(image)[0]


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


def _sheet(panels: list[Image.Image]) -> bytes:
    size = panels[0].size[0]
    sheet = Image.new("RGB", (len(panels) * size, size), "white")
    for i, p in enumerate(panels):
        sheet.paste(p, (i * size, 0))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def summarise(records: list[dict[str, Any]], points: list[int]) -> dict[str, Any]:
    """Per point count: mean MD, no-edit MD, their ratio, drift, steps, seconds, arrivals, lost faces, skipped
    pairs (records with ``error`` or ``skipped`` are counted, not measured)."""
    out: dict[str, Any] = {}
    for n in points:
        every = [r for r in records if r.get("points") == n]
        rs = [r for r in every if "md_no_edit" in r]
        if not every:
            continue
        entry: dict[str, Any] = {
            "edits": len(rs),
            "skipped": sum("skipped" in r for r in every),
            "failed": sum("error" in r for r in every),
        }
        out[str(n)] = entry
        if not rs:
            continue
        ok = [r for r in rs if r["md"] is not None]
        md = statistics.fmean(r["md"] for r in ok) if ok else math.nan
        md0 = statistics.fmean(r["md_no_edit"] for r in ok) if ok else math.nan
        entry.update(
            md=round(md, 3),
            md_no_edit=round(md0, 3),
            ratio=round(md / md0, 3) if ok and md0 else None,
            # a lost face (no landmarks on the result) counted as no progress: MD = its no-edit MD
            ratio_lost_as_no_edit=round(
                statistics.fmean(r["md_no_edit"] if r["md"] is None else r["md"] for r in rs)
                / statistics.fmean(r["md_no_edit"] for r in rs),
                3,
            ),
            md_median=round(statistics.median(r["md"] for r in ok), 3) if ok else None,
            drift=round(statistics.fmean(r["drift"] for r in ok), 3) if ok else None,
            tracked_to_target=round(statistics.fmean(r["tracked_to_target"] for r in rs), 3),
            image_change=round(statistics.fmean(r["image_change"] for r in rs), 2),
            image_change_max=round(max(r["image_change"] for r in rs), 2),
            steps=round(statistics.fmean(r["steps"] for r in rs), 1),
            seconds_per_edit=round(statistics.fmean(r["seconds"] for r in rs), 2) if "seconds" in rs[0] else None,
            arrived=sum(r["arrived"] for r in rs),
            face_lost=len(rs) - len(ok),
        )
        ids = [r["identity_to_photo"] for r in rs if r.get("identity_to_photo") is not None]
        if ids:
            entry["identity_to_photo"] = round(statistics.fmean(ids), 3)
            entry["identity_to_photo_max"] = round(max(ids), 3)
    return out
