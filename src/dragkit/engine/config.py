"""Typed settings of a drag session (design.md §3): :class:`DragConfig` and its resolved form.

``DragConfig`` is what users and the CLI write; fields left ``None`` are filled per model from
:meth:`dragkit.nn.protocol.Generator.drag_hints` and the image size by :meth:`DragConfig.resolve`, which yields a
:class:`ResolvedConfig` whose every field is concrete. Both are frozen; validation happens in ``__post_init__``
and raises :class:`~dragkit.errors.InvalidInputError` naming the field, the expected and the actual value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, cast

from dragkit.engine.ops import radii
from dragkit.errors import InvalidInputError

WMode = Literal["w+", "w"]
TrackNorm = Literal["l2", "l1"]
Tracker = Literal["nn", "patch", "freedrag", "flow", "hybrid"]
Impl = Literal["fast", "reference"]
StopRule = Literal["paper", "official"] | float

W_MODES: tuple[str, ...] = ("w+", "w")
TRACK_NORMS: tuple[str, ...] = ("l2", "l1")
TRACKERS: tuple[str, ...] = ("nn", "patch", "freedrag", "flow", "hybrid")
IMPLS: tuple[str, ...] = ("fast", "reference")
STOP_RULES: tuple[str, ...] = ("paper", "official")


def _fail(field: str, expected: str, value: Any) -> InvalidInputError:
    return InvalidInputError(f"DragConfig.{field}: expected {expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_choice(field: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise _fail(field, "one of " + ", ".join(repr(c) for c in choices), value)


def _check_stop_rule(value: Any) -> None:
    if isinstance(value, str):
        _check_choice("stop_rule", value, STOP_RULES)
    elif not (_is_real(value) and value > 0):
        raise _fail("stop_rule", "'paper', 'official' or a positive distance in pixels", value)


def _check_optimize_ws(value: Any) -> None:
    if value is None:
        return
    if _is_int(value):
        if value < 1:
            raise _fail("optimize_ws", "None, a layer count ≥ 1 or a tuple of W+ indices", value)
        return
    if not isinstance(value, tuple) or not value or not all(_is_int(i) and i >= 0 for i in value):
        raise _fail("optimize_ws", "None, a layer count ≥ 1 or a non-empty tuple of W+ indices ≥ 0", value)
    if len(set(value)) != len(value):
        raise _fail("optimize_ws", "distinct W+ indices", value)


@dataclass(frozen=True)
class DragConfig:
    """Settings of the DragGAN optimisation; ``None`` means "the model's default" (see :meth:`resolve`).

    Defaults follow the paper (design.md §3): Adam, first 6 W+ layers, features of StyleGAN2's ``b128``,
    r1 = round(3/512·H), r2 = round(12/512·H), λ = 20, no latent regularisation, L2 tracking, stop distance
    d = 1 for ≤ 5 handles (2 otherwise), at most 300 steps.
    """

    lr: float | None = None  # Adam learning rate (None: generator.drag_hints().lr, 2e-3 for StyleGAN2)
    optimize_ws: int | tuple[int, ...] | None = None  # first k W+ layers, or explicit indices (None: hints)
    w_mode: WMode = "w+"  # 'w+': one vector per optimised layer; 'w': one w repeated into those layers
    feature_block: int | None = None  # FeatureLevel index used for the loss and tracking (None: hints)
    r1: int | None = None  # motion-supervision patch radius in image pixels (None: hints, else round(3/512·H))
    r2: int | None = None  # tracking window half-size in image pixels (None: round(12/512·H), ≥ 1)
    mask_lambda: float = 20.0  # λ of the fixed-region term (only used when a mask has both values)
    latent_reg: float = 0.0  # γ of γ·mean|ws − w0| (official code: 0)
    track_norm: TrackNorm = "l2"  # distance between features when tracking ('l2' official, 'l1' paper)
    tracker: Tracker | None = None  # 'nn' (paper), 'patch', 'freedrag', 'flow' or 'hybrid' (None: hints)
    track_patch: int = 2  # 'patch'/'hybrid': half-size of the patch in native feature cells
    track_prior: float = 0.0  # 'nn'/'patch'/'hybrid': least-motion prior μ (0: none, the paper's tracker)
    sub_motion_cells: float = 3.0  # 'freedrag': longest sub-motion in native feature cells (official: 3)
    sub_motion_loss: float = 1.0  # 'freedrag': expected loss of a sub-motion, in units of the one-cell mismatch
    sub_motion_steps: int = 5  # 'freedrag': optimiser steps per sub-motion at most (official: 5)
    motion_step: float | None = None  # length of the motion-supervision shift in pixels (None: hints; paper 1)
    stop_rule: StopRule = "paper"  # 'paper': d = 1 (≤ 5 handles) else 2; 'official': max(2/512·H, 2); or d
    max_steps: int = 300  # default number of steps for DragSession.run
    impl: Impl = "fast"  # 'fast' (native feature grid, early stop) or 'reference' (official ordering)

    def __post_init__(self) -> None:
        if self.lr is not None and not (_is_real(self.lr) and self.lr > 0):
            raise _fail("lr", "None or a positive finite float", self.lr)
        _check_optimize_ws(self.optimize_ws)
        _check_choice("w_mode", self.w_mode, W_MODES)
        if self.feature_block is not None and not (_is_int(self.feature_block) and self.feature_block >= 0):
            raise _fail("feature_block", "None or an int ≥ 0", self.feature_block)
        for name in ("r1", "r2"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and value >= 1):
                raise _fail(name, "None or an int ≥ 1", value)
        for name in ("mask_lambda", "latent_reg", "track_prior"):
            value = getattr(self, name)
            if not (_is_real(value) and value >= 0):
                raise _fail(name, "a finite float ≥ 0", value)
        _check_choice("track_norm", self.track_norm, TRACK_NORMS)
        if self.tracker is not None:
            _check_choice("tracker", self.tracker, TRACKERS)
        if not (_is_int(self.track_patch) and self.track_patch >= 0):
            raise _fail("track_patch", "an int ≥ 0", self.track_patch)
        for name in ("sub_motion_cells", "sub_motion_loss"):
            value = getattr(self, name)
            if not (_is_real(value) and value > 0):
                raise _fail(name, "a positive finite float", value)
        if not (_is_int(self.sub_motion_steps) and self.sub_motion_steps >= 1):
            raise _fail("sub_motion_steps", "an int ≥ 1", self.sub_motion_steps)
        if self.motion_step is not None and not (_is_real(self.motion_step) and self.motion_step > 0):
            raise _fail("motion_step", "None or a positive finite float", self.motion_step)
        _check_stop_rule(self.stop_rule)
        if not (_is_int(self.max_steps) and self.max_steps >= 1):
            raise _fail("max_steps", "an int ≥ 1", self.max_steps)
        _check_choice("impl", self.impl, IMPLS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); :meth:`from_dict` inverts it."""
        d = asdict(self)
        if isinstance(self.optimize_ws, tuple):
            d["optimize_ws"] = list(self.optimize_ws)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DragConfig:
        """Build from a dict such as :meth:`to_dict`'s; unknown keys raise :class:`InvalidInputError`."""
        if not isinstance(d, dict):
            raise InvalidInputError(f"DragConfig: expected a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidInputError(f"DragConfig: unknown keys {unknown}; known keys: {sorted(known)}")
        d = dict(d)
        if isinstance(d.get("optimize_ws"), list):
            d["optimize_ws"] = tuple(d["optimize_ws"])
        return cls(**d)

    def replace(self, **changes: Any) -> DragConfig:
        """A copy with ``changes`` applied (validated; unknown names raise)."""
        d = self.to_dict()
        d.update(changes)
        return DragConfig.from_dict(d)

    def resolve(
        self,
        *,
        image_shape: tuple[int, int],
        num_ws: int,
        num_feature_levels: int,
        hint_feature_block: int,
        hint_optimize_ws: tuple[int, ...],
        hint_lr: float,
        hint_tracker: str = "nn",
        hint_motion_step: float = 1.0,
        hint_r1: int | None = None,
    ) -> ResolvedConfig:
        """Fill every ``None`` from the model's hints and the image height H; check indices against the model."""
        H = image_shape[0]
        if self.optimize_ws is None:
            layers = tuple(hint_optimize_ws)
        elif isinstance(self.optimize_ws, int):
            if self.optimize_ws > num_ws:
                raise _fail("optimize_ws", f"a layer count ≤ num_ws = {num_ws}", self.optimize_ws)
            layers = tuple(range(self.optimize_ws))
        else:
            layers = self.optimize_ws
        bad = [i for i in layers if i >= num_ws]
        if bad:
            raise _fail("optimize_ws", f"W+ indices < num_ws = {num_ws}", layers)
        block = hint_feature_block if self.feature_block is None else self.feature_block
        if not 0 <= block < num_feature_levels:
            raise _fail("feature_block", f"a feature level index in [0, {num_feature_levels - 1}]", block)
        tracker = hint_tracker if self.tracker is None else self.tracker
        _check_choice("tracker", tracker, TRACKERS)
        default_r1, default_r2 = radii(H)
        return ResolvedConfig(
            lr=float(hint_lr if self.lr is None else self.lr),
            optimize_ws=tuple(sorted(layers)),
            w_mode=self.w_mode,
            feature_block=block,
            r1=self.r1 if self.r1 is not None else default_r1 if hint_r1 is None else hint_r1,
            r2=default_r2 if self.r2 is None else self.r2,
            mask_lambda=float(self.mask_lambda),
            latent_reg=float(self.latent_reg),
            track_norm=self.track_norm,
            tracker=cast(Tracker, tracker),
            track_patch=self.track_patch,
            track_prior=float(self.track_prior),
            sub_motion_cells=float(self.sub_motion_cells),
            sub_motion_loss=float(self.sub_motion_loss),
            sub_motion_steps=self.sub_motion_steps,
            motion_step=float(hint_motion_step if self.motion_step is None else self.motion_step),
            stop_rule=self.stop_rule,
            max_steps=self.max_steps,
            impl=self.impl,
        )


@dataclass(frozen=True)
class ResolvedConfig:
    """A :class:`DragConfig` with every model-dependent default filled in (what the session actually uses)."""

    lr: float
    optimize_ws: tuple[int, ...]  # sorted W+ indices that are optimised
    w_mode: WMode
    feature_block: int
    r1: int
    r2: int
    mask_lambda: float
    latent_reg: float
    track_norm: TrackNorm
    tracker: Tracker
    track_patch: int
    track_prior: float
    sub_motion_cells: float
    sub_motion_loss: float
    sub_motion_steps: int
    motion_step: float
    stop_rule: StopRule
    max_steps: int
    impl: Impl

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["optimize_ws"] = list(self.optimize_ws)
        return d

    def as_config(self) -> DragConfig:
        """The equivalent fully explicit :class:`DragConfig`."""
        return DragConfig.from_dict(self.to_dict())


def parse_stop_rule(text: str) -> StopRule:
    """CLI helper: 'paper' | 'official' | a positive number of pixels."""
    if text in STOP_RULES:
        return cast(StopRule, text)
    try:
        value = float(text)
    except ValueError:
        raise _fail("stop_rule", "'paper', 'official' or a positive distance in pixels", text) from None
    _check_stop_rule(value)
    return value
