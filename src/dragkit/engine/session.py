"""The stateful drag session: one object, one ``step()`` that the CLI, the studio, benchmarks and tests all drive.

A :class:`DragSession` holds w0, the optimised W+ rows, the Adam state, points, mask, the tracker's state and an
undo/redo history (:mod:`dragkit.engine.history`). Every public mutation builds a new immutable state and only then
commits it, so an exception (bad input, a diverged latent) leaves the session as it was. Files:
:mod:`dragkit.engine.persist`.

Each :meth:`DragSession.step` follows docs/architecture.md §3 in order:

1. forward to the feature block → F (``impl="fast"``: stop after the block; ``impl="reference"``: the full forward,
   as the official code). On the first step after the points or the tracker changed: F0 = F.detach() and the
   tracker starts (its templates come from F0 at the handles). Every ``GUARD_EVERY``-th step the frame is rendered
   and the edit region's sharpness checked (:mod:`dragkit.engine.guard`); with the guard on, a latent below the
   floor ends the step: the session goes back to the last sharp latent and reports ``degraded``;
2. point tracking by the configured tracker (:mod:`dragkit.engine.trackers`);
3. stop check: done when the tracker says the drag arrived (then nothing is optimised this step);
4. loss = the tracker's motion term + λ · fixed-region term (a mask with both values) + γ · mean|ws − w0|;
5. gradient w.r.t. the optimised rows, Adam step.

``render=True`` adds the display frame of the latent the step started from (the one the reported handles were
tracked in): ``impl="fast"`` finishes it with ``generator.resume()`` under ``no_grad``; the reference path already
has it from its full forward.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dragkit.engine import persist
from dragkit.engine.config import DragConfig, ResolvedConfig, stop_distance
from dragkit.engine.guard import (
    GUARD_EVERY,
    GUARD_MIN_SIDE,
    SHARPNESS_FLOOR,
    Box,
    guard_region,
    sharpness,
)
from dragkit.engine.history import History, Point, Segment, State, TrajectoryNode
from dragkit.engine.inputs import check_mask, check_meta, check_points, check_psi, check_seed, check_ws0
from dragkit.engine.latent import LatentRows, adam_step
from dragkit.engine.losses import FixedRegionTerm, latent_loss
from dragkit.engine.result import StepFailedError, StepResult
from dragkit.engine.sampling import point_distances
from dragkit.engine.trackers import TrackContext, Tracker, get_tracker
from dragkit.engine.trackers.base import as_points
from dragkit.errors import InvalidInputError
from dragkit.nn.images import to_uint8
from dragkit.nn.protocol import Generator, SynthesisResult

logger = logging.getLogger(__name__)

__all__ = ["DragSession", "StepFailedError", "StepResult"]

#: Default byte budget of a session's undo history.
HISTORY_BYTES = 256 * 2**20

#: DragConfig fields that :meth:`DragSession.set_config` may change mid-edit (the others define the latent's
#: layout or the feature grid the saved states were made with: start a new session for those).
LIVE_FIELDS = ("lr", "tracker", "tracker_params", "mask_lambda", "latent_reg", "stop_rule", "max_steps", "guard")


@dataclass(frozen=True)
class GuardMemo:
    """The checks' reference: the segment and mask it belongs to, the region the guard measures and the segment
    start's sharpness there."""

    segment: Segment
    mask: torch.Tensor | None
    box: Box
    reference: float


class DragSession:
    """One DragGAN edit of one latent (docs/architecture.md §3).

    generator: any :class:`~dragkit.nn.protocol.Generator`; ws0: starting latent [1, num_ws, w_dim] (W+);
    config: :class:`DragConfig` (defaults: the paper's); model_id: recorded in saved sessions; meta: a few
    JSON values saved with the session (``from_seed`` records ``seed`` and ``psi``);
    history_limit: how many undo steps are kept at most; history_bytes: how many bytes of tensors the whole history
    may hold (default 256 MiB; each step holds the optimised rows and Adam moments, a few tens of KB, and each
    tracker segment its state); the oldest undo steps go first.
    """

    def __init__(
        self,
        generator: Generator,
        ws0: torch.Tensor,
        config: DragConfig | None = None,
        model_id: str = "unknown",
        *,
        meta: dict[str, Any] | None = None,
        history_limit: int = 1000,
        history_bytes: int = HISTORY_BYTES,
    ) -> None:
        config = DragConfig() if config is None else config
        if not isinstance(config, DragConfig):
            raise InvalidInputError(f"config: expected a DragConfig, got {type(config).__name__}")
        self.generator = generator
        self.model_id = str(model_id)
        self.meta = check_meta(meta)
        self.config = config
        self.image_shape: tuple[int, int] = (int(generator.img_shape[0]), int(generator.img_shape[1]))
        self.settings: ResolvedConfig = config.resolve_for(generator)
        self.tracker: Tracker[Any, Any] = get_tracker(self.settings.tracker)(self.settings.tracker_params)
        self.device = generator.w_avg.device
        self.w0 = check_ws0(ws0, generator.num_ws, generator.w_dim, self.device)
        self._rows = LatentRows(self.w0, self.settings.optimize_ws, self.settings.w_mode)
        self._lock = threading.RLock()
        self._history = History(self._initial_state(), history_limit, history_bytes)
        self._image_cache: tuple[torch.Tensor, np.ndarray] | None = None
        self._fixed_region = FixedRegionTerm()
        self._features0: tuple[Segment, torch.Tensor] | None = None  # F0 of the last segment used
        self._guard: GuardMemo | None = None  # the quality guard's reference for the last segment checked

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def from_seed(
        cls,
        generator: Generator,
        seed: int,
        psi: float = 0.7,
        config: DragConfig | None = None,
        model_id: str = "unknown",
        class_idx: int | None = None,
        **kwargs: Any,
    ) -> DragSession:
        """Session on ``generator.mapping(z_from_seed(seed), c, psi=psi)`` (NVIDIA's seed → z convention); ``c``
        is the one-hot label of ``class_idx`` for a conditional model (required there, refused otherwise)."""
        from dragkit.nn.seeds import one_hot_label, z_from_seed

        device = generator.w_avg.device
        z = z_from_seed(check_seed(seed), generator.z_dim).to(device)
        c = one_hot_label(generator.c_dim, class_idx)
        with torch.no_grad():
            ws = generator.mapping(z, None if c is None else c.to(device), psi=check_psi(psi))
        meta: dict[str, Any] = {"seed": seed, "psi": float(psi)}
        if class_idx is not None:
            meta["class"] = int(class_idx)
        meta.update(kwargs.pop("meta", None) or {})
        return cls(generator, ws, config=config, model_id=model_id, meta=meta, **kwargs)

    def _initial_state(self) -> State:
        return State(self._rows.initial(), None, (), (), (), None, None, None, None)

    # -- read-only views ------------------------------------------------------------------------------------------
    @property
    def ws(self) -> torch.Tensor:
        """Current latent [1, num_ws, w_dim] (rows outside ``optimize_ws`` are w0's), detached."""
        return self._rows.compose(self._history.current.ws_opt).detach()

    @property
    def handles(self) -> list[Point]:
        """Current handle positions [(x, y), …] (as last tracked)."""
        return list(self._history.current.handles)

    @property
    def targets(self) -> list[Point]:
        """Target positions [(x, y), …]."""
        return list(self._history.current.targets)

    @property
    def mask(self) -> np.ndarray | None:
        """bool [H, W] (True = movable) or None."""
        m = self._history.current.mask
        return None if m is None else m.cpu().numpy().copy()

    @property
    def step_count(self) -> int:
        """Steps taken since the session start or the last reset."""
        return self._history.current.step

    @property
    def trajectory(self) -> list[StepResult]:
        """Every step's result (without frames), oldest first."""
        return self._history.current.results()

    @property
    def can_undo(self) -> bool:
        return self._history.can_undo

    @property
    def can_redo(self) -> bool:
        return self._history.can_redo

    @property
    def history_limit(self) -> int:
        """How many undo steps are kept at most."""
        return self._history.limit

    def stop_distance(self) -> float:
        """The current stop distance d in pixels (depends on the number of handles for the 'paper' rule)."""
        return stop_distance(self.settings.stop_rule, len(self._history.current.handles), self.image_shape[0])

    def status(self) -> StepResult:
        """The current state as a StepResult (no step taken: loss None, no frame)."""
        with self._lock:
            st = self._history.current
            distances = [math.hypot(t[0] - h[0], t[1] - h[1]) for h, t in zip(st.handles, st.targets, strict=True)]
            done = bool(st.handles) and all(d <= self.stop_distance() for d in distances)
            return StepResult(st.step, list(st.handles), list(st.targets), distances, None, done)

    def image(self) -> np.ndarray:
        """The current latent's image, uint8 [H, W, 3] (full forward, no gradient; cached per latent)."""
        with self._lock:
            ws_opt = self._history.current.ws_opt
            if self._image_cache is not None and self._image_cache[0] is ws_opt:
                return self._image_cache[1].copy()
            with torch.no_grad():
                out = self.generator.synthesize(self._rows.compose(ws_opt), self.settings.feature_block)
            assert out.image is not None
            frame = to_uint8(out.image)[0]
            self._image_cache = (ws_opt, frame)
            return frame.copy()

    def __repr__(self) -> str:
        st = self._history.current
        return (
            f"DragSession(model_id={self.model_id!r}, impl={self.settings.impl!r}, tracker={self.settings.tracker!r}, "
            f"points={len(st.handles)}, step={st.step}, mask={st.mask is not None})"
        )

    # -- editing (each is one undoable action) --------------------------------------------------------------------
    def set_points(self, handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]]) -> None:
        """Replace all points: handles and targets are equally long, non-empty lists of (x, y) image pixels."""
        h = check_points("handles", handles, self.image_shape)
        t = check_points("targets", targets, self.image_shape)
        if not h:
            raise InvalidInputError("handles: expected at least one (x, y) point, got none")
        if len(h) != len(t):
            raise InvalidInputError(f"expected as many targets as handles, got {len(h)} handles and {len(t)} targets")
        with self._lock:
            self._edit_points(h, t, h)

    def add_point(self, handle: Sequence[float], target: Sequence[float]) -> int:
        """Add one handle/target pair; returns its index. The tracker starts afresh on the next step."""
        (h,) = check_points("handle", [handle], self.image_shape)
        (t,) = check_points("target", [target], self.image_shape)
        with self._lock:
            st = self._history.current
            self._edit_points((*st.handles, h), (*st.targets, t), (*st.origins, h))
            return len(st.handles)

    def remove_point(self, index: int) -> None:
        """Remove the pair at ``index``. The tracker starts afresh on the next step."""
        with self._lock:
            st = self._history.current
            n = len(st.handles)
            if isinstance(index, bool) or not isinstance(index, int) or not -n <= index < n:
                raise InvalidInputError(f"point index: expected an int in [0, {n - 1}], got {index!r}")
            keep = [i for i in range(n) if i != index % n]
            self._edit_points(*(tuple(pts[i] for i in keep) for pts in (st.handles, st.targets, st.origins)))

    def clear_points(self) -> None:
        """Remove every point."""
        with self._lock:
            self._edit_points((), (), ())

    def _edit_points(self, handles: tuple[Point, ...], targets: tuple[Point, ...], origins: tuple[Point, ...]) -> None:
        st = self._history.current
        self._history.commit(
            replace(st, handles=handles, targets=targets, origins=origins, segment=None, tracking=None)
        )

    def set_mask(self, mask: np.ndarray | torch.Tensor | None) -> None:
        """Set the movable region: bool [H, W], True = movable (the rest is held by the λ term), or None."""
        m = None if mask is None else check_mask(mask, self.image_shape, self.device)
        with self._lock:
            self._history.commit(replace(self._history.current, mask=m))

    def set_config(self, **changes: Any) -> None:
        """Change settings for the next steps, keeping the latent, points, history and Adam moments.

        Allowed: the fields in :data:`LIVE_FIELDS` (``lr``, ``tracker``, ``tracker_params``, ``mask_lambda``,
        ``latent_reg``, ``stop_rule``, ``max_steps``); validated like :class:`DragConfig` (raises
        InvalidInputError). A new tracker (or new tracker params) starts afresh at the next step from the current
        latent and handles, as after moving a point; undo and redo restore latents and points as they were, and a
        tracker state is never reused by another tracker. The saved config records the change.
        """
        fixed = sorted(set(changes) - set(LIVE_FIELDS))
        if fixed:
            raise InvalidInputError(
                f"set_config: {fixed} cannot change during an edit (start a new DragSession); "
                f"changeable: {list(LIVE_FIELDS)}"
            )
        with self._lock:
            config = self.config.replace(**changes)  # validates
            settings = config.resolve_for(self.generator)
            tracker = get_tracker(settings.tracker)(settings.tracker_params)
            self.config, self.settings, self.tracker = config, settings, tracker

    def reset(self) -> None:
        """Back to w0: fresh optimiser, step 0, handles back where they were placed; targets and mask are kept."""
        with self._lock:
            st = self._history.current
            initial = self._initial_state()
            self._history.commit(
                replace(initial, handles=st.origins, targets=st.targets, origins=st.origins, mask=st.mask)
            )

    def undo(self, n: int = 1) -> None:
        """Undo the last ``n`` steps or edits."""
        with self._lock:
            self._history.undo(n)

    def redo(self, n: int = 1) -> None:
        """Redo the last ``n`` undone steps or edits."""
        with self._lock:
            self._history.redo(n)

    # -- the algorithm --------------------------------------------------------------------------------------------
    def step(self, render: bool = False) -> StepResult:
        """One DragGAN iteration (docs/architecture.md §3); ``render=True`` also returns the frame. See the module
        docstring."""
        with self._lock:
            st = self._history.current
            if not st.handles:
                raise InvalidInputError("no points: call set_points(handles, targets) or add_point() first")
            s, tracker = self.settings, self.tracker
            ws_opt = st.ws_opt.clone().requires_grad_(True)
            ws = self._rows.compose(ws_opt)

            # 1. forward to the feature block (the whole generator for the reference path)
            reference = s.impl == "reference"
            layers = ws if reference else self._rows.compose_layers(ws_opt)  # fast: fixed rows stay out of autograd
            out = self.generator.synthesize(layers, s.feature_block, stop_after_features=not reference)
            if not torch.isfinite(out.features).all():
                raise StepFailedError(
                    "the generator produced non-finite features (the latent diverged: undo and lower the lr)"
                )
            image = self._display_image(out, ws) if tracker.needs_frame else None
            segment, tracking = st.segment, st.tracking
            new_segment = segment is None or (segment.tracker, segment.params) != (s.tracker, s.tracker_params)
            if new_segment:
                segment = Segment(st.ws_opt, s.tracker, s.tracker_params)
                self._features0 = (segment, out.features.detach())
            assert segment is not None

            # 1b. the check of every GUARD_EVERY-th step: sharpness of the edit region (the quality guard goes back to
            # the last sharp latent when it has degraded)
            ratio, checked = self._check(st, segment, out, ws, image)
            image = checked if checked is not None else image
            if s.guard and ratio is not None and ratio < SHARPNESS_FLOOR:
                return self._rewind(segment, ratio)
            ctx = TrackContext(
                out.features,
                self._tensor(st.handles),
                self._tensor(st.targets),
                image_shape=self.image_shape,
                r1=s.r1,
                r2=s.r2,
                impl=s.impl,
                stop_distance=self.stop_distance(),
                image=image,
            )

            # 2. point tracking (a new segment when the points or the tracker changed)
            if new_segment:
                tracking = tracker.start(ctx)
            found, tracking = tracker.track(ctx, tracking)
            new_handles = tuple(as_points(found))

            # 3. stop check
            handles_t = self._tensor(new_handles)
            distances = [float(v) for v in point_distances(handles_t, ctx.targets).tolist()]
            done = tracker.arrived(tracking, distances, ctx.stop_distance)

            # 4.-5. loss, gradient, Adam
            loss_value: float | None = None
            new_ws_opt, new_adam = st.ws_opt, st.adam
            if not done:
                loss, tracking = tracker.motion_loss(ctx, handles_t, tracking)
                loss = self._regularised(loss, ctx, segment, st.mask, ws)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise StepFailedError(f"the loss is {loss_value} (the latent diverged: undo and lower the lr)")
                (grad,) = torch.autograd.grad(loss, [ws_opt], allow_unused=True)
                grad = torch.zeros_like(ws_opt) if grad is None else grad
                if not torch.isfinite(grad).all():
                    raise StepFailedError("the gradient is not finite (the latent diverged: undo and lower the lr)")
                new_ws_opt, new_adam = adam_step(ws_opt, grad, st.adam, s.lr)

            frame = None
            if render:
                frame = to_uint8(image if image is not None else self._display_image(out, ws))[0]
            result = StepResult(
                st.step + 1,
                list(new_handles),
                list(st.targets),
                distances,
                loss_value,
                done,
                frame,
                sharpness=ratio,
            )
            node = TrajectoryNode(replace(result, frame=None), st.trajectory, st.step + 1)
            self._history.commit(
                replace(
                    st,
                    ws_opt=new_ws_opt,
                    adam=new_adam,
                    handles=new_handles,
                    segment=segment,
                    tracking=tracking,
                    trajectory=node,
                )
            )
            logger.debug("step %d: loss %s, distances %s, done %s", result.step, loss_value, distances, done)
            return result

    def run(
        self,
        max_steps: int | None = None,
        callback: Callable[[StepResult], Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
        render_every: int = 0,
    ) -> StepResult:
        """Step until done, the quality guard trips (``degraded``: the session is back at the last sharp step),
        ``max_steps`` (default ``config.max_steps``) or ``should_stop()`` is true.

        callback(result) is called after every step; ``render_every=k > 0`` renders a frame every k-th step
        (the first included). Returns the last step's result (or :meth:`status` when no step ran).
        """
        n = self.settings.max_steps if max_steps is None else max_steps
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidInputError(f"max_steps: expected an int ≥ 0, got {n!r}")
        if isinstance(render_every, bool) or not isinstance(render_every, int) or render_every < 0:
            raise InvalidInputError(f"render_every: expected an int ≥ 0, got {render_every!r}")
        last: StepResult | None = None
        start = time.perf_counter()
        for i in range(n):
            if should_stop is not None and should_stop():
                logger.info("stopped by request after %d steps", i)
                break
            last = self.step(render=render_every > 0 and i % render_every == 0)
            if callback is not None:
                callback(last)
            if last.done or last.degraded:
                break
        if last is None:
            return self.status()
        logger.debug("run: %d steps in %.2f s", last.step, time.perf_counter() - start)
        return last

    # -- internals ------------------------------------------------------------------------------------------------
    def _tensor(self, points: Sequence[Point]) -> torch.Tensor:
        return torch.tensor(points, dtype=torch.float32, device=self.device).reshape(-1, 2)

    def _check(
        self, st: State, segment: Segment, out: SynthesisResult, ws: torch.Tensor, image: torch.Tensor | None
    ) -> tuple[float | None, torch.Tensor | None]:
        """On every :data:`GUARD_EVERY`-th step: the edit region's sharpness in this step's latent relative to the
        segment's start, and the frame rendered for it; else (None, None).

        The reference (the region, and the start latent's sharpness there, rendered from the segment's rows) is
        made at the first check of each segment and mask, so a session loaded from a file checks exactly as the one
        that saved it."""
        if st.step % GUARD_EVERY != 0:
            return None, None
        memo = self._guard
        if memo is None or memo.segment is not segment or memo.mask is not st.mask:
            box = guard_region([*st.origins, *st.targets], st.mask, self.image_shape)
            if min(box[2] - box[0], box[3] - box[1]) < GUARD_MIN_SIDE:
                return None, None  # too few pixels to measure (tiny models)
            with torch.no_grad():
                start = self._rows.synthesize(self.generator, segment.start, self.settings.feature_block, full=True)
            assert start.image is not None
            reference = max(sharpness(start.image, box), 1e-12)
            memo = self._guard = GuardMemo(segment, st.mask, box, reference)
            if image is None and segment.start is st.ws_opt:  # the segment starts here: that frame is this one
                return 1.0, start.image
        frame = image if image is not None else self._display_image(out, ws)
        return sharpness(frame, memo.box) / memo.reference, frame

    def _rewind(self, segment: Segment, ratio: float) -> StepResult:
        """The guard tripped: undo this segment's steps back to the last latent that passed a check (or to the
        segment's start), commit nothing, and report it (``degraded``)."""
        h = self._history
        good = -1  # the step count of the last latent that passed (a result's check is of the latent before it)
        node = h.current.trajectory
        while node is not None:
            if node.result.sharpness is not None and node.result.sharpness >= SHARPNESS_FLOOR:
                good = node.result.step - 1
                break
            node = node.prev
        while h.can_undo and h.current.segment is segment and h.current.step > good:
            h.undo(1)
        logger.info("quality guard: sharpness %.2f of the start, back to step %d", ratio, h.current.step)
        return replace(self.status(), sharpness=ratio, degraded=True)

    def _display_image(self, out: SynthesisResult, ws: torch.Tensor) -> torch.Tensor:
        """[1, 3, H, W] image of the step's starting latent: the full forward's, or finished from the feature block."""
        with torch.no_grad():
            return out.image.detach() if out.image is not None else self.generator.resume(out.state, ws.detach())

    def _regularised(
        self, loss: torch.Tensor, ctx: TrackContext, segment: Segment, mask: torch.Tensor | None, ws: torch.Tensor
    ) -> torch.Tensor:
        """``loss`` + λ · fixed-region term (a mask with both values) + γ · latent term (paper Eq. 1)."""
        s = self.settings
        if mask is not None and s.mask_lambda > 0 and bool(mask.any()) and not bool(mask.all()):
            feat = ctx.features_up if s.impl == "reference" else ctx.features  # reference: upsampled, as official
            loss = loss + s.mask_lambda * self._fixed_region(feat, self._segment_features0(segment), mask)
        if s.latent_reg > 0:
            loss = loss + s.latent_reg * latent_loss(ws, self.w0)
        return loss

    def _segment_features0(self, segment: Segment) -> torch.Tensor:
        """F0 [1, C, h, w] of ``segment``: kept for the last segment used, else recomputed (no grad) from its
        starting rows exactly as its first step computed it."""
        if self._features0 is None or self._features0[0] is not segment:
            s = self.settings
            with torch.no_grad():
                out = self._rows.synthesize(self.generator, segment.start, s.feature_block, full=s.impl == "reference")
            self._features0 = (segment, out.features)
        return self._features0[1]

    # -- persistence ----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole session (w0, current and past latents, Adam state, points, mask, tracker states,
        history, config, model id) to one file: ``torch.save`` of plain tensors, dicts and lists, loadable with
        ``weights_only=True``. Written atomically (temporary file + rename)."""
        with self._lock:
            return persist.save_session(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], generator: Generator) -> DragSession:
        """Restore a session written by :meth:`save` onto ``generator`` (which must match the saved model)."""
        return persist.load_session(cls, path, generator)
