"""Point trackers behind one shape (:class:`~dragkit.engine.trackers.base.Tracker`) and their registry.

``TRACKERS`` maps a name (``DragConfig.tracker``) to a tracker class, the way ``dragkit.io.families.FAMILIES``
registers generator families. Adding a tracker is one file in this package and one line here; the session, CLI,
studio picker and the contract tests pick it up from the registry.

- ``nn`` — the paper's nearest-neighbour tracking (default);
- ``freedrag`` — FreeDrag's template-driven sub-motions (its own motion loss);
- ``patch`` — centred-cosine patch match (experimental);
- ``hybrid`` — mean of Lucas–Kanade on the display frames and the patch match (experimental).
"""

from __future__ import annotations

from typing import Any

from dragkit.engine.trackers.base import TrackContext, Tracker, params_from_dict, state_from_dict, state_to_dict
from dragkit.engine.trackers.freedrag import FreeDrag
from dragkit.engine.trackers.hybrid import Hybrid
from dragkit.engine.trackers.nn import NearestNeighbour
from dragkit.engine.trackers.patch import PatchMatch
from dragkit.errors import InvalidInputError

__all__ = [
    "DEFAULT_TRACKER",
    "TRACKERS",
    "TrackContext",
    "Tracker",
    "get_tracker",
    "params_from_dict",
    "state_from_dict",
    "state_to_dict",
    "tracker_choices",
]

TRACKERS: dict[str, type[Tracker[Any, Any]]] = {
    NearestNeighbour.name: NearestNeighbour,
    FreeDrag.name: FreeDrag,
    PatchMatch.name: PatchMatch,
    Hybrid.name: Hybrid,
}

DEFAULT_TRACKER = NearestNeighbour.name


def get_tracker(name: Any) -> type[Tracker[Any, Any]]:
    """The registered tracker class called ``name``; anything else raises :class:`InvalidInputError`."""
    tracker = TRACKERS.get(name) if isinstance(name, str) else None
    if tracker is None:
        raise InvalidInputError(f"tracker: expected one of {', '.join(repr(t) for t in TRACKERS)}, got {name!r}")
    return tracker


def tracker_choices() -> list[dict[str, Any]]:
    """The registry for pickers: [{"name", "label", "experimental", "description"}, …] in registry order."""
    return [
        {"name": t.name, "label": t.label, "experimental": t.experimental, "description": t.description}
        for t in TRACKERS.values()
    ]
