"""Typed settings of a drag session (docs/architecture.md §3): :class:`DragConfig` and its resolved form.

``DragConfig`` is what users and the CLI write; fields left ``None`` are filled per model from
:meth:`dragkit.nn.protocol.Generator.drag_hints` and the image size by :meth:`DragConfig.resolve`, which yields a
:class:`ResolvedConfig` whose every field is concrete. Both are frozen; validation happens in ``__post_init__``
and raises :class:`~dragkit.errors.InvalidInputError` naming the field, the expected and the actual value. Each
field's ``metadata["help"]`` is its one description: the CLI and the benchmarks build their options from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, cast

from dragkit.engine.trackers import DEFAULT_TRACKER, get_tracker, params_from_dict
from dragkit.errors import InvalidInputError
from dragkit.nn.protocol import Generator

WMode = Literal["w+", "w"]
Impl = Literal["fast", "reference"]
StopRule = Literal["paper", "official"] | float

W_MODES: tuple[str, ...] = ("w+", "w")
IMPLS: tuple[str, ...] = ("fast", "reference")
STOP_RULES: tuple[str, ...] = ("paper", "official")


def radii(height: int) -> tuple[int, int]:
    """(r1, r2) = (round(3/512·H), round(12/512·H)), each at least 1 (docs/architecture.md §3; Python's round,
    as the official code)."""
    if isinstance(height, bool) or not isinstance(height, int) or height < 1:
        raise InvalidInputError(f"image height: expected an int ≥ 1, got {height!r}")
    return max(1, round(3 / 512 * height)), max(1, round(12 / 512 * height))


def stop_distance(rule: str | float, num_handles: int, height: int) -> float:
    """Distance d in pixels below which a handle counts as arrived (docs/architecture.md §3, step 6).

    ``'paper'``: d = 1 for ≤ 5 handles, 2 otherwise; ``'official'``: max(2/512·H, 2); a number: that number.
    """
    if rule == "paper":
        return 1.0 if num_handles <= 5 else 2.0
    if rule == "official":
        return max(2 / 512 * height, 2.0)
    if isinstance(rule, int | float) and not isinstance(rule, bool) and math.isfinite(rule) and rule > 0:
        return float(rule)
    raise InvalidInputError(f"stop rule: expected 'paper', 'official' or a positive number, got {rule!r}")


def _fail(field: str, expected: str, value: Any) -> InvalidInputError:
    return InvalidInputError(f"DragConfig.{field}: expected {expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise _fail(name, "one of " + ", ".join(repr(c) for c in choices), value)


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


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class DragConfig:
    """Settings of the DragGAN optimisation; ``None`` means "the model's default" (see :meth:`resolve`).

    Defaults follow the paper (docs/architecture.md §3): Adam, first 6 W+ layers, features of StyleGAN2's
    ``b128``, r1 = round(3/512·H), r2 = round(12/512·H), λ = 20, no latent regularisation, the nearest-neighbour
    tracker, stop distance d = 1 for ≤ 5 handles (2 otherwise), at most 300 steps.

    ``tracker_params``: the tracker's own frozen params (``TRACKERS[tracker].Params``; a dict of its fields is
    accepted and converted), or None for its defaults.
    """

    lr: float | None = field(default=None, metadata=_help("Adam learning rate (default: the model's, 2e-3)"))
    optimize_ws: int | tuple[int, ...] | None = field(
        default=None, metadata=_help("optimised W+ rows: the first K, or indices '0-6' / '0,1,4' (default: model's)")
    )
    w_mode: WMode = field(default="w+", metadata=_help("'w+': a vector per optimised row; 'w': one w repeated"))
    feature_block: int | None = field(default=None, metadata=_help("feature level index (default: the model's)"))
    r1: int | None = field(default=None, metadata=_help("motion patch radius in pixels (default round(3/512·H))"))
    r2: int | None = field(default=None, metadata=_help("tracking window radius in pixels (default round(12/512·H))"))
    mask_lambda: float = field(default=20.0, metadata=_help("λ of the fixed-region term (default 20)"))
    latent_reg: float = field(default=0.0, metadata=_help("γ of γ·mean|ws − w0| (default 0, as the official code)"))
    tracker: str = field(default=DEFAULT_TRACKER, metadata=_help("point tracker (default nn, the paper's)"))
    tracker_params: Any = field(default=None, metadata=_help("the tracker's own settings (None: its defaults)"))
    stop_rule: StopRule = field(
        default="paper", metadata=_help("'paper' (d = 1 px, 2 px for > 5 points), 'official' or a distance in px")
    )
    max_steps: int = field(default=300, metadata=_help("steps at most (default 300, the paper's evaluation)"))
    impl: Impl = field(default="fast", metadata=_help("'fast' (native feature grid) or 'reference' (official)"))
    guard: bool = field(
        default=True,
        metadata=_help(
            "the quality guard: stop at the last sharp step when the edit region starts to blur or smear "
            "(--no-guard: run on)"
        ),
    )

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
        for name in ("mask_lambda", "latent_reg"):
            value = getattr(self, name)
            if not (_is_real(value) and value >= 0):
                raise _fail(name, "a finite float ≥ 0", value)
        tracker = get_tracker(self.tracker)
        params = self.tracker_params
        if params is None:
            params = tracker.Params()
        elif isinstance(params, dict):
            params = params_from_dict(tracker, params)
        elif not isinstance(params, tracker.Params):
            raise _fail("tracker_params", f"None, a dict or {tracker.Params.__name__}", params)
        object.__setattr__(self, "tracker_params", params)
        _check_stop_rule(self.stop_rule)
        if not (_is_int(self.max_steps) and self.max_steps >= 1):
            raise _fail("max_steps", "an int ≥ 1", self.max_steps)
        _check_choice("impl", self.impl, IMPLS)
        if not isinstance(self.guard, bool):
            raise _fail("guard", "True or False", self.guard)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists, tracker params a dict); :meth:`from_dict` inverts it."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if isinstance(self.optimize_ws, tuple):
            d["optimize_ws"] = list(self.optimize_ws)
        d["tracker_params"] = asdict(self.tracker_params)
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
        """A copy with ``changes`` applied (validated; unknown names raise). Changing ``tracker`` without giving
        ``tracker_params`` starts from the new tracker's default params."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if "tracker" in changes and changes["tracker"] != self.tracker and "tracker_params" not in changes:
            d["tracker_params"] = None
        d.update(changes)
        return DragConfig.from_dict(d)

    def resolve_for(self, generator: Generator) -> ResolvedConfig:
        """:meth:`resolve` with ``generator``'s image size, W+ length, feature levels and ``drag_hints()``."""
        hints = generator.drag_hints()
        return self.resolve(
            image_shape=(int(generator.img_shape[0]), int(generator.img_shape[1])),
            num_ws=generator.num_ws,
            num_feature_levels=len(generator.feature_levels()),
            hint_feature_block=hints.feature_block,
            hint_optimize_ws=tuple(hints.optimize_ws),
            hint_lr=hints.lr,
        )

    def resolve(
        self,
        *,
        image_shape: tuple[int, int],
        num_ws: int,
        num_feature_levels: int,
        hint_feature_block: int,
        hint_optimize_ws: tuple[int, ...],
        hint_lr: float,
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
        default_r1, default_r2 = radii(H)
        return ResolvedConfig(
            lr=float(hint_lr if self.lr is None else self.lr),
            optimize_ws=tuple(sorted(layers)),
            w_mode=self.w_mode,
            feature_block=block,
            r1=default_r1 if self.r1 is None else self.r1,
            r2=default_r2 if self.r2 is None else self.r2,
            mask_lambda=float(self.mask_lambda),
            latent_reg=float(self.latent_reg),
            tracker=self.tracker,
            tracker_params=self.tracker_params,
            stop_rule=self.stop_rule,
            max_steps=self.max_steps,
            impl=self.impl,
            guard=self.guard,
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
    tracker: str
    tracker_params: Any  # TRACKERS[tracker].Params instance
    stop_rule: StopRule
    max_steps: int
    impl: Impl
    guard: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["optimize_ws"] = list(self.optimize_ws)
        d["tracker_params"] = dataclasses.asdict(self.tracker_params)
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
