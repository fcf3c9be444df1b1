"""What each client message does to a tab: one small function per message type, looked up in :data:`HANDLERS`.

A handler is called on the studio's worker thread as ``handler(ctx, s, msg)`` with the manager's
:class:`HandlerContext` (the model store and the drag loop), the tab's :class:`~dragkit.studio.sessions.StudioSession`
and the validated message of :mod:`dragkit.studio.protocol`; it returns the reply, a JSON-ready ``state`` (or
``stopped``) dict, and raises :class:`~dragkit.studio.protocol.ProtocolError` (or another
:class:`~dragkit.errors.DragkitError`) for a message that cannot be carried out. Messages it sends besides the
reply (a ``stopped`` for a drag it interrupts, a ``status`` while a model loads) go through ``s.emit``.

This module imports nothing of :mod:`dragkit.studio.sessions` at run time: what it needs comes in as arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from dragkit.studio import protocol as P
from dragkit.studio.mask import decimate, paint_stroke

if TYPE_CHECKING:
    from dragkit.engine import DragSession
    from dragkit.studio.models import ModelStore
    from dragkit.studio.sessions import StudioSession

#: The drag options a ``set_config`` message may change on the engine as they are (W vs W+ needs a new engine).
ENGINE_FIELDS = ("lr", "tracker", "max_steps", "mask_lambda", "latent_reg", "guard")


class HandlerContext(Protocol):
    """What handlers need from the session manager."""

    @property
    def models(self) -> ModelStore: ...

    def begin_drag(self, s: StudioSession) -> None:
        """Mark ``s`` running and queue the first step of its drag."""


Handler = Callable[[HandlerContext, "StudioSession", Any], dict[str, Any]]


def _edited(s: StudioSession, *, image: bool = False, mask: bool = False) -> dict[str, Any]:
    """The reply to an edit: the state, after which "undo drag" no longer applies."""
    s.last_run_steps = 0
    return s.snapshot(image=image, mask=mask)


# -- image and options -----------------------------------------------------------------------------------------


def new_image(ctx: HandlerContext, s: StudioSession, msg: P.NewImage) -> dict[str, Any]:
    s.supersede()
    model = msg.model if msg.model is not None else s.source.model
    w_plus = msg.w_plus if msg.w_plus is not None else s.w_plus
    s.emit({"type": "status", "message": f"loading {model}…"})
    class_idx = msg.class_idx
    if class_idx is None and model == s.source.model:
        class_idx = s.source.class_idx
    s.new_engine(ctx.models, model, msg.seed, msg.psi, w_plus, class_idx)
    return s.snapshot(image=True, mask=True)


def set_config(ctx: HandlerContext, s: StudioSession, msg: P.SetConfig) -> dict[str, Any]:
    """lr, tracker and max_steps change the engine for its next steps (even during a drag; latent, points,
    history and optimiser state are kept) and the tab's config for its next image. W vs W+ changes what is
    optimised: like the official GUI, the edit starts again from the seed's latent, keeping points and mask."""
    changes = {name: value for name in ENGINE_FIELDS if (value := getattr(msg, name)) is not None}
    if changes:
        config = s.config.replace(**changes)  # validates: an unknown tracker raises InvalidInputError
        if s.engine is not None:
            s.engine.set_config(**changes)
        s.config = config
    if msg.w_plus is None or msg.w_plus == s.w_plus:
        return s.snapshot()
    s.supersede()
    old = s.engine
    if old is None:
        s.config = s.config.replace(w_mode="w+" if msg.w_plus else "w")
        return s.snapshot()
    origins = old.status()
    mask = old.mask
    s.new_engine(ctx.models, s.source.model, s.source.seed, s.source.psi, msg.w_plus)
    eng = s.require_engine()
    if origins.handles:
        eng.set_points(origins.handles, origins.targets)
    if mask is not None:
        eng.set_mask(mask)
    return s.snapshot(image=True, mask=True)


# -- points and mask -------------------------------------------------------------------------------------------


def add_point(ctx: HandlerContext, s: StudioSession, msg: P.AddPoint) -> dict[str, Any]:
    eng = s.require_engine()
    if len(eng.handles) >= P.MAX_POINTS:
        raise P.ProtocolError("too_many_points", f"at most {P.MAX_POINTS} points")
    eng.add_point(s.point(msg.handle, "handle"), s.point(msg.target, "target"))
    return _edited(s)


def move_point(ctx: HandlerContext, s: StudioSession, msg: P.MovePoint) -> dict[str, Any]:
    eng = s.require_engine()
    handles, targets = eng.handles, eng.targets
    if not msg.index < len(handles):
        raise P.ProtocolError("out_of_range", f"no point {msg.index}: there are {len(handles)}")
    if msg.handle is None and msg.target is None:
        raise P.ProtocolError("invalid", "move_point needs a handle, a target or both")
    if msg.handle is not None:
        handles[msg.index] = s.point(msg.handle, "handle")
    if msg.target is not None:
        targets[msg.index] = s.point(msg.target, "target")
    eng.set_points(handles, targets)
    return _edited(s)


def remove_point(ctx: HandlerContext, s: StudioSession, msg: P.RemovePoint) -> dict[str, Any]:
    eng = s.require_engine()
    if not msg.index < len(eng.handles):
        raise P.ProtocolError("out_of_range", f"no point {msg.index}: there are {len(eng.handles)}")
    eng.remove_point(msg.index)
    return _edited(s)


def clear_points(ctx: HandlerContext, s: StudioSession, msg: P.ClearPoints) -> dict[str, Any]:
    s.require_engine().clear_points()
    return _edited(s)


def mask_stroke(ctx: HandlerContext, s: StudioSession, msg: P.MaskStroke) -> dict[str, Any]:
    """Paint discs of ``radius`` pixels along the stroke; the first stroke decides what the unpainted rest is."""
    eng = s.require_engine()
    H, W = eng.image_shape
    if msg.radius > max(H, W):
        raise P.ProtocolError("out_of_range", f"radius {msg.radius:g} exceeds the image size {W}×{H}")
    points = [s.point(p, "stroke point") for p in msg.points]
    points = decimate(points, max(0.5, msg.radius / 8))
    movable = msg.mode == "movable"
    current = eng.mask
    if current is None:
        current = np.full((H, W), not movable, dtype=bool)
    eng.set_mask(paint_stroke(current, points, msg.radius, movable))
    return _edited(s, mask=True)


def mask_clear(ctx: HandlerContext, s: StudioSession, msg: P.MaskClear) -> dict[str, Any]:
    s.require_engine().set_mask(None)
    return _edited(s, mask=True)


# -- the drag --------------------------------------------------------------------------------------------------


def start(ctx: HandlerContext, s: StudioSession, msg: P.Start) -> dict[str, Any]:
    eng = s.require_engine()
    if s.running:
        return s.snapshot()
    if not eng.handles:
        raise P.ProtocolError("no_points", "add at least one handle and target before starting")
    held = held_handles(eng)
    if held:
        names = ", ".join(str(i + 1) for i in held)
        message = f"handle {names} lies in the fixed region and will hardly move: paint it movable"
        s.emit({"type": "warning", "code": "handle_in_fixed_region", "message": message})
    ctx.begin_drag(s)
    return s.snapshot()


def held_handles(eng: DragSession) -> list[int]:
    """Indices of the handles that lie in the fixed region of the mask (the λ term holds them in place)."""
    mask = eng.mask
    if mask is None or bool(mask.all()) or not bool(mask.any()) or eng.settings.mask_lambda == 0:
        return []
    H, W = mask.shape
    return [i for i, (x, y) in enumerate(eng.handles) if not mask[min(H - 1, round(y)), min(W - 1, round(x))]]


def stop(ctx: HandlerContext, s: StudioSession, msg: P.Stop) -> dict[str, Any]:
    stopped = s.halt("user")
    return stopped if stopped is not None else s.snapshot()


# -- history ---------------------------------------------------------------------------------------------------


def undo(ctx: HandlerContext, s: StudioSession, msg: P.Undo) -> dict[str, Any]:
    """Undo ``count`` edits or steps, or with ``drag`` every step of the last drag (stopping a running one)."""
    eng = s.require_engine()
    s.supersede()
    if msg.drag:
        count = s.last_run_steps
        if count == 0:
            raise P.ProtocolError("nothing_to_undo", "no drag to undo as a whole: the last action was not a drag")
    else:
        count = msg.count
    _repeat(eng, "undo", count)
    return _edited(s, image=True, mask=True)


def redo(ctx: HandlerContext, s: StudioSession, msg: P.Redo) -> dict[str, Any]:
    eng = s.require_engine()
    s.supersede()
    _repeat(eng, "redo", msg.count)
    return _edited(s, image=True, mask=True)


def _repeat(eng: DragSession, action: Literal["undo", "redo"], count: int) -> None:
    """Undo or redo up to ``count`` times (at least once, else ``nothing_to_<action>``)."""
    undoing = action == "undo"
    if not (eng.can_undo if undoing else eng.can_redo):
        raise P.ProtocolError(f"nothing_to_{action}", f"nothing to {action}")
    for _ in range(count):
        if not (eng.can_undo if undoing else eng.can_redo):
            break
        (eng.undo if undoing else eng.redo)()


def reset(ctx: HandlerContext, s: StudioSession, msg: P.Reset) -> dict[str, Any]:
    eng = s.require_engine()
    s.supersede()
    eng.reset()
    return _edited(s, image=True, mask=True)


#: Message class → its handler; every member of :data:`~dragkit.studio.protocol.ClientMessage` has one.
HANDLERS: dict[type[Any], Handler] = {
    P.NewImage: new_image,
    P.SetConfig: set_config,
    P.AddPoint: add_point,
    P.MovePoint: move_point,
    P.RemovePoint: remove_point,
    P.ClearPoints: clear_points,
    P.MaskStroke: mask_stroke,
    P.MaskClear: mask_clear,
    P.Start: start,
    P.Stop: stop,
    P.Undo: undo,
    P.Redo: redo,
    P.Reset: reset,
}
