"""How well each point tracker follows the content: ``dragkit eval tracking`` (docs/architecture.md §6).

A *trajectory* is recorded per case: the landmark protocol's pair (:mod:`dragkit.jobs.landmarks`; ``points`` of face
1's dlib landmarks dragged towards face 2's) is dragged with the evaluated drag settings for at most ``max_steps``
steps (100 by default here), and the latent after every step is kept. Then every step's image and features are
rendered once, and on them:

- the *truth*: dlib's landmarks, found again on each image (their own jitter is about 1 px at 512²);
- every registered tracker, replayed open-loop on the recorded features: started at the handles on the first
  image, then ``track`` step after step, each from its own last estimate (the drag itself stays the recorded one,
  so every tracker sees the same images);
- the baseline: OpenCV's pyramidal Lucas–Kanade (21 × 21 window, 4 levels) from each image to the next.

Per tracker and case: the mean distance to the truth over the steps (``mean``) and at the last step (``final``),
in pixels at 512×512, and the error per step (for the figure). Steps where dlib finds no face are left out.
Trackers that change the motion loss (FreeDrag) are judged on the positions they report, like the others.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dragkit.jobs.execute import Outcome
from dragkit.jobs.landmarks import LandmarkCase, Landmarker, eval_to_image, image_to_eval

BASELINE = "lucas-kanade"
LK_WINDOW = 21
LK_LEVELS = 3  # pyramid levels above the image: 4 in all


@dataclass(frozen=True)
class TrackingSpec:
    """Worker recipe: model, drag ``config`` (a DragConfig dict) that records the trajectories, ``psi``, the
    landmark model path (None: found or fetched)."""

    network: str
    device: str = "cpu"
    config: dict[str, Any] = field(default_factory=dict)
    psi: float = 0.7
    predictor: str | None = None

    def build(self) -> TrackingWorker:
        return TrackingWorker(self)


class TrackingWorker:
    """Records a trajectory per case and replays every tracker and Lucas–Kanade on it."""

    def __init__(self, spec: TrackingSpec) -> None:
        from dragkit.engine import DragConfig
        from dragkit.io import load_generator

        self.spec = spec
        self.G = load_generator(spec.network, device=spec.device)
        self.config = DragConfig.from_dict(spec.config)
        self.marker = Landmarker(spec.predictor)

    def run(self, case: LandmarkCase) -> Outcome:
        """Record, render, replay, measure; see the module docstring."""
        import torch

        from dragkit.engine import DragSession
        from dragkit.jobs.drag import stop_reason
        from dragkit.jobs.landmarks import render
        from dragkit.nn.seeds import z_from_seed

        G, device = self.G, self.G.w_avg.device
        with torch.no_grad():
            ws = [G.mapping(z_from_seed(s, G.z_dim).to(device), psi=self.spec.psi) for s in case.seeds]
            imgs = [render(G, w) for w in ws]
        lms = [self.marker(img) for img in imgs]
        base = {"pair": case.pair, "seeds": list(case.seeds), "points": case.points}
        if lms[0] is None or lms[1] is None:
            return Outcome({**base, "skipped": "no face in one of the two images"})
        idx = np.array(case.landmarks)
        H, W = G.img_shape
        handles = eval_to_image(lms[0][idx], (H, W))
        targets = eval_to_image(lms[1][idx], (H, W))
        sess = DragSession(G, ws[0], config=self.config, history_limit=2)
        sess.set_points(handles, targets)
        latents = [sess.ws.detach().clone()]
        last = None
        for _ in range(self.config.max_steps):
            last = sess.step()
            if last.done or last.degraded:
                break
            latents.append(sess.ws.detach().clone())
        errors = self._replay(sess, latents, handles, idx)
        rec: dict[str, Any] = {
            **base,
            "landmarks": list(case.landmarks),
            "steps": len(latents) - 1,
            "stopped": stop_reason(last, self.config.max_steps),
            "trackers": {
                name: {
                    "mean": _mean(errs),
                    "final": next((e for e in reversed(errs) if e is not None), None),
                    "per_step": errs,
                }
                for name, errs in errors.items()
            },
        }
        return Outcome(rec)

    def _replay(
        self, sess: Any, latents: list[Any], handles: list[tuple[float, float]], idx: np.ndarray
    ) -> dict[str, list[float | None]]:
        """Error per step (512-grid px, None where dlib finds no face) of every tracker and of Lucas–Kanade."""
        import cv2
        import torch

        from dragkit.engine import TRACKERS
        from dragkit.engine.trackers.base import TrackContext
        from dragkit.nn.images import to_uint8

        G, s = self.G, sess.settings
        H, W = G.img_shape
        device = G.w_avg.device
        targets = torch.tensor(sess.status().targets, dtype=torch.float32, device=device)
        start = torch.tensor(handles, dtype=torch.float32, device=device)
        trackers = {name: cls() for name, cls in TRACKERS.items()}
        estimates = {name: start.clone() for name in trackers}
        states: dict[str, Any] = {}
        lk_points = np.array(handles, dtype=np.float32).reshape(-1, 1, 2)
        errors: dict[str, list[float | None]] = {name: [] for name in [*trackers, BASELINE]}
        previous_grey = None
        for k, ws in enumerate(latents):
            with torch.no_grad():
                out = G.synthesize(ws, s.feature_block)
            assert out.image is not None
            image = to_uint8(out.image)[0]
            truth = self.marker(image)
            grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            for name, tracker in trackers.items():
                ctx = TrackContext(
                    out.features,
                    estimates[name],
                    targets,
                    image_shape=(H, W),
                    r1=s.r1,
                    r2=s.r2,
                    impl=s.impl,
                    stop_distance=sess.stop_distance(),
                    image=out.image if tracker.needs_frame else None,
                )
                with torch.no_grad():
                    if k == 0:
                        states[name] = tracker.start(ctx)
                    else:
                        estimates[name], states[name] = tracker.track(ctx, states[name])
            if previous_grey is not None:
                moved, status, _ = cv2.calcOpticalFlowPyrLK(  # type: ignore[call-overload]
                    previous_grey,
                    grey,
                    lk_points,
                    None,
                    winSize=(LK_WINDOW, LK_WINDOW),
                    maxLevel=LK_LEVELS,
                    criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
                )
                lk_points = np.where(status.reshape(-1, 1, 1) == 1, moved, lk_points).astype(np.float32)
            previous_grey = grey
            for name in errors:
                if truth is None:
                    errors[name].append(None)
                    continue
                if name == BASELINE:
                    points = [(float(x), float(y)) for x, y in lk_points.reshape(-1, 2)]
                else:
                    points = [(float(x), float(y)) for x, y in estimates[name].tolist()]
                err = np.linalg.norm(image_to_eval(points, (H, W)) - truth[idx], axis=1).mean()
                errors[name].append(round(float(err), 3))
        return errors


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.fmean(kept), 3) if kept else None


def summarise_tracking(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per tracker: mean over cases of the mean and final errors, ranked best first (Lucas–Kanade included), and
    how each does against Lucas–Kanade (cases where its mean error is lower)."""
    rs = [r for r in records if "trackers" in r]
    out: dict[str, Any] = {
        "cases": len(rs),
        "skipped": sum("skipped" in r for r in records),
        "failed": sum("error" in r for r in records),
        "steps": round(statistics.fmean(r["steps"] for r in rs), 1) if rs else None,
        "trackers": {},
    }
    if not rs:
        return out
    names = list(rs[0]["trackers"])
    table = {}
    for name in names:
        means = [r["trackers"][name]["mean"] for r in rs if r["trackers"][name]["mean"] is not None]
        finals = [r["trackers"][name]["final"] for r in rs if r["trackers"][name]["final"] is not None]
        wins = sum(
            1
            for r in rs
            if name != BASELINE
            and r["trackers"][name]["mean"] is not None
            and r["trackers"][BASELINE]["mean"] is not None
            and r["trackers"][name]["mean"] < r["trackers"][BASELINE]["mean"]
        )
        table[name] = {
            "mean": round(statistics.fmean(means), 3) if means else None,
            "final": round(statistics.fmean(finals), 3) if finals else None,
            "better_than_lk": None if name == BASELINE else wins,
        }
    ranked = sorted(table, key=lambda n: (table[n]["mean"] is None, table[n]["mean"] or 0.0))
    out["trackers"] = {n: {"rank": i + 1, **table[n]} for i, n in enumerate(ranked)}
    return out
