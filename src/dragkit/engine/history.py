"""Immutable session states and the undo/redo history of a :class:`~dragkit.engine.session.DragSession`.

Every public mutation of a session builds a new :class:`State` and commits it to a :class:`History`; undo and redo
move whole states between two stacks. States never change after they are built, so consecutive states share
whatever did not change (tensors, the segment, the tracker state, the trajectory's past).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dragkit.engine.result import StepResult
from dragkit.errors import InvalidInputError

__all__ = ["History", "Point", "Segment", "State", "TrajectoryNode"]

Point = tuple[float, float]


@dataclass(frozen=True)
class Segment:
    """What holds from the first step after the points (or the tracker) last changed until they change again."""

    features0: torch.Tensor  # [1, C, h, w] F0 on the native grid, detached
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


class History:
    """The current state plus undo and redo stacks; at most ``limit`` undo steps are kept (oldest dropped)."""

    def __init__(self, state: State, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidInputError(f"history_limit: expected an int ≥ 0, got {limit!r}")
        self.limit = limit
        self.current = state
        self._undo: list[State] = []
        self._redo: list[State] = []

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def commit(self, state: State) -> None:
        """Make ``state`` current; the old one becomes undoable and the redo stack is dropped."""
        self._undo.append(self.current)
        if len(self._undo) > self.limit:
            del self._undo[: len(self._undo) - self.limit]
        self._redo.clear()
        self.current = state

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
        self._undo = states[:current]
        self.current = states[current]
        self._redo = states[current + 1 :][::-1]

    @staticmethod
    def _check(what: str, n: int, available: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > available:
            raise InvalidInputError(f"{what}: expected 1 ≤ n ≤ {available} (available), got {n}")
