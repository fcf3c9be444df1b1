"""Session state → pictures, without UI imports: point/mask overlays and video export."""

from __future__ import annotations

from dragkit.render.overlay import HANDLE_COLOR, TARGET_COLOR, draw_points
from dragkit.render.video import VideoWriter, write_video

__all__ = ["HANDLE_COLOR", "TARGET_COLOR", "VideoWriter", "draw_points", "write_video"]
