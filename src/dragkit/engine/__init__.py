"""The DragGAN algorithm, headless and CPU-testable (docs/architecture.md §3).

Library use::

    from dragkit.engine import DragConfig, DragSession
    sess = DragSession.from_seed(G, seed=0, psi=0.7, config=DragConfig(impl="fast"))
    sess.set_points(handles=[(100, 120)], targets=[(140, 120)])
    result = sess.run(callback=lambda r: print(r.step, r.distances))
    image = sess.image()                      # uint8 [H, W, 3]

Point trackers live in :mod:`dragkit.engine.trackers` (registry ``TRACKERS``); the loss terms in
:mod:`dragkit.engine.losses`; feature sampling in :mod:`dragkit.engine.sampling`.
"""

from __future__ import annotations

from dragkit.engine.config import DragConfig, ResolvedConfig, radii, stop_distance
from dragkit.engine.losses import mask_loss, motion_loss
from dragkit.engine.result import StepFailedError, StepResult
from dragkit.engine.session import DragSession
from dragkit.engine.trackers import TRACKERS, Tracker, tracker_choices

__all__ = [
    "TRACKERS",
    "DragConfig",
    "DragSession",
    "ResolvedConfig",
    "StepFailedError",
    "StepResult",
    "Tracker",
    "mask_loss",
    "motion_loss",
    "radii",
    "stop_distance",
    "tracker_choices",
]
