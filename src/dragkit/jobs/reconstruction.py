"""Paired image reconstruction (the shape of DragGAN's Table 2; docs/architecture.md §6): ``dragkit eval
reconstruction``.

Case i (seed s = b + i): w1 is the seed's latent (truncation ``psi``); w2 moves w1's first :data:`POSE_ROWS` W+ rows
(the 4² and 8² style inputs of a StyleGAN, which set pose and layout) a fraction ``perturb`` of the way towards the
latent of seed s + 100 000, so I2 shows the same scene in another pose or layout. Dense optical flow from I1 to I2 and
back (OpenCV's DIS, weight-free; RAFT, the paper's choice, needs weights that do not ship in any package) gives the
correspondences: ``handles`` pixels are drawn at random (seeded by s) among those whose forward and backward flow
agree within 0.5 px, each with the target p + flow(p). I1 is dragged for at most ``max_steps`` (100) steps, with no
mask, and the result is compared with I2.

Each record: ``mse`` (mean squared error of the RGB values in [0, 1], ×100 as the paper prints it) over the whole
image, ``mse_moving`` inside the region the flow moves by ≥ 1 px (forward or backward) and ``mse_static`` outside it;
the same three for doing nothing (I1 against I2: ``*_no_edit``); ``lpips`` (LPIPS-VGG, only where torchvision's VGG16
weights are present, else None), steps, why the drag stopped. The paper's DragGAN numbers (MSE×100: lion 0.66, cat
1.04, dog 0.48, car 1.67) come from other models and RAFT flow: read them as the scale of the task, not a target.
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dragkit.errors import InvalidInputError
from dragkit.jobs.execute import Outcome

#: The paper's Table 2, DragGAN: MSE×100 per model (StyleGAN2 lions, cats, dogs, cars).
PAPER_MSE = {"lion": 0.66, "cat": 1.04, "dog": 0.48, "car": 1.67}
OTHER_SEED = 100_000  # w2 leans towards the latent of seed + OTHER_SEED
POSE_ROWS = 4  # the W+ rows w2 changes: the 4² and 8² style inputs (pose, layout)
CONSISTENT_PX = 0.5  # forward-backward flow disagreement allowed at a handle
MOVING_PX = 1.0  # flow magnitude that counts a pixel as moving


@dataclass(frozen=True)
class ReconstructionCase:
    """One pair: ``seed`` (I1's), ``index`` in the run, case ``id`` ``seed000007``."""

    id: str
    seed: int
    index: int = 0


def reconstruction_cases(cases: int, seed_base: int = 0) -> list[ReconstructionCase]:
    """Cases for seeds ``seed_base`` … ``seed_base + cases − 1``."""
    if cases < 1:
        raise InvalidInputError(f"--cases: expected at least 1, got {cases}")
    return [ReconstructionCase(f"seed{seed_base + i:06d}", seed_base + i, i) for i in range(cases)]


def flow_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DIS optical flow between uint8 [H, W, 3] images: (forward a→b, backward b→a), each float32 [H, W, 2] (dx, dy)."""
    import cv2

    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]
    return dis.calc(ga, gb, None), dis.calc(gb, ga, None)


def consistent(forward: np.ndarray, backward: np.ndarray, tolerance: float = CONSISTENT_PX) -> np.ndarray:
    """bool [H, W]: pixels p whose forward flow, followed by the backward flow at p + forward(p) (nearest pixel),
    returns within ``tolerance`` px and stays inside the image."""
    H, W = forward.shape[:2]
    ys, xs = np.mgrid[0:H, 0:W]
    tx = xs + forward[..., 0]
    ty = ys + forward[..., 1]
    inside = (tx >= 0) & (tx <= W - 1) & (ty >= 0) & (ty <= H - 1)
    bx = np.clip(np.rint(tx), 0, W - 1).astype(int)
    by = np.clip(np.rint(ty), 0, H - 1).astype(int)
    back = backward[by, bx]
    err = np.hypot(forward[..., 0] + back[..., 0], forward[..., 1] + back[..., 1])
    return inside & (err <= tolerance)


def pick_handles(
    forward: np.ndarray, ok: np.ndarray, count: int, seed: int
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """``count`` handles drawn (seeded) among the ``ok`` pixels, 2 px from the border, with targets p + flow(p)."""
    allowed = ok.copy()
    allowed[:2], allowed[-2:], allowed[:, :2], allowed[:, -2:] = False, False, False, False
    ys, xs = np.nonzero(allowed)
    if len(xs) < count:
        raise ValueError(f"only {len(xs)} pixels with consistent flow, {count} handles asked")
    pick = np.random.RandomState(seed).choice(len(xs), size=count, replace=False)
    handles = [(float(xs[i]), float(ys[i])) for i in pick]
    targets = [(float(x + forward[int(y), int(x), 0]), float(y + forward[int(y), int(x), 1])) for x, y in handles]
    return handles, targets


def mse_parts(a: np.ndarray, b: np.ndarray, moving: np.ndarray) -> tuple[float, float | None, float | None]:
    """MSE×100 of uint8 images as [0, 1] RGB: whole image, inside ``moving`` (bool [H, W]), outside it (None for an
    empty part)."""
    d = ((a.astype(np.float64) - b.astype(np.float64)) / 255.0) ** 2
    per_pixel = d.mean(axis=2)
    inside = float(per_pixel[moving].mean() * 100) if moving.any() else None
    outside = float(per_pixel[~moving].mean() * 100) if (~moving).any() else None
    return float(per_pixel.mean() * 100), inside, outside


@dataclass(frozen=True)
class ReconstructionSpec:
    """Worker recipe: model, drag ``config`` (a DragConfig dict; ``max_steps`` 100 unless given), ``psi``,
    ``perturb`` (how far w2's pose rows lean towards another latent), ``handles`` per pair, ``vgg16`` (LPIPS's backbone
    path, None: the cached copy if any), ``panels`` (cases drawn for the report)."""

    network: str
    device: str = "cpu"
    config: dict[str, Any] = field(default_factory=dict)
    psi: float = 0.7
    perturb: float = 0.5
    handles: int = 32
    vgg16: str | None = None
    panels: int = 4

    def build(self) -> ReconstructionWorker:
        return ReconstructionWorker(self)


class ReconstructionWorker:
    """Runs reconstruction cases with one loaded model (and LPIPS where its weights are present)."""

    def __init__(self, spec: ReconstructionSpec) -> None:
        from dragkit.engine import DragConfig
        from dragkit.io import load_generator

        self.spec = spec
        self.G = load_generator(spec.network, device=spec.device)
        self.config = DragConfig.from_dict(spec.config)
        self.lpips = _lpips_or_none(spec.vgg16)

    def run(self, case: ReconstructionCase) -> Outcome:
        """One pair: flow, drag, errors; see the module docstring."""
        import torch

        from dragkit.engine import DragSession
        from dragkit.jobs.landmarks import render

        G, device = self.G, self.G.w_avg.device
        sess = DragSession(G, self._w(case.seed), config=self.config)
        rows = list(range(min(POSE_ROWS, G.num_ws)))
        with torch.no_grad():
            w1 = sess.ws.detach().clone()
            other = self._w(case.seed + OTHER_SEED)
            w2 = w1.clone()
            w2[:, rows] = w1[:, rows] + self.spec.perturb * (other[:, rows] - w1[:, rows])
            i1, i2 = render(G, w1), render(G, w2.to(device))
        forward, backward = flow_pair(i1, i2)
        moving = (np.hypot(forward[..., 0], forward[..., 1]) >= MOVING_PX) | (
            np.hypot(backward[..., 0], backward[..., 1]) >= MOVING_PX
        )
        handles, targets = pick_handles(forward, consistent(forward, backward), self.spec.handles, case.seed)
        sess.set_points(handles, targets)
        last = sess.run(max_steps=self.config.max_steps)
        result = sess.image()
        mse, mse_in, mse_out = mse_parts(result, i2, moving)
        mse0, mse0_in, mse0_out = mse_parts(i1, i2, moving)
        rec: dict[str, Any] = {
            "seed": case.seed,
            "handles": len(handles),
            "flow_px": round(float(np.mean(np.hypot(*(np.array(targets) - np.array(handles)).T))), 3),
            "moving_share": round(float(moving.mean()), 4),
            "mse": mse,
            "mse_moving": mse_in,
            "mse_static": mse_out,
            "mse_no_edit": mse0,
            "mse_moving_no_edit": mse0_in,
            "mse_static_no_edit": mse0_out,
            "lpips": None if self.lpips is None else self._lpips(result, i2),
            "lpips_no_edit": None if self.lpips is None else self._lpips(i1, i2),
            "steps": last.step,
            "arrived": bool(last.done),
            "stopped": "degraded" if last.degraded else "arrived" if last.done else "max_steps",
        }
        files = {}
        if case.index < self.spec.panels:
            files["panel.png"] = _panel(i1, i2, result, handles, targets, last.handles)
        return Outcome(rec, files)

    def _w(self, seed: int) -> Any:
        import torch

        from dragkit.nn.seeds import z_from_seed

        with torch.no_grad():
            return self.G.mapping(z_from_seed(seed, self.G.z_dim).to(self.G.w_avg.device), psi=self.spec.psi)

    def _lpips(self, a: np.ndarray, b: np.ndarray) -> float:
        import torch

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x).permute(2, 0, 1)[None].float() / 127.5 - 1

        assert self.lpips is not None
        with torch.no_grad():
            return float(self.lpips(t(a), t(b))[0])


def _lpips_or_none(vgg16: str | None) -> Any:
    """LPIPS-VGG where its backbone is given or cached (never downloaded for an evaluation), else None."""
    from dragkit.errors import DragkitError
    from dragkit.invert.losses import resolve_loss

    if resolve_loss("auto", vgg16) != "lpips":
        return None
    from dragkit.invert.lpips import load_lpips

    try:
        return load_lpips(vgg16)
    except DragkitError:
        return None


def _panel(
    i1: np.ndarray,
    i2: np.ndarray,
    result: np.ndarray,
    handles: list[tuple[float, float]],
    targets: list[tuple[float, float]],
    tracked: list[tuple[float, float]],
    side: int = 256,
) -> bytes:
    """I1 with handles → targets | I2 | the result with the tracked handles, each ``side`` px."""
    H, W = i1.shape[:2]
    s = side / max(H, W)
    tiles = []
    layout = (
        (i1, [(handles, "red"), (targets, "blue")]),
        (i2, [(targets, "blue")]),
        (result, [(tracked, "yellow"), (targets, "blue")]),
    )
    for img, dots in layout:
        tile = Image.fromarray(img).resize((round(W * s), round(H * s)), Image.Resampling.LANCZOS)
        d = ImageDraw.Draw(tile)
        for points, colour in dots:
            for x, y in points:
                cx, cy = (x + 0.5) * s - 0.5, (y + 0.5) * s - 0.5
                d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
        tiles.append(tile)
    sheet = Image.new("RGB", (sum(t.width for t in tiles), tiles[0].height), "white")
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def summarise_reconstruction(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the measured cases (records with ``error`` are counted, not measured)."""
    rs = [r for r in records if "mse" in r]
    out: dict[str, Any] = {"cases": len(rs), "failed": sum("error" in r for r in records)}
    if not rs:
        return out
    for key in ("mse", "mse_moving", "mse_static", "mse_no_edit", "mse_moving_no_edit", "mse_static_no_edit"):
        values = [r[key] for r in rs if r[key] is not None]
        out[key] = round(statistics.fmean(values), 4) if values else None
    out["ratio"] = round(out["mse"] / out["mse_no_edit"], 3) if out.get("mse_no_edit") else None
    lp = [r["lpips"] for r in rs if r.get("lpips") is not None]
    out["lpips"] = round(statistics.fmean(lp), 4) if lp else None
    out["steps"] = round(statistics.fmean(r["steps"] for r in rs), 1)
    out["arrived"] = sum(r["arrived"] for r in rs)
    out["flow_px"] = round(statistics.fmean(r["flow_px"] for r in rs), 2)
    if "seconds" in rs[0]:
        out["seconds_per_case"] = round(statistics.fmean(r["seconds"] for r in rs), 2)
    return out
