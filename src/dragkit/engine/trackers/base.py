"""The shape every point tracker has (docs/architecture.md §3, "Trackers").

A tracker re-finds the handles after each optimiser step. :class:`DragSession.step
<dragkit.engine.session.DragSession.step>` calls it in one place:

1. on the first step after the points (or the tracker) changed: ``state = tracker.start(ctx)``;
2. every step: ``handles, state = tracker.track(ctx, state)``;
3. unless :meth:`Tracker.arrived`: ``loss, state = tracker.motion_loss(ctx, handles, state)`` — DragGAN's motion
   supervision unless the tracker overrides it (FreeDrag pulls content to its virtual positions instead).

A tracker class names itself, says whether it needs the display frame of each step, and carries its own frozen
params dataclass (``Params``) and state dataclass (``State``). States are frozen dataclasses of tensors, ints,
floats and bools, never modified after they are built: undo/redo share them between history entries, and session
files store them field by field (:func:`state_to_dict`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, ClassVar, Generic, TypeVar

import torch

from dragkit.engine.losses import motion_loss, motion_loss_reference
from dragkit.engine.sampling import upsample_features
from dragkit.errors import InvalidInputError

__all__ = ["TrackContext", "Tracker", "as_points", "params_from_dict", "state_from_dict", "state_to_dict"]

ParamsT = TypeVar("ParamsT")
StateT = TypeVar("StateT")


def as_points(points: torch.Tensor) -> list[tuple[float, float]]:
    """[N, 2] tensor → [(x, y), …] of Python floats."""
    return [(float(x), float(y)) for x, y in points.tolist()]


class TrackContext:
    """What a tracker sees at one step. Built by the session; trackers only read it.

    features: [1, C, h, w] this step's features on the native grid of the feature block, still connected to the
    optimised latent (trackers detach; :meth:`Tracker.motion_loss` differentiates through it);
    handles: [N, 2] (x, y) where the handles were last tracked (on a first step: where they were placed);
    targets: [N, 2]; image_shape: (H, W); r1, r2: motion-patch and search radii in image pixels; impl: 'fast' or
    'reference' (a tracker with a literal official form uses it for 'reference'); stop_distance: d in pixels;
    image: [1, 3, H, W] in about [-1, 1], the display frame of this step's latent (only for ``needs_frame``
    trackers, else None).
    """

    def __init__(
        self,
        features: torch.Tensor,
        handles: torch.Tensor,
        targets: torch.Tensor,
        *,
        image_shape: tuple[int, int],
        r1: int,
        r2: int,
        impl: str,
        stop_distance: float,
        image: torch.Tensor | None = None,
    ) -> None:
        self.features = features
        self.handles = handles
        self.targets = targets
        self.image_shape = image_shape
        self.r1 = r1
        self.r2 = r2
        self.impl = impl
        self.stop_distance = stop_distance
        self.image = image

    @cached_property
    def features_up(self) -> torch.Tensor:
        """``features`` upsampled bilinearly to [1, C, H, W] as the official code does (computed once per step)."""
        return upsample_features(self.features, self.image_shape)

    @property
    def device(self) -> torch.device:
        return self.features.device


class Tracker(ABC, Generic[ParamsT, StateT]):
    """A point tracker: ``start`` → state, ``track`` → (handles, state), optionally its own motion loss.

    Subclasses set the class attributes below and implement :meth:`start` and :meth:`track`; registering one is a
    line in :data:`dragkit.engine.trackers.TRACKERS`. An instance is bound to one ``Params`` value.
    """

    name: ClassVar[str]  # registry key, e.g. "nn"
    label: ClassVar[str]  # short human name for pickers
    description: ClassVar[str]  # one line for tooltips and docs
    experimental: ClassVar[bool] = False  # lost on some count in our measurements: offered, but marked as such
    needs_frame: ClassVar[bool] = False  # ctx.image is rendered for it every step
    Params: ClassVar[type[Any]]  # frozen dataclass of the tracker's settings; validates in __post_init__
    State: ClassVar[type[Any]]  # frozen dataclass of what it carries from step to step
    #: shapes of the State's tensors: "N" = number of handles, "C" = feature channels, "*" = any, ints as they are
    state_shapes: ClassVar[tuple[tuple[str, tuple[int | str, ...]], ...]] = ()

    def __init__(self, params: ParamsT | None = None) -> None:
        if params is None:
            params = self.Params()
        if not isinstance(params, self.Params):
            raise InvalidInputError(
                f"tracker {self.name!r}: expected {self.Params.__name__} params, got {type(params).__name__}"
            )
        self.params: ParamsT = params

    @abstractmethod
    def start(self, ctx: TrackContext) -> StateT:
        """Templates (and whatever else) from this step's features at ``ctx.handles``: the segment's F0."""

    @abstractmethod
    def track(self, ctx: TrackContext, state: StateT) -> tuple[torch.Tensor, StateT]:
        """New handle positions [N, 2] (x, y) in this step's latent, without gradient, and the next state."""

    def motion_loss(self, ctx: TrackContext, handles: torch.Tensor, state: StateT) -> tuple[torch.Tensor, StateT]:
        """The motion term of the loss (a scalar, differentiable through ``ctx.features``) and the next state.

        Default: DragGAN's motion supervision pulling the patch around each tracked handle one pixel towards its
        target (:func:`~dragkit.engine.losses.motion_loss`; the literal form for ``impl='reference'``).
        """
        if ctx.impl == "reference":
            loss = motion_loss_reference(ctx.features_up, as_points(handles), as_points(ctx.targets), ctx.r1)
        else:
            loss = motion_loss(ctx.features, handles, ctx.targets, ctx.r1, ctx.image_shape)
        return loss, state

    def arrived(self, state: StateT, distances: list[float], stop_distance: float) -> bool:
        """Whether the drag is done: by default every handle within ``stop_distance`` of its target."""
        return all(d <= stop_distance for d in distances)

    def check_state(self, state: Any, num_points: int, channels: int) -> None:
        """Raise ValueError unless ``state`` (read from a file) has this tracker's field types, finite values and
        :attr:`state_shapes` for ``num_points`` handles and ``channels`` feature channels."""
        if not isinstance(state, self.State):
            raise ValueError(f"a {type(state).__name__} is not a {self.State.__name__}")
        hints = typing.get_type_hints(self.State)
        for f in dataclasses.fields(state):
            if not _valid(getattr(state, f.name), hints[f.name]):
                raise ValueError(f"tracker {self.name!r} state {f.name}: not a valid {hints[f.name]}")
        sizes = {"N": num_points, "C": channels}
        for name, dims in self.state_shapes:
            shape = tuple(getattr(state, name).shape)
            want = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in dims)
            if len(shape) != len(want) or any(w != "*" and s != w for s, w in zip(shape, want, strict=True)):
                raise ValueError(f"tracker {self.name!r} state {name}: shape {list(shape)}, expected {list(dims)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


def _valid(value: Any, hint: Any) -> bool:
    """Whether a state field read from a file fits its annotation: finite tensors, ints ≥ 0, finite floats, bools."""
    if hint is torch.Tensor:
        return isinstance(value, torch.Tensor) and (not value.is_floating_point() or bool(torch.isfinite(value).all()))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return True


def params_from_dict(tracker: type[Tracker[Any, Any]], d: Any) -> Any:
    """``tracker.Params(**d)``; a non-dict or unknown keys raise :class:`InvalidInputError` naming the known ones."""
    if not isinstance(d, dict):
        raise InvalidInputError(f"tracker {tracker.name!r} params: expected a dict, got {type(d).__name__}")
    known = [f.name for f in dataclasses.fields(tracker.Params)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise InvalidInputError(f"tracker {tracker.name!r} params: unknown keys {unknown}; known keys: {known}")
    return tracker.Params(**d)


def state_to_dict(state: Any) -> dict[str, Any]:
    """A tracker state → a dict of CPU tensors and plain values (``torch.load(weights_only=True)`` can read it)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        out[f.name] = value.detach().cpu() if isinstance(value, torch.Tensor) else value
    return out


def state_from_dict(tracker: type[Tracker[Any, Any]], d: Any, device: torch.device) -> Any:
    """Inverse of :func:`state_to_dict` for ``tracker.State``, tensors moved to ``device``; wrong keys raise."""
    names = {f.name for f in dataclasses.fields(tracker.State)}
    if not isinstance(d, dict) or set(d) != names:
        got = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise InvalidInputError(f"tracker {tracker.name!r} state: expected keys {sorted(names)}, got {got}")
    return tracker.State(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in d.items()})
