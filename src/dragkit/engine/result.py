"""What one drag step reports, and the error of a step that could not be completed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dragkit.errors import DragkitError

__all__ = ["StepFailedError", "StepResult"]

Point = tuple[float, float]


class StepFailedError(DragkitError):
    """A step could not be completed (non-finite features, loss or gradient); the session is unchanged."""


@dataclass(frozen=True)
class StepResult:
    """What one :meth:`DragSession.step <dragkit.engine.session.DragSession.step>` reports.

    step: 1-based index of this step since the session start (or the last reset).
    handles: tracked handle positions [(x, y), …] in image pixels, in the latent this step started from.
    targets: target positions [(x, y), …]. distances: ‖t_i − p_i‖ in pixels.
    loss: the optimised loss, or None when the step was ``done`` (nothing optimised).
    done: the drag arrived (every handle within the stop distance of its target, or the tracker's own test).
    frame: uint8 [H, W, 3] image of the latent the step started from, when asked for, else None.
    sharpness: on the steps the quality guard checked (every ``GUARD_EVERY``), the edit region's sharpness as a
    fraction of the segment's start, else None.
    degraded: the guard tripped: the session went back to the last checked latent that was still sharp (``step``,
    ``handles`` and ``distances`` are that latent's) and nothing was optimised; stop, or go on with the guard off.
    """

    step: int
    handles: list[Point]
    targets: list[Point]
    distances: list[float]
    loss: float | None
    done: bool
    frame: np.ndarray | None = field(default=None, compare=False, repr=False)
    sharpness: float | None = None
    degraded: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict without the frame."""
        return {
            "step": self.step,
            "handles": [list(p) for p in self.handles],
            "targets": [list(p) for p in self.targets],
            "distances": list(self.distances),
            "loss": self.loss,
            "done": self.done,
            "sharpness": self.sharpness,
            "degraded": self.degraded,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            step=int(d["step"]),
            handles=[(float(x), float(y)) for x, y in d["handles"]],
            targets=[(float(x), float(y)) for x, y in d["targets"]],
            distances=[float(v) for v in d["distances"]],
            loss=None if d["loss"] is None else float(d["loss"]),
            done=bool(d["done"]),
            sharpness=None if d.get("sharpness") is None else float(d["sharpness"]),
            degraded=bool(d.get("degraded", False)),
        )
