"""The stateful drag session: one object, one ``step()`` that the CLI, the studio, benchmarks and tests all drive.

A :class:`DragSession` holds the starting latent w0, the optimised W+ rows, the Adam state, the points, the mask,
the feature templates and an undo/redo history. Every public mutation builds a new immutable ``_State`` and only
then commits it, so an exception (bad input, a diverged latent) leaves the session exactly as it was.

Each :meth:`DragSession.step` follows design.md §3 in order:

1. forward to the feature block → F (``impl="fast"``: stop after the block, native grid; ``impl="reference"``:
   full forward, F upsampled bilinearly to H × W as the official code does). On the first step after the points
   changed: F0 = F.detach() and f_i = F0 at each handle;
2. point tracking under ``no_grad`` (nearest neighbour of f_i in the window |q − p_i|∞ ≤ r2);
3. stop check: done when every ‖t_i − p_i‖ ≤ d (then nothing is optimised this step);
4. loss = motion supervision + λ · fixed-region term (mask with both values) + γ · mean|ws − w0|;
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dragkit.engine import freedrag, ops
from dragkit.engine.config import DragConfig, ResolvedConfig
from dragkit.engine.reference import motion_loss_reference, templates_reference, track_points_reference
from dragkit.errors import DragkitError, InvalidInputError
from dragkit.nn.protocol import Generator

logger = logging.getLogger(__name__)

SESSION_FORMAT = "dragkit.session"
SESSION_VERSION = 1

Point = tuple[float, float]


class StepFailedError(DragkitError):
    """A step could not be completed (non-finite features, loss or gradient); the session is unchanged."""


@dataclass(frozen=True)
class StepResult:
    """What one :meth:`DragSession.step` reports.

    step: 1-based index of this step since the session start (or the last :meth:`DragSession.reset`).
    handles: tracked handle positions [(x, y), …] in image pixels, in the latent this step started from.
    targets: target positions [(x, y), …]. distances: ‖t_i − p_i‖ in pixels.
    loss: the optimised loss, or None when the step was ``done`` (nothing optimised).
    done: every handle is within the stop distance of its target.
    frame: uint8 [H, W, 3] image of the latent the step started from, when asked for, else None.
    """

    step: int
    handles: list[Point]
    targets: list[Point]
    distances: list[float]
    loss: float | None
    done: bool
    frame: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict without the frame."""
        return {
            "step": self.step,
            "handles": [list(p) for p in self.handles],
            "targets": [list(p) for p in self.targets],
            "distances": list(self.distances),
            "loss": self.loss,
            "done": self.done,
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
        )


class _Segment:
    """F0 and the templates f_i, fixed from the first step after the points last changed until they change again."""

    __slots__ = ("features0", "frame0", "handles", "templates", "tracker")

    def __init__(
        self,
        features0: torch.Tensor,
        templates: torch.Tensor,
        handles: tuple[Point, ...],
        frame0: torch.Tensor | None = None,
        *,
        tracker: tuple[str, int],
    ) -> None:
        self.features0 = features0  # [1, C, h, w] native grid, detached
        self.templates = templates  # [N, C] ([N, P, C] for the patch and hybrid trackers)
        self.handles = handles  # where the templates were taken
        self.frame0 = frame0  # hybrid tracker: grey frame [1, 1, h, w] of the latent the templates were taken in
        self.tracker = tracker  # (tracker, track_patch) the templates were made for; another one starts afresh


@dataclass(frozen=True)
class _FreeDragState:
    """Per-point state of the template-driven drag (``tracker="freedrag"``, :mod:`dragkit.engine.freedrag`)."""

    virtual: torch.Tensor  # [N, 2] virtual handle positions (x, y), fractional
    templates: torch.Tensor  # [N, P, C] adaptive templates
    loss_start: torch.Tensor  # [N] loss at the first step of the current sub-motion
    arrived: torch.Tensor  # bool [N]
    inner: int  # optimiser steps taken in the current sub-motion (0: a new one starts at the next step)
    started: bool  # False until the first sub-motion was planned
    expected: float  # expected loss l of a sub-motion (calibrated from F0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "virtual": self.virtual.cpu(),
            "templates": self.templates.cpu(),
            "loss_start": self.loss_start.cpu(),
            "arrived": self.arrived.cpu(),
            "inner": self.inner,
            "started": self.started,
            "expected": self.expected,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], device: torch.device) -> _FreeDragState:
        return cls(
            virtual=d["virtual"].to(device),
            templates=d["templates"].to(device),
            loss_start=d["loss_start"].to(device),
            arrived=d["arrived"].to(device),
            inner=int(d["inner"]),
            started=bool(d["started"]),
            expected=float(d["expected"]),
        )


@dataclass(frozen=True)
class _TrajectoryNode:
    """A persistent list of step results: states share their common past."""

    result: StepResult
    prev: _TrajectoryNode | None
    length: int


@dataclass(frozen=True)
class _State:
    """Everything that undo/redo restores. Tensors are never modified after the state is built."""

    ws_opt: torch.Tensor  # [1, k, w_dim] (W+) or [1, 1, w_dim] (W), detached
    adam: dict[str, torch.Tensor] | None  # torch Adam state of ws_opt ('step', 'exp_avg', 'exp_avg_sq')
    handles: tuple[Point, ...]
    targets: tuple[Point, ...]
    origins: tuple[Point, ...]  # where each handle was placed; reset() returns handles there
    mask: torch.Tensor | None  # bool [H, W], True = movable
    segment: _Segment | None  # None: templates are (re)taken on the next step
    trajectory: _TrajectoryNode | None
    freedrag: _FreeDragState | None = None  # tracker "freedrag" only; valid while ``segment`` is not None
    measured_in: torch.Tensor | None = None  # ws_opt of the latent the handles were tracked in (None: this one)

    @property
    def step(self) -> int:
        return 0 if self.trajectory is None else self.trajectory.length


def _as_points(points: torch.Tensor) -> tuple[Point, ...]:
    """[N, 2] tensor → ((x, y), …) of Python floats."""
    return tuple((float(x), float(y)) for x, y in points.tolist())


class DragSession:
    """One DragGAN edit of one latent (design.md §3).

    generator: any :class:`~dragkit.nn.protocol.Generator`; ws0: starting latent [1, num_ws, w_dim] (W+);
    config: :class:`DragConfig` (defaults: the paper's); model_id: recorded in saved sessions;
    history_limit: how many undo steps are kept (each holds the optimised rows and Adam moments, a few tens of KB).
    """

    def __init__(
        self,
        generator: Generator,
        ws0: torch.Tensor,
        config: DragConfig | None = None,
        model_id: str = "unknown",
        *,
        history_limit: int = 1000,
    ) -> None:
        config = DragConfig() if config is None else config
        if not isinstance(config, DragConfig):
            raise InvalidInputError(f"config: expected a DragConfig, got {type(config).__name__}")
        if not isinstance(history_limit, int) or history_limit < 0:
            raise InvalidInputError(f"history_limit: expected an int ≥ 0, got {history_limit!r}")
        self.generator = generator
        self.model_id = str(model_id)
        self.config = config
        self.image_shape: tuple[int, int] = (int(generator.img_shape[0]), int(generator.img_shape[1]))
        self.settings: ResolvedConfig = self._resolve(config)
        self.history_limit = history_limit
        self.device = generator.w_avg.device
        self.w0 = self._check_ws0(ws0)
        self._index = torch.tensor(self.settings.optimize_ws, dtype=torch.long, device=self.device)
        self._lock = threading.RLock()
        self._undo: list[_State] = []
        self._redo: list[_State] = []
        self._state = self._initial_state()
        self._image_cache: tuple[torch.Tensor, np.ndarray] | None = None
        self._fixed_cache: tuple[torch.Tensor, tuple[int, int], torch.Tensor] | None = None
        self._features0_up_cache: tuple[_Segment, torch.Tensor] | None = None  # reference path only
        self._flow_cache: tuple[torch.Tensor, torch.Tensor] | None = None  # flow tracker: (ws_opt, grey frame)

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def from_seed(
        cls,
        generator: Generator,
        seed: int,
        psi: float = 0.7,
        config: DragConfig | None = None,
        model_id: str = "unknown",
        **kwargs: Any,
    ) -> DragSession:
        """Session on ``generator.mapping(z_from_seed(seed), psi=psi)`` (NVIDIA's seed → z convention)."""
        from dragkit.nn.seeds import z_from_seed

        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise InvalidInputError(f"seed: expected an int in [0, 2**32), got {seed!r}")
        if not (isinstance(psi, int | float) and math.isfinite(psi)):
            raise InvalidInputError(f"psi: expected a finite float, got {psi!r}")
        device = generator.w_avg.device
        z = z_from_seed(seed, generator.z_dim).to(device)
        with torch.no_grad():
            ws = generator.mapping(z, psi=float(psi))
        return cls(generator, ws, config=config, model_id=model_id, **kwargs)

    def _resolve(self, config: DragConfig) -> ResolvedConfig:
        """``config`` with every model-dependent default filled in from this generator's hints."""
        G = self.generator
        hints = G.drag_hints()
        return config.resolve(
            image_shape=self.image_shape,
            num_ws=G.num_ws,
            num_feature_levels=len(G.feature_levels()),
            hint_feature_block=hints.feature_block,
            hint_optimize_ws=tuple(hints.optimize_ws),
            hint_lr=hints.lr,
            hint_tracker=hints.tracker,
            hint_motion_step=hints.motion_step,
            hint_r1=hints.r1,
        )

    def _check_ws0(self, ws0: torch.Tensor) -> torch.Tensor:
        G = self.generator
        expected = (1, G.num_ws, G.w_dim)
        if not isinstance(ws0, torch.Tensor) or tuple(ws0.shape) != expected:
            got = list(ws0.shape) if isinstance(ws0, torch.Tensor) else type(ws0).__name__
            raise InvalidInputError(f"ws0: expected a W+ latent of shape {list(expected)}, got {got}")
        if not torch.isfinite(ws0).all():
            raise InvalidInputError("ws0: contains NaN or infinite values")
        return ws0.detach().to(device=self.device, dtype=torch.float32).clone()

    def _initial_state(self) -> _State:
        rows = self.w0.index_select(1, self._index)
        if self.settings.w_mode == "w":
            rows = rows[:, :1]
        return _State(
            ws_opt=rows.clone(),
            adam=None,
            handles=(),
            targets=(),
            origins=(),
            mask=None,
            segment=None,
            trajectory=None,
        )

    # -- read-only views ------------------------------------------------------------------------------------------
    @property
    def ws(self) -> torch.Tensor:
        """Current latent [1, num_ws, w_dim] (rows outside ``optimize_ws`` are w0's), detached."""
        return self._compose(self._state.ws_opt).detach()

    @property
    def handles(self) -> list[Point]:
        """Current handle positions [(x, y), …] (as last tracked)."""
        return list(self._state.handles)

    @property
    def targets(self) -> list[Point]:
        """Target positions [(x, y), …]."""
        return list(self._state.targets)

    @property
    def mask(self) -> np.ndarray | None:
        """bool [H, W] (True = movable) or None."""
        m = self._state.mask
        return None if m is None else m.cpu().numpy().copy()

    @property
    def step_count(self) -> int:
        """Steps taken since the session start or the last reset."""
        return self._state.step

    @property
    def trajectory(self) -> list[StepResult]:
        """Every step's result (without frames), oldest first."""
        out: list[StepResult] = []
        node = self._state.trajectory
        while node is not None:
            out.append(node.result)
            node = node.prev
        return out[::-1]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def stop_distance(self) -> float:
        """The current stop distance d in pixels (depends on the number of handles for the 'paper' rule)."""
        return ops.stop_distance(self.settings.stop_rule, len(self._state.handles), self.image_shape[0])

    def status(self) -> StepResult:
        """The current state as a StepResult (no step taken: loss None, no frame)."""
        with self._lock:
            st = self._state
            distances = [math.hypot(t[0] - h[0], t[1] - h[1]) for h, t in zip(st.handles, st.targets, strict=True)]
            done = bool(st.handles) and all(d <= self.stop_distance() for d in distances)
            return StepResult(st.step, list(st.handles), list(st.targets), distances, None, done)

    def image(self) -> np.ndarray:
        """The current latent's image, uint8 [H, W, 3] (full forward, no gradient; cached per latent)."""
        from dragkit.io.images import to_uint8

        with self._lock:
            ws_opt = self._state.ws_opt
            if self._image_cache is not None and self._image_cache[0] is ws_opt:
                return self._image_cache[1].copy()
            with torch.no_grad():
                out = self.generator.synthesize(self._compose(ws_opt), self.settings.feature_block)
            assert out.image is not None
            frame = to_uint8(out.image)[0]
            self._image_cache = (ws_opt, frame)
            return frame.copy()

    def __repr__(self) -> str:
        st = self._state
        return (
            f"DragSession(model_id={self.model_id!r}, impl={self.settings.impl!r}, points={len(st.handles)}, "
            f"step={st.step}, mask={st.mask is not None})"
        )

    # -- editing (each is one undoable action) --------------------------------------------------------------------
    def set_points(self, handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]]) -> None:
        """Replace all points: handles and targets are equally long, non-empty lists of (x, y) image pixels."""
        h = self._check_points("handles", handles)
        t = self._check_points("targets", targets)
        if not h:
            raise InvalidInputError("handles: expected at least one (x, y) point, got none")
        if len(h) != len(t):
            raise InvalidInputError(f"expected as many targets as handles, got {len(h)} handles and {len(t)} targets")
        with self._lock:
            self._commit(replace(self._state, handles=h, targets=t, origins=h, segment=None))

    def add_point(self, handle: Sequence[float], target: Sequence[float]) -> int:
        """Add one handle/target pair; returns its index. Templates are re-taken on the next step."""
        (h,) = self._check_points("handle", [handle])
        (t,) = self._check_points("target", [target])
        with self._lock:
            st = self._state
            self._commit(
                replace(st, handles=(*st.handles, h), targets=(*st.targets, t), origins=(*st.origins, h), segment=None)
            )
            return len(st.handles)

    def remove_point(self, index: int) -> None:
        """Remove the pair at ``index``. Templates are re-taken on the next step."""
        with self._lock:
            st = self._state
            n = len(st.handles)
            if isinstance(index, bool) or not isinstance(index, int) or not -n <= index < n:
                raise InvalidInputError(f"point index: expected an int in [0, {n - 1}], got {index!r}")
            keep = [i for i in range(n) if i != index % n]
            self._commit(
                replace(
                    st,
                    handles=tuple(st.handles[i] for i in keep),
                    targets=tuple(st.targets[i] for i in keep),
                    origins=tuple(st.origins[i] for i in keep),
                    segment=None,
                )
            )

    def clear_points(self) -> None:
        """Remove every point."""
        with self._lock:
            self._commit(replace(self._state, handles=(), targets=(), origins=(), segment=None))

    def set_mask(self, mask: np.ndarray | torch.Tensor | None) -> None:
        """Set the movable region: bool [H, W], True = movable (the rest is held by the λ term), or None."""
        m = None if mask is None else self._check_mask(mask)
        with self._lock:
            self._commit(replace(self._state, mask=m))

    def set_lr(self, lr: float) -> None:
        """Change the Adam learning rate for the next steps; points, history and Adam moments are kept.

        Validated like ``DragConfig.lr`` (raises InvalidInputError); the saved config records the new value.
        """
        with self._lock:
            config = self.config.replace(lr=lr)  # validates
            self.settings = self._resolve(config)
            self.config = config

    def set_tracker(self, tracker: str | None, track_patch: int | None = None) -> None:
        """Switch the point tracker (``DragConfig.tracker``; None: the model's hint) and, for ``patch``/``hybrid``,
        ``track_patch`` (None: keep) for the next steps. The latent, points, history and Adam moments are kept; the
        next step takes fresh templates from the current latent at the current handles, as after moving a point.
        Undo and redo restore latents and points as they were; a segment made by another tracker is never reused.
        Validated like :class:`DragConfig` (raises InvalidInputError); the saved config records the new choice.
        """
        with self._lock:
            patch = self.config.track_patch if track_patch is None else track_patch
            config = self.config.replace(tracker=tracker, track_patch=patch)  # validates
            self.settings = self._resolve(config)
            self.config = config

    def reset(self) -> None:
        """Back to w0: fresh optimiser, step 0, handles back where they were placed; targets and mask are kept."""
        with self._lock:
            st = self._state
            initial = self._initial_state()
            self._commit(replace(initial, handles=st.origins, targets=st.targets, origins=st.origins, mask=st.mask))

    def undo(self, n: int = 1) -> None:
        """Undo the last ``n`` steps or edits."""
        with self._lock:
            if n < 1 or n > len(self._undo):
                raise InvalidInputError(f"undo: expected 1 ≤ n ≤ {len(self._undo)} (available), got {n}")
            for _ in range(n):
                self._redo.append(self._state)
                self._state = self._undo.pop()

    def redo(self, n: int = 1) -> None:
        """Redo the last ``n`` undone steps or edits."""
        with self._lock:
            if n < 1 or n > len(self._redo):
                raise InvalidInputError(f"redo: expected 1 ≤ n ≤ {len(self._redo)} (available), got {n}")
            for _ in range(n):
                self._undo.append(self._state)
                self._state = self._redo.pop()

    # -- the algorithm --------------------------------------------------------------------------------------------
    def step(self, render: bool = False) -> StepResult:
        """One DragGAN iteration (design.md §3); ``render=True`` also returns the frame. See the module docstring."""
        with self._lock:
            st = self._state
            if not st.handles:
                raise InvalidInputError("no points: call set_points(handles, targets) or add_point() first")
            s = self.settings
            G = self.generator
            ws_opt = st.ws_opt.clone().requires_grad_(True)
            ws = self._compose(ws_opt)

            # 1. forward to the feature block
            reference = s.impl == "reference"
            # fast: per-layer ws, so the fixed rows (w0) stay out of autograd and the layers they modulate skip
            # their weight-gradient work; the values, and so the results, are the same.
            out = G.synthesize(
                ws if reference else self._compose_layers(ws_opt), s.feature_block, stop_after_features=not reference
            )
            native = out.features  # [1, C, h, w]
            if not torch.isfinite(native).all():
                raise StepFailedError(
                    "the generator produced non-finite features (the latent diverged: undo and lower the lr)"
                )
            feat = ops.upsample_features(native, self.image_shape) if reference else native
            # 2. point tracking (freedrag: plan the sub-motion; flow, hybrid: need this latent's frame)
            image = grey = None
            if s.tracker in ("flow", "hybrid"):
                with torch.no_grad():
                    image = out.image.detach() if out.image is not None else G.resume(out.state, ws.detach())
                grey = ops.flow_image(image)
            segment = self._current_segment(st)
            continuing = segment is not None
            if segment is None:
                segment = self._make_segment(native.detach(), st.handles, grey)
            new_handles, fd, fd_done = self._track(st, segment, native, feat, grey, continuing)

            # 3. stop check
            dist = ops.point_distances(self._tensor(new_handles), self._tensor(st.targets))
            distances = [float(v) for v in dist.tolist()]
            done = fd_done if fd is not None else all(v <= self.stop_distance() for v in distances)

            # 4.-5. loss, gradient, Adam
            loss_value: float | None = None
            new_ws_opt, new_adam = st.ws_opt, st.adam
            if not done:
                per_point = None
                if fd is not None:
                    offsets = freedrag.patch_offsets(s.r1, self.device)
                    per_point = freedrag.patch_loss(native, fd.virtual, fd.templates, offsets, self.image_shape)
                loss = self._loss(feat, segment, new_handles, st.targets, st.mask, ws, motion=per_point)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise StepFailedError(f"the loss is {loss_value} (the latent diverged: undo and lower the lr)")
                (grad,) = torch.autograd.grad(loss, [ws_opt], allow_unused=True)
                grad = torch.zeros_like(ws_opt) if grad is None else grad
                if not torch.isfinite(grad).all():
                    raise StepFailedError("the gradient is not finite (the latent diverged: undo and lower the lr)")
                new_ws_opt, new_adam = self._adam_step(ws_opt, grad, st.adam)
                if fd is not None and per_point is not None:
                    fd = self._freedrag_after(fd, per_point.detach())

            frame = None
            if render:
                frame = self._frame(out, ws, image)

            result = StepResult(
                step=st.step + 1,
                handles=list(new_handles),
                targets=list(st.targets),
                distances=distances,
                loss=loss_value,
                done=done,
                frame=frame,
            )
            node = _TrajectoryNode(replace(result, frame=None), st.trajectory, st.step + 1)
            self._commit(
                replace(
                    st,
                    ws_opt=new_ws_opt,
                    adam=new_adam,
                    handles=new_handles,
                    segment=segment,
                    trajectory=node,
                    freedrag=fd,
                    measured_in=st.ws_opt,
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
        """Step until done, ``max_steps`` (default ``config.max_steps``) or ``should_stop()`` is true.

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
            if last.done:
                break
        if last is None:
            return self.status()
        logger.debug("run: %d steps in %.2f s", last.step, time.perf_counter() - start)
        return last

    # -- internals ------------------------------------------------------------------------------------------------
    def _compose(self, ws_opt: torch.Tensor) -> torch.Tensor:
        """Optimised rows → full W+ [1, num_ws, w_dim]; other rows stay at w0 (W mode: one w repeated)."""
        rows = ws_opt.expand(1, len(self.settings.optimize_ws), -1) if self.settings.w_mode == "w" else ws_opt
        return self.w0.index_copy(1, self._index, rows)

    def _compose_layers(self, ws_opt: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`_compose` as num_ws tensors [1, w_dim]: optimised rows from ``ws_opt``, the rest w0's rows."""
        w_mode = self.settings.w_mode == "w"
        layers = list(self.w0.unbind(1))
        for pos, layer in enumerate(self.settings.optimize_ws):
            layers[layer] = ws_opt[:, 0 if w_mode else pos]
        return layers

    def _tensor(self, points: Sequence[Point]) -> torch.Tensor:
        return torch.tensor(points, dtype=torch.float32, device=self.device).reshape(-1, 2)

    def _tracker_key(self) -> tuple[str, int]:
        """What a segment's templates depend on besides the points: the tracker and the patch size."""
        s = self.settings
        return (s.tracker, s.track_patch if s.tracker in ("patch", "hybrid") else 0)

    def _current_segment(self, st: _State) -> _Segment | None:
        """``st.segment`` if it was made for the current tracker (see :meth:`set_tracker`), else None."""
        seg = st.segment
        return seg if seg is not None and seg.tracker == self._tracker_key() else None

    def _make_segment(
        self, features0: torch.Tensor, handles: tuple[Point, ...], grey: torch.Tensor | None = None
    ) -> _Segment:
        """Templates at ``handles`` from F0 (``features0``, native grid); ``grey``: this latent's
        :func:`ops.flow_image` frame (kept by the hybrid tracker)."""
        key = self._tracker_key()
        if self.settings.tracker in ("patch", "hybrid"):
            templates = ops.patch_templates(
                features0, self._tensor(handles), self.settings.track_patch, self.image_shape
            )
            if self.settings.tracker == "hybrid":
                assert grey is not None
                return _Segment(features0, templates, handles, grey, tracker=key)
            return _Segment(features0, templates, handles, tracker=key)
        if self.settings.impl == "reference":
            segment = _Segment(features0, torch.empty(0), handles, tracker=key)
            segment.templates = templates_reference(self._features0_up(segment), list(handles))
            return segment
        centres = self._tensor(handles).round()
        templates = ops.sample_at_pixels(features0, centres, self.image_shape).detach()
        return _Segment(features0, templates, handles, tracker=key)

    def _track(
        self,
        st: _State,
        segment: _Segment,
        native: torch.Tensor,
        feat: torch.Tensor,
        grey: torch.Tensor | None,
        continuing: bool,
    ) -> tuple[tuple[Point, ...], _FreeDragState | None, bool]:
        """Step 2: new handle positions; for freedrag also its new state and whether every point arrived.
        ``continuing``: ``segment`` was made by an earlier step (False: it starts with this one)."""
        s = self.settings
        if s.tracker == "flow":
            assert grey is not None
            prev = grey  # points just set: they were placed on this latent's image
            if continuing and st.measured_in is not None:
                prev = self._flow_frame(st.measured_in)
            self._flow_cache = (st.ws_opt, grey)  # the next step's "previous" frame
            return (
                _as_points(ops.track_points_flow(prev, grey, self._tensor(st.handles), self.image_shape)),
                None,
                False,
            )
        if s.tracker == "freedrag":
            fd = st.freedrag if continuing else None
            if fd is None:
                fd = self._freedrag_start(segment.features0, st.handles)
            fd, done = self._freedrag_plan(fd, native.detach(), st.targets)
            return _as_points(fd.virtual), fd, done
        handles = self._tensor(st.handles)
        if s.tracker == "hybrid":
            assert grey is not None and segment.frame0 is not None
            mixed = ops.track_points_hybrid(
                segment.frame0,
                grey,
                self._tensor(segment.handles),
                native,
                segment.templates,
                handles,
                s.r2,
                s.track_patch,
                self.image_shape,
                s.track_prior,
            )
            return _as_points(mixed), None, False
        if s.tracker == "patch":  # no official form: both impls track on the native grid
            args = (segment.templates, handles, s.r2, s.track_patch, self.image_shape, s.track_prior)
            return _as_points(ops.track_points_patch(native, *args)), None, False
        if s.impl == "reference":
            tracked = track_points_reference(
                feat, segment.templates, list(st.handles), s.r2, s.track_norm, s.track_prior
            )
            return tuple(tracked), None, False
        args2 = (segment.templates, handles, s.r2, self.image_shape, s.track_norm, s.track_prior)
        return _as_points(ops.track_points(feat, *args2)), None, False

    def _flow_frame(self, ws_opt: torch.Tensor) -> torch.Tensor:
        """The flow tracker's grey frame of the latent with optimised rows ``ws_opt`` (cached for the last one)."""
        cached = self._flow_cache
        if cached is not None and cached[0] is ws_opt:
            return cached[1]
        with torch.no_grad():
            out = self.generator.synthesize(self._compose_layers(ws_opt), self.settings.feature_block)
        assert out.image is not None
        return ops.flow_image(out.image)

    def _freedrag_start(self, features0: torch.Tensor, handles: tuple[Point, ...]) -> _FreeDragState:
        """Templates from F0 at the handles, the expected loss calibrated on F0 (:func:`freedrag.calibrate`)."""
        s = self.settings
        points = self._tensor(handles)
        offsets = freedrag.patch_offsets(s.r1, self.device)
        n = points.shape[0]
        return _FreeDragState(
            virtual=points,
            templates=freedrag.sample_patches(features0, points, offsets, self.image_shape).detach(),
            loss_start=torch.zeros(n, device=self.device),
            arrived=torch.zeros(n, dtype=torch.bool, device=self.device),
            inner=0,
            started=False,
            expected=s.sub_motion_loss * freedrag.calibrate(features0, points, offsets, self.image_shape),
        )

    def _freedrag_plan(
        self, fd: _FreeDragState, feat: torch.Tensor, targets: tuple[Point, ...]
    ) -> tuple[_FreeDragState, bool]:
        """At a sub-motion boundary: score the last one, update templates, test arrival, pick the next virtual
        positions. Returns the new state and whether every point arrived (then nothing is optimised)."""
        if fd.inner > 0:
            return fd, False
        s = self.settings
        offsets = freedrag.patch_offsets(s.r1, self.device)
        tgt = self._tensor(targets)
        n = tgt.shape[0]
        templates, arrived = fd.templates, fd.arrived
        loss_end = torch.zeros(n, device=self.device)
        with torch.no_grad():
            if fd.started:
                current = freedrag.sample_patches(feat, fd.virtual, offsets, self.image_shape)  # [N, P, C]
                loss_end = freedrag.mismatch(current, fd.templates)
                close = (tgt - fd.virtual).norm(dim=-1) <= self.stop_distance()
                arrived = close & (loss_end <= 0.25 * fd.expected)
                weight = torch.where(arrived, 1.0, freedrag.template_weight(loss_end, fd.expected)).reshape(-1, 1, 1)
                templates = weight * current + (1 - weight) * fd.templates
                if bool(arrived.all()):
                    return replace(fd, templates=templates, arrived=arrived), True
            cell = ops.cell_size(feat, self.image_shape)
            virtual = freedrag.choose_targets(
                feat,
                fd.virtual,
                tgt,
                templates,
                fd.loss_start,
                loss_end,
                arrived,
                fd.expected,
                s.sub_motion_cells * cell,
                offsets,
                self.image_shape,
            )
        return replace(fd, virtual=virtual, templates=templates, arrived=arrived, started=True), False

    def _freedrag_after(self, fd: _FreeDragState, per_point: torch.Tensor) -> _FreeDragState:
        """After an optimiser step: remember the sub-motion's first loss; end it after ``sub_motion_steps`` steps
        or once every point's loss is below ¼·l."""
        loss_start = per_point if fd.inner == 0 else fd.loss_start
        inner = fd.inner + 1
        if inner >= self.settings.sub_motion_steps or float(per_point.max()) < 0.25 * fd.expected:
            inner = 0
        return replace(fd, loss_start=loss_start, inner=inner)

    def _features0_up(self, segment: _Segment) -> torch.Tensor:
        """F0 upsampled to image size (reference path), cached for the current segment like ``feat0_resize``."""
        cached = self._features0_up_cache
        if cached is not None and cached[0] is segment:
            return cached[1]
        up = ops.upsample_features(segment.features0, self.image_shape)
        self._features0_up_cache = (segment, up)
        return up

    def _fixed_weights(self, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        cached = self._fixed_cache
        if cached is not None and cached[0] is mask and cached[1] == size:
            return cached[2]
        weights = ops.fixed_region_weights(mask, size)
        self._fixed_cache = (mask, size, weights)
        return weights

    def _loss(
        self,
        feat: torch.Tensor,
        segment: _Segment,
        handles: tuple[Point, ...],
        targets: tuple[Point, ...],
        mask: torch.Tensor | None,
        ws: torch.Tensor,
        motion: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Motion supervision + λ · fixed-region term + γ · latent term on ``feat`` (native or upsampled).

        ``motion``: per-point motion terms [N] already computed (freedrag); None: DragGAN's motion supervision.
        """
        s = self.settings
        if s.impl == "reference":
            loss = (
                motion_loss_reference(feat, list(handles), list(targets), s.r1, s.motion_step)
                if motion is None
                else motion.sum()
            )
            feat0 = self._features0_up(segment)
        elif motion is not None:
            loss = motion.sum()
            feat0 = segment.features0
        else:
            loss = ops.motion_loss(
                feat, self._tensor(handles), self._tensor(targets), s.r1, self.image_shape, s.motion_step
            )
            feat0 = segment.features0
        if mask is not None and s.mask_lambda > 0 and bool(mask.any()) and not bool(mask.all()):
            fixed = self._fixed_weights(mask, (int(feat.shape[-2]), int(feat.shape[-1])))
            loss = loss + s.mask_lambda * ops.mask_loss(feat, feat0, fixed)
        if s.latent_reg > 0:
            loss = loss + s.latent_reg * ops.latent_loss(ws, self.w0)
        return loss

    def _adam_step(
        self, param: torch.Tensor, grad: torch.Tensor, adam: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """torch Adam (default betas, eps) on a fresh copy of the state; the inputs are left untouched."""
        param.grad = grad
        optimizer = torch.optim.Adam([param], lr=self.settings.lr)
        if adam is not None:
            optimizer.state[param] = {k: v.clone() for k, v in adam.items()}
        try:
            optimizer.step()
        except RuntimeError as exc:  # e.g. an lr so large that the step size overflows float32
            raise StepFailedError(f"the Adam update failed ({exc}); lower the lr") from exc
        new_adam = {k: v.detach() for k, v in optimizer.state[param].items()}
        param.grad = None
        if not torch.isfinite(param).all():
            raise StepFailedError("the Adam update produced a non-finite latent; lower the lr")
        return param.detach(), new_adam

    def _frame(self, out: Any, ws: torch.Tensor, image: torch.Tensor | None = None) -> np.ndarray:
        """uint8 [H, W, 3] of the step's starting latent (``image``: already rendered, e.g. by the flow tracker)."""
        from dragkit.io.images import to_uint8

        if image is None:
            with torch.no_grad():
                image = out.image.detach() if out.image is not None else self.generator.resume(out.state, ws.detach())
        return to_uint8(image)[0]

    def _commit(self, state: _State) -> None:
        self._undo.append(self._state)
        if len(self._undo) > self.history_limit:
            del self._undo[: len(self._undo) - self.history_limit]
        self._redo.clear()
        self._state = state

    def _check_points(self, name: str, points: Any) -> tuple[Point, ...]:
        H, W = self.image_shape
        if isinstance(points, torch.Tensor | np.ndarray):
            points = points.tolist()
        if not isinstance(points, Sequence) or isinstance(points, str):
            raise InvalidInputError(f"{name}: expected a list of (x, y) points, got {type(points).__name__}")
        out = []
        for p in points:
            try:
                x, y = (float(v) for v in p)
            except (TypeError, ValueError):
                raise InvalidInputError(f"{name}: expected (x, y) pairs of numbers, got {p!r}") from None
            if not (math.isfinite(x) and math.isfinite(y)):
                raise InvalidInputError(f"{name}: point {p!r} is not finite")
            if not (0 <= x <= W - 1 and 0 <= y <= H - 1):
                raise InvalidInputError(
                    f"{name}: point ({x:g}, {y:g}) is outside the {W}×{H} image (x in [0, {W - 1}], y in [0, {H - 1}])"
                )
            out.append((x, y))
        return tuple(out)

    def _check_mask(self, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(mask, np.ndarray):
            mask = torch.from_numpy(mask)
        if not isinstance(mask, torch.Tensor):
            raise InvalidInputError(f"mask: expected a bool [H, W] array, got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise InvalidInputError(f"mask: expected dtype bool (True = movable), got {mask.dtype}")
        if tuple(mask.shape) != self.image_shape:
            raise InvalidInputError(f"mask: expected shape {list(self.image_shape)} (H, W), got {list(mask.shape)}")
        return mask.to(self.device).clone()

    # -- persistence ----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole session (w0, current and past latents, Adam state, points, mask, templates, history,
        config, model id) to one file: ``torch.save`` of plain tensors, dicts and lists, loadable with
        ``weights_only=True``. Written atomically (temporary file + rename)."""
        path = Path(path)
        with self._lock:
            states = [*self._undo, self._state, *reversed(self._redo)]  # chronological
            segments: dict[int, int] = {}
            masks: dict[int, int] = {}
            nodes: dict[int, int] = {}
            seg_list: list[dict[str, Any]] = []
            mask_list: list[torch.Tensor] = []
            node_list: list[dict[str, Any]] = []

            def node_id(node: _TrajectoryNode | None) -> int:
                if node is None:
                    return -1
                chain: list[_TrajectoryNode] = []
                n: _TrajectoryNode | None = node
                while n is not None and id(n) not in nodes:
                    chain.append(n)
                    n = n.prev
                for m in reversed(chain):  # oldest first, so every "prev" already has an id
                    nodes[id(m)] = len(node_list)
                    node_list.append(
                        {"result": m.result.to_dict(), "prev": -1 if m.prev is None else nodes[id(m.prev)]}
                    )
                return nodes[id(node)]

            def state_dict(st: _State) -> dict[str, Any]:
                seg = -1
                if st.segment is not None:
                    if id(st.segment) not in segments:
                        segments[id(st.segment)] = len(seg_list)
                        seg_list.append(
                            {
                                "features0": st.segment.features0.cpu(),
                                "templates": st.segment.templates.cpu(),
                                "handles": [list(p) for p in st.segment.handles],
                                "frame0": None if st.segment.frame0 is None else st.segment.frame0.cpu(),
                                "tracker": list(st.segment.tracker),
                            }
                        )
                    seg = segments[id(st.segment)]
                mask = -1
                if st.mask is not None:
                    if id(st.mask) not in masks:
                        masks[id(st.mask)] = len(mask_list)
                        mask_list.append(st.mask.cpu())
                    mask = masks[id(st.mask)]
                return {
                    "ws_opt": st.ws_opt.cpu(),
                    "adam": None if st.adam is None else {k: v.cpu() for k, v in st.adam.items()},
                    "handles": [list(p) for p in st.handles],
                    "targets": [list(p) for p in st.targets],
                    "origins": [list(p) for p in st.origins],
                    "mask": mask,
                    "segment": seg,
                    "trajectory": node_id(st.trajectory),
                    "freedrag": None if st.freedrag is None else st.freedrag.to_dict(),
                    "measured_in": None if st.measured_in is None else st.measured_in.cpu(),
                }

            payload = {
                "format": SESSION_FORMAT,
                "version": SESSION_VERSION,
                "model_id": self.model_id,
                "generator": {
                    "num_ws": self.generator.num_ws,
                    "w_dim": self.generator.w_dim,
                    "img_shape": list(self.image_shape),
                },
                "config": self.config.to_dict(),
                "settings": self.settings.to_dict(),
                "history_limit": self.history_limit,
                "w0": self.w0.cpu(),
                "states": [state_dict(st) for st in states],
                "current": len(self._undo),
                "segments": seg_list,
                "masks": mask_list,
                "trajectory_nodes": node_list,
            }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        logger.debug("saved session to %s", path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], generator: Generator) -> DragSession:
        """Restore a session written by :meth:`save` onto ``generator`` (which must match the saved model)."""
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"session file not found: {path}")
        device = generator.w_avg.device
        try:
            d = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:
            raise InvalidInputError(f"{path}: not a readable dragkit session file ({exc})") from exc
        if not isinstance(d, dict) or d.get("format") != SESSION_FORMAT:
            raise InvalidInputError(f"{path}: not a dragkit session file")
        if d.get("version") != SESSION_VERSION:
            raise InvalidInputError(f"{path}: session version {d.get('version')!r}, expected {SESSION_VERSION}")
        saved = d["generator"]
        actual = {"num_ws": generator.num_ws, "w_dim": generator.w_dim, "img_shape": list(generator.img_shape)}
        if saved != actual:
            raise InvalidInputError(f"{path}: saved for a generator with {saved}, got one with {actual}")
        session = cls(
            generator,
            d["w0"],
            config=DragConfig.from_dict(d["config"]),
            model_id=d["model_id"],
            history_limit=int(d["history_limit"]),
        )
        # settings added after a file was written are absent from it; they resolve to the old behaviour
        resolved = {k: v for k, v in session.settings.to_dict().items() if k in d["settings"]}
        if resolved != d["settings"]:
            raise InvalidInputError(
                f"{path}: the generator's drag defaults differ from the saved ones "
                f"({resolved} vs {d['settings']}); is it the model {d['model_id']!r}?"
            )
        segments = []
        for seg in d["segments"]:
            handles = tuple((x, y) for x, y in seg["handles"])
            # files from before set_tracker() existed: every segment was made by the saved tracker
            name, patch = seg.get("tracker", session._tracker_key())
            segments.append(
                _Segment(seg["features0"], seg["templates"], handles, seg.get("frame0"), tracker=(name, patch))
            )
        nodes: list[_TrajectoryNode] = []
        for n in d["trajectory_nodes"]:
            prev = None if n["prev"] < 0 else nodes[n["prev"]]
            nodes.append(
                _TrajectoryNode(StepResult.from_dict(n["result"]), prev, 1 if prev is None else prev.length + 1)
            )

        def to_state(s: dict[str, Any]) -> _State:
            return _State(
                ws_opt=s["ws_opt"],
                adam=None if s["adam"] is None else {k: v.cpu() if k == "step" else v for k, v in s["adam"].items()},
                handles=tuple((float(x), float(y)) for x, y in s["handles"]),
                targets=tuple((float(x), float(y)) for x, y in s["targets"]),
                origins=tuple((float(x), float(y)) for x, y in s["origins"]),
                mask=None if s["mask"] < 0 else d["masks"][s["mask"]],
                segment=None if s["segment"] < 0 else segments[s["segment"]],
                trajectory=None if s["trajectory"] < 0 else nodes[s["trajectory"]],
                freedrag=None if s.get("freedrag") is None else _FreeDragState.from_dict(s["freedrag"], device),
                measured_in=None if s.get("measured_in") is None else s["measured_in"],
            )

        states = [to_state(s) for s in d["states"]]
        current = int(d["current"])
        expected_rows = session._state.ws_opt.shape
        if any(st.ws_opt.shape != expected_rows for st in states):
            raise InvalidInputError(f"{path}: optimised rows do not have shape {list(expected_rows)}")
        session._undo = states[:current]
        session._state = states[current]
        session._redo = states[current + 1 :][::-1]
        logger.debug("loaded session from %s (step %d)", path, session.step_count)
        return session
