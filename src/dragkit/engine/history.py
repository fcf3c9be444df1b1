"""Immutable session states and the undo/redo history of a :class:`~dragkit.engine.session.DragSession`.

Every public mutation of a session builds a new :class:`State` and commits it to a :class:`History`; undo and redo
move whole states between two stacks. States never change after they are built, so consecutive states share
whatever did not change (tensors, the segment, the tracker state, the trajectory's past).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from dragkit.engine.result import StepResult
from dragkit.errors import InvalidInputError

__all__ = ["History", "Point", "Segment", "State", "TrajectoryNode", "state_tensors"]

Point = tuple[float, float]


@dataclass(frozen=True, eq=False)
class Segment:
    """What holds from the first step after the points (or the tracker) last changed until they change again.

    F0 (the features the fixed-region term compares with) is the feature map of the latent the segment began in,
    so a segment keeps that latent's optimised rows (a few KB) rather than F0 itself (C·h·w floats, 16 MB for a
    StyleGAN2 ``b128``); the session recomputes F0 from them when an undo, redo or load returns to the segment.
    """

    start: torch.Tensor  # optimised rows [1, k, w_dim] of the latent the segment's first step started from
    tracker: str  # the tracker whose state belongs to this segment
    params: Any  # and its params: another tracker or other params start a new segment


@dataclass(frozen=True)
class TrajectoryNode:
    """A persistent list of step results: states share their common past."""

    result: StepResult
    prev: TrajectoryNode | None
    length: int


@dataclass(frozen=True)
class State:
    """Everything that undo/redo restores. Tensors are never modified after the state is built."""

    ws_opt: torch.Tensor  # [1, k, w_dim] (W+) or [1, 1, w_dim] (W), detached
    adam: dict[str, torch.Tensor] | None  # torch Adam state of ws_opt ('step', 'exp_avg', 'exp_avg_sq')
    handles: tuple[Point, ...]
    targets: tuple[Point, ...]
    origins: tuple[Point, ...]  # where each handle was placed; reset() returns handles there
    mask: torch.Tensor | None  # bool [H, W], True = movable
    segment: Segment | None  # None: the tracker starts afresh on the next step
    tracking: Any  # the segment's tracker state (None with segment None)
    trajectory: TrajectoryNode | None

    @property
    def step(self) -> int:
        return 0 if self.trajectory is None else self.trajectory.length

    def results(self) -> list[StepResult]:
        """Every step's result up to this state, oldest first."""
        out: list[StepResult] = []
        node = self.trajectory
        while node is not None:
            out.append(node.result)
            node = node.prev
        return out[::-1]


def state_tensors(state: State) -> Iterator[torch.Tensor]:
    """Every tensor a state holds (shared ones included): latent rows, Adam moments, mask, segment, tracker state."""
    yield state.ws_opt
    if state.adam is not None:
        yield from state.adam.values()
    if state.mask is not None:
        yield state.mask
    if state.segment is not None:
        yield state.segment.start
    if state.tracking is not None:
        for f in dataclasses.fields(state.tracking):
            value = getattr(state.tracking, f.name)
            if isinstance(value, torch.Tensor):
                yield value


class History:
    """The current state plus undo and redo stacks, bounded by ``limit`` undo steps and ``max_bytes`` of tensors
    (each distinct tensor counted once, however many states share it); the oldest undo steps go first."""

    def __init__(self, state: State, limit: int, max_bytes: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidInputError(f"history_limit: expected an int ≥ 0, got {limit!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise InvalidInputError(f"history_bytes: expected an int ≥ 0, got {max_bytes!r}")
        self.limit = limit
        self.max_bytes = max_bytes
        self.current = state
        self._undo: list[State] = []
        self._redo: list[State] = []
        self._held: dict[int, list[int]] = {}  # id(tensor) → [states holding it, its bytes]
        self.bytes = 0  # bytes of the distinct tensors of every state held
        self._hold(state, +1)

    def _hold(self, state: State, sign: int) -> None:
        for t in {id(t): t for t in state_tensors(state)}.values():
            entry = self._held.setdefault(id(t), [0, t.element_size() * t.nelement()])
            if entry[0] == 0:
                self.bytes += entry[1]
            entry[0] += sign
            if entry[0] == 0:
                self.bytes -= entry[1]
                del self._held[id(t)]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def commit(self, state: State) -> None:
        """Make ``state`` current; the old one becomes undoable and the redo stack is dropped; the oldest undo
        steps go while the history is over its step count or byte budget."""
        self._hold(state, +1)
        for dropped in self._redo:
            self._hold(dropped, -1)
        self._redo.clear()
        self._undo.append(self.current)
        self.current = state
        while self._undo and (len(self._undo) > self.limit or self.bytes > self.max_bytes):
            self._hold(self._undo.pop(0), -1)

    def undo(self, n: int = 1) -> None:
        """Go back ``n`` states (1 ≤ n ≤ the number available)."""
        self._check("undo", n, len(self._undo))
        for _ in range(n):
            self._redo.append(self.current)
            self.current = self._undo.pop()

    def redo(self, n: int = 1) -> None:
        """Go forward ``n`` undone states."""
        self._check("redo", n, len(self._redo))
        for _ in range(n):
            self._undo.append(self.current)
            self.current = self._redo.pop()

    def chronological(self) -> tuple[list[State], int]:
        """All states oldest first, and the index of the current one."""
        return [*self._undo, self.current, *reversed(self._redo)], len(self._undo)

    def restore(self, states: list[State], current: int) -> None:
        """Inverse of :meth:`chronological`."""
        if not 0 <= current < len(states):
            raise InvalidInputError(f"history: current state {current} of {len(states)}")
        for st in [*self._undo, self.current, *self._redo]:
            self._hold(st, -1)
        for st in states:
            self._hold(st, +1)
        self._undo = states[:current]
        self.current = states[current]
        self._redo = states[current + 1 :][::-1]

    @staticmethod
    def _check(what: str, n: int, available: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > available:
            raise InvalidInputError(f"{what}: expected 1 ≤ n ≤ {available} (available), got {n}")
