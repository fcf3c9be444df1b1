"""Session files: :meth:`DragSession.save <dragkit.engine.session.DragSession.save>` and ``load``.

A session file is one ``torch.save`` of plain tensors, dicts, lists and numbers — readable with
``torch.load(weights_only=True)``, so loading never runs code. Objects shared between history states (masks,
segments, tracker states, the trajectory's past) are stored once and referenced by index.

Version 2 (this release) stores each segment's tracker name and params, the optimised rows it started from (its F0
is recomputed from them) and the tracker's state field by field.
Version-1 files (written before trackers had their own params) still load: latents, Adam moments, points, mask,
history and trajectory come back; the feature templates are re-taken at the next step, as after moving a point.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dragkit.engine.config import DragConfig
from dragkit.engine.history import Segment, State, TrajectoryNode
from dragkit.engine.inputs import check_mask, check_points
from dragkit.engine.result import StepResult
from dragkit.engine.trackers import get_tracker, params_from_dict, state_from_dict, state_to_dict
from dragkit.errors import InvalidInputError
from dragkit.files import atomic_path
from dragkit.nn.protocol import Generator

if TYPE_CHECKING:
    from dragkit.engine.session import DragSession

logger = logging.getLogger(__name__)

SESSION_FORMAT = "dragkit.session"
SESSION_VERSION = 2
READABLE_VERSIONS = (1, 2)

# version 1 kept tracker settings as flat config fields: field → (the trackers that used it, its name in their params)
_V1_TRACKER_FIELDS = {
    "track_norm": (("nn",), "norm"),
    "track_patch": (("patch", "hybrid"), "patch"),
    "sub_motion_cells": (("freedrag",), "sub_motion_cells"),
    "sub_motion_loss": (("freedrag",), "sub_motion_loss"),
    "sub_motion_steps": (("freedrag",), "sub_motion_steps"),
}
# options of version 1 that were removed, with the value that reproduces the paper's behaviour
_V1_REMOVED = {"track_prior": 0.0, "motion_step": 1.0}
_V1_REMOVED_TRACKERS = {"flow": "nn"}


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def describe_load_error(exc: BaseException) -> str:
    """Why a file could not be read, in one printable line of at most 200 characters — never torch's advice to
    load it with ``weights_only=False`` (which would run whatever the file carries)."""
    text = _ANSI.sub("", str(exc))
    if "weights_only" in text or "Weights only" in text:
        return "it holds objects other than tensors and plain data, which dragkit never loads"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return "".join(ch for ch in first if ch.isprintable())[:200]


def _points(points: Any) -> tuple[tuple[float, float], ...]:
    return tuple((float(x), float(y)) for x, y in points)


def save_session(session: DragSession, path: str | os.PathLike[str]) -> Path:
    """Write ``session`` to ``path`` atomically (temporary file + rename); returns the path."""
    path = Path(path)
    states, current = session._history.chronological()
    index: dict[tuple[str, int], int] = {}
    tables: dict[str, list[Any]] = {"segments": [], "trackings": [], "masks": [], "trajectory_nodes": []}

    def ref(table: str, obj: Any, encode: Any) -> int:
        if obj is None:
            return -1
        key = (table, id(obj))
        if key not in index:
            value = encode(obj)  # may add earlier entries of the same table first (trajectory nodes)
            index[key] = len(tables[table])
            tables[table].append(value)
        return index[key]

    def node(n: TrajectoryNode) -> dict[str, Any]:
        return {"result": n.result.to_dict(), "prev": ref("trajectory_nodes", n.prev, node)}

    def segment(seg: Segment) -> dict[str, Any]:
        return {"start": seg.start.cpu(), "tracker": seg.tracker, "params": dataclasses.asdict(seg.params)}

    def tracking(st: State) -> int:
        if st.tracking is None or st.segment is None:
            return -1
        name = st.segment.tracker
        return ref("trackings", st.tracking, lambda t: {"tracker": name, "state": state_to_dict(t)})

    def encode_state(st: State) -> dict[str, Any]:
        return {
            "ws_opt": st.ws_opt.cpu(),
            "adam": None if st.adam is None else {k: v.cpu() for k, v in st.adam.items()},
            "handles": [list(p) for p in st.handles],
            "targets": [list(p) for p in st.targets],
            "origins": [list(p) for p in st.origins],
            "mask": ref("masks", st.mask, lambda m: m.cpu()),
            "segment": ref("segments", st.segment, segment),
            "tracking": tracking(st),
            "trajectory": ref("trajectory_nodes", st.trajectory, node),
        }

    G = session.generator
    payload = {
        "format": SESSION_FORMAT,
        "version": SESSION_VERSION,
        "model_id": session.model_id,
        "meta": session.meta,
        "generator": {"num_ws": G.num_ws, "w_dim": G.w_dim, "img_shape": list(session.image_shape)},
        "config": session.config.to_dict(),
        "settings": session.settings.to_dict(),
        "history_limit": session.history_limit,
        "history_bytes": session._history.max_bytes,
        "w0": session.w0.cpu(),
        "states": [encode_state(st) for st in states],
        "current": current,
        **tables,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    logger.debug("saved session to %s", path)
    return path


def _config_from_v1(d: dict[str, Any]) -> DragConfig:
    """A version-1 config dict → today's :class:`DragConfig` (tracker settings become the tracker's params)."""
    d = dict(d)
    tracker = d.get("tracker") or "nn"  # version 1 wrote None for "the model's default", which was always nn
    if tracker in _V1_REMOVED_TRACKERS:
        logger.warning(
            "the %r tracker was removed: this session continues with %r", tracker, _V1_REMOVED_TRACKERS[tracker]
        )
        tracker = _V1_REMOVED_TRACKERS[tracker]
    for key, neutral in _V1_REMOVED.items():
        value = d.pop(key, None)
        if value not in (None, neutral):
            logger.warning("%s was removed: this session continues with %s = %s", key, key, neutral)
    params = {}
    for key, (owners, name) in _V1_TRACKER_FIELDS.items():
        value = d.pop(key, None)
        if value is not None and tracker in owners:
            params[name] = value
    d["tracker"] = tracker
    d["tracker_params"] = params
    return DragConfig.from_dict(d)


def _read(path: Path, device: torch.device | str, *, mmap: bool = False) -> dict[str, Any]:
    """The file's top-level dict, read safely (``weights_only``), with its format checked."""
    if not path.is_file():
        raise InvalidInputError(f"session file not found: {path}")
    try:
        d = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except Exception as exc:
        raise InvalidInputError(f"{path}: not a readable dragkit session file ({describe_load_error(exc)})") from None
    if not isinstance(d, dict) or not isinstance(d.get("format"), str) or d["format"] != SESSION_FORMAT:
        raise InvalidInputError(f"{path}: not a dragkit session file")
    return d


def read_model_id(path: str | os.PathLike[str]) -> str:
    """The model id a session file was saved with (to load the right generator first); reads no tensor data."""
    path = Path(path)
    model_id = _read(path, "cpu", mmap=True).get("model_id")
    if not isinstance(model_id, str):
        raise InvalidInputError(f"{path}: not a dragkit session file (no model id)")
    return model_id


def load_session(cls: type[DragSession], path: str | os.PathLike[str], generator: Generator) -> DragSession:
    """Restore a session written by :func:`save_session` onto ``generator`` (which must match the saved model)."""
    path = Path(path)
    device = generator.w_avg.device
    d = _read(path, device)
    version = d.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in READABLE_VERSIONS:
        raise InvalidInputError(f"{path}: session version {version!r}, expected one of {list(READABLE_VERSIONS)}")
    try:
        return _restore(cls, d, version, path, generator, device)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError, OverflowError) as exc:
        reason = describe_load_error(exc)
        raise InvalidInputError(f"{path}: malformed dragkit session file ({type(exc).__name__}: {reason})") from None


def _plain_data(value: Any, where: str, depth: int = 0) -> None:
    """Raise ValueError unless ``value`` is JSON-like data (dicts, lists, strings, numbers, booleans, None)."""
    if depth > 32:
        raise ValueError(f"{where}: nested too deeply")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: a key of type {type(k).__name__}")
            _plain_data(v, where, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _plain_data(v, where, depth + 1)
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise ValueError(f"{where}: holds a {type(value).__name__} where plain data belongs")


def _restore(
    cls: type[DragSession],
    d: dict[str, Any],
    version: int,
    path: Path,
    generator: Generator,
    device: torch.device,
) -> DragSession:
    for key in ("generator", "config", "settings", "meta", "trajectory_nodes"):
        _plain_data(d.get(key), key)
    saved = d["generator"]
    actual = {"num_ws": generator.num_ws, "w_dim": generator.w_dim, "img_shape": list(generator.img_shape)}
    if saved != actual:
        raise InvalidInputError(f"{path}: saved for a generator with {saved}, got one with {actual}")
    config = DragConfig.from_dict(d["config"]) if version >= 2 else _config_from_v1(d["config"])
    limits = {"history_limit": d["history_limit"]}
    if "history_bytes" in d:
        limits["history_bytes"] = d["history_bytes"]
    meta = d.get("meta")  # absent from version 1
    session = cls(generator, d["w0"], config=config, model_id=str(d["model_id"]), meta=meta, **limits)
    # settings added after a file was written are absent from it; they resolve to the old behaviour
    ignore = {"tracker", "tracker_params"} if version == 1 else set()
    resolved = session.settings.to_dict()
    common = (set(resolved) & set(d["settings"])) - ignore
    if {k: resolved[k] for k in common} != {k: d["settings"][k] for k in common}:
        raise InvalidInputError(
            f"{path}: the generator's drag defaults differ from the saved ones "
            f"({resolved} vs {d['settings']}); is it the model {d['model_id']!r}?"
        )
    segments: list[Segment] = []
    trackings: list[tuple[str, Any]] = []
    rows = session._history.current.ws_opt
    channels = generator.feature_levels()[session.settings.feature_block].channels
    if version >= 2:
        for seg in d["segments"]:
            tracker = get_tracker(seg["tracker"])
            start = seg["start"]
            if not isinstance(start, torch.Tensor) or start.shape != rows.shape or not torch.isfinite(start).all():
                raise ValueError(f"a segment's starting rows are not a finite tensor of shape {list(rows.shape)}")
            segments.append(Segment(start.to(device), tracker.name, params_from_dict(tracker, seg["params"])))
        for t in d["trackings"]:
            tracker = get_tracker(t["tracker"])
            trackings.append((tracker.name, state_from_dict(tracker, t["state"], device)))
    nodes: list[TrajectoryNode] = []
    for n in d["trajectory_nodes"]:
        prev = None if n["prev"] < 0 else nodes[n["prev"]]
        nodes.append(TrajectoryNode(StepResult.from_dict(n["result"]), prev, 1 if prev is None else prev.length + 1))

    def pick(table: list[Any], i: int) -> Any:
        if not -1 <= i < len(table):
            raise IndexError(f"reference {i} into a table of {len(table)}")
        return None if i < 0 else table[i]

    def to_state(s: dict[str, Any]) -> State:
        segment: Segment | None = pick(segments, s["segment"]) if version >= 2 else None
        tracking = None
        if segment is not None:
            tracking = pick(trackings, s["tracking"])
            if tracking is None or tracking[0] != segment.tracker:
                raise ValueError(f"the {segment.tracker!r} segment has no state of its tracker")
            get_tracker(segment.tracker)(segment.params).check_state(tracking[1], len(s["handles"]), channels)
        mask = pick(d["masks"], s["mask"])
        if mask is not None:
            mask = check_mask(mask, session.image_shape, device)
        ws_opt, adam = s["ws_opt"], s["adam"]
        if not isinstance(ws_opt, torch.Tensor) or ws_opt.shape != rows.shape or not torch.isfinite(ws_opt).all():
            raise ValueError(f"optimised rows that are not a finite tensor of shape {list(rows.shape)}")
        if adam is not None:
            if not isinstance(adam, dict) or set(adam) != {"step", "exp_avg", "exp_avg_sq"}:
                raise ValueError("Adam state without exactly step, exp_avg and exp_avg_sq")
            if any(
                not isinstance(adam[k], torch.Tensor) or adam[k].shape != rows.shape for k in ("exp_avg", "exp_avg_sq")
            ):
                raise ValueError(f"Adam moments that are not tensors of shape {list(rows.shape)}")
            step = adam["step"]
            if not isinstance(step, torch.Tensor) or step.numel() != 1 or not 1 <= float(step) < 2**31:
                raise ValueError("an Adam step count that is not a one-element tensor ≥ 1")
        return State(
            ws_opt=ws_opt,
            adam=None if adam is None else {k: v.cpu() if k == "step" else v for k, v in adam.items()},
            handles=check_points("handles", _points(s["handles"]), session.image_shape),
            targets=check_points("targets", _points(s["targets"]), session.image_shape),
            origins=check_points("origins", _points(s["origins"]), session.image_shape),
            mask=mask,
            segment=segment,
            tracking=None if tracking is None else tracking[1],
            trajectory=pick(nodes, s["trajectory"]),
        )

    states = [to_state(s) for s in d["states"]]
    if not states:
        raise ValueError("no states")
    session._history.restore(states, int(d["current"]))
    logger.debug("loaded session from %s (step %d)", path, session.step_count)
    return session
