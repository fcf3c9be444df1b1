"""The DragGAN algorithm, headless and CPU-testable (design.md §3).

Library use::

    from dragkit.engine import DragConfig, DragSession
    sess = DragSession.from_seed(G, seed=0, psi=0.7, config=DragConfig(impl="fast"))
    sess.set_points(handles=[(100, 120)], targets=[(140, 120)])
    result = sess.run(callback=lambda r: print(r.step, r.distances))
    image = sess.image()                      # uint8 [H, W, 3]

Pure functions (``motion_loss``, ``track_points``, ``mask_loss``, ``stop_distance``, ``radii``) live in
:mod:`dragkit.engine.ops`; the literal official-style versions in :mod:`dragkit.engine.reference`.
"""

from __future__ import annotations

from dragkit.engine.config import DragConfig, ResolvedConfig
from dragkit.engine.ops import mask_loss, motion_loss, radii, stop_distance, track_points
from dragkit.engine.session import DragSession, StepFailedError, StepResult

__all__ = [
    "DragConfig",
    "DragSession",
    "ResolvedConfig",
    "StepFailedError",
    "StepResult",
    "mask_loss",
    "motion_loss",
    "radii",
    "stop_distance",
    "track_points",
]
