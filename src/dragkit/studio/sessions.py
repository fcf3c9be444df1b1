"""Studio sessions: one per browser tab, isolated, expiring when idle, all model work on one worker thread.

- :class:`Worker` — a single thread that runs every job touching a generator, first come first served. Drags are
  cut into one-step jobs that re-queue themselves, so two tabs dragging at once alternate step by step and never
  run on the model at the same time; a point edit sent during a drag lands between two steps.
- :class:`StudioSession` — one tab's state: the engine's :class:`~dragkit.engine.DragSession`, the drag options,
  the recorded frames (for video export) and the outbox of messages for its WebSocket. Every method named
  ``do_*`` runs on the worker thread only.
- :class:`SessionManager` — creates, finds and expires sessions (LRU bound + idle timeout), turns client messages
  into worker jobs and drives the drag loop (start, per-step frames, auto-stop on arrival or at ``max_steps``,
  stop on request).

Frames travel as JPEG data URLs inside JSON messages; the mask as a greyscale PNG data URL (255 = movable).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import itertools
import logging
import math
import queue
import secrets
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np
from PIL import Image

from dragkit.engine import DragConfig, DragSession, StepFailedError, StepResult
from dragkit.engine.config import Tracker
from dragkit.errors import CheckpointError, DragkitError, InvalidInputError, ModelNotFoundError
from dragkit.studio import protocol as P
from dragkit.studio.models import ModelStore

log = logging.getLogger(__name__)

T = TypeVar("T")

StopReason = Literal["arrived", "max_steps", "user", "error", "superseded"]


@dataclass(frozen=True)
class StudioConfig:
    """Everything :func:`dragkit.studio.server.create_app` needs besides the generators."""

    network: str = "default"  # model id a new tab starts on
    models_dir: Path | None = None  # folder whose checkpoints the model picker lists
    device: str = "cpu"  # torch device for loaded checkpoints
    seed: int = 0  # first image of a new tab
    psi: float = 0.7  # truncation of that image
    w_plus: bool = True  # optimise W+ (True) or one w repeated (False)
    lr: float | None = None  # Adam lr; None = the model's drag_hints().lr
    max_steps: int = 300  # steps per Start before stopping (the paper's evaluation budget)
    idle_timeout_s: float = 30 * 60  # sessions untouched this long are dropped
    max_sessions: int = 16  # most sessions kept (idle disconnected ones are evicted first)
    max_loaded_models: int = 2  # registry/file models kept in memory at once
    max_message_bytes: int = 1 << 20  # largest client message (WebSocket frame or command body)
    max_upload_bytes: int = 256 << 20  # largest session file upload
    frame_budget_bytes: int = 128 << 20  # recorded JPEG frames kept per session for video export
    jpeg_quality: int = 90  # live frames and recorded frames
    max_fps: float | None = None  # cap on drag steps (= frames) per second per tab; None = as fast as it goes
    allowed_hosts: tuple[str, ...] | None = None  # Host header allow-list (DNS-rebinding guard); None = any

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= P.MAX_SEED:
            raise InvalidInputError(f"seed: expected an int in [0, {P.MAX_SEED}], got {self.seed!r}")
        if not (math.isfinite(self.psi) and P.PSI_RANGE[0] <= self.psi <= P.PSI_RANGE[1]):
            raise InvalidInputError(f"psi: expected a number in {list(P.PSI_RANGE)}, got {self.psi!r}")
        if self.lr is not None and not (P.LR_RANGE[0] <= self.lr <= P.LR_RANGE[1]):
            raise InvalidInputError(f"lr: expected a number in {list(P.LR_RANGE)}, got {self.lr!r}")
        if not 1 <= self.max_steps <= P.MAX_STEPS:
            raise InvalidInputError(f"max_steps: expected an int in [1, {P.MAX_STEPS}], got {self.max_steps!r}")
        for name in ("idle_timeout_s", "max_sessions", "max_message_bytes", "max_upload_bytes"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name}: expected a positive number, got {getattr(self, name)!r}")
        if self.max_fps is not None and not (math.isfinite(self.max_fps) and self.max_fps > 0):
            raise InvalidInputError(f"max_fps: expected None or a positive number, got {self.max_fps!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise InvalidInputError(f"jpeg_quality: expected an int in [1, 100], got {self.jpeg_quality!r}")


# -- errors ----------------------------------------------------------------------------------------------------


class SessionNotFoundError(P.ProtocolError):
    def __init__(self, message: str = "no such session (it may have expired): reload the page") -> None:
        super().__init__("no_session", message)


class TooManySessionsError(P.ProtocolError):
    def __init__(self, limit: int) -> None:
        super().__init__("busy", f"the studio already holds {limit} active sessions; close a tab and retry")


def conflict(code: str, message: str) -> P.ProtocolError:
    """An action that is well-formed but impossible in the session's current state."""
    return P.ProtocolError(code, message)


def error_code(exc: BaseException) -> str:
    """Machine-readable code of an exception sent to the client."""
    if isinstance(exc, P.ProtocolError):
        return exc.code
    if isinstance(exc, StepFailedError):
        return "step_failed"
    if isinstance(exc, ModelNotFoundError):
        return "unknown_model"
    if isinstance(exc, CheckpointError):
        return "bad_checkpoint"
    if isinstance(exc, InvalidInputError):
        return "invalid"
    if isinstance(exc, DragkitError):
        return "error"
    return "internal"


# -- encoding --------------------------------------------------------------------------------------------------


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    """uint8 [H, W, 3] → JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_png(img: np.ndarray) -> bytes:
    """uint8 [H, W, 3] or [H, W] → PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def paint_stroke(mask: np.ndarray, points: list[tuple[float, float]], radius: float, value: bool) -> np.ndarray:
    """A copy of bool ``mask`` [H, W] where every pixel whose centre lies within ``radius`` of the polyline
    ``points`` (x, y; pixel centres at integers) is set to ``value`` — discs joined by capsules.

    Raises :class:`ProtocolError` ("too_large") when the stroke's segments would cover more than 64 images' worth
    of pixels, which no hand-drawn stroke does.
    """
    H, W = mask.shape
    out = mask.copy()
    r = float(radius)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    segments = list(itertools.pairwise(pts)) if len(pts) > 1 else [(pts[0], pts[0])]
    boxes = []
    for a, b in segments:
        x0, x1 = max(0, math.floor(min(a[0], b[0]) - r)), min(W - 1, math.ceil(max(a[0], b[0]) + r))
        y0, y1 = max(0, math.floor(min(a[1], b[1]) - r)), min(H - 1, math.ceil(max(a[1], b[1]) + r))
        if x0 <= x1 and y0 <= y1:
            boxes.append((a, b, x0, x1, y0, y1))
    if sum((x1 - x0 + 1) * (y1 - y0 + 1) for _, _, x0, x1, y0, y1 in boxes) > 64 * H * W:
        raise P.ProtocolError("too_large", "mask stroke too large: paint it in smaller strokes")
    for a, b, x0, x1, y0, y1 in boxes:
        ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float64)
        d = b - a
        length2 = float(d @ d)
        t = 0.0 if length2 == 0 else np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / length2, 0.0, 1.0)
        dist2 = (xs - (a[0] + t * d[0])) ** 2 + (ys - (a[1] + t * d[1])) ** 2
        out[y0 : y1 + 1, x0 : x1 + 1][dist2 <= r * r] = value
    return out


def _decimate(points: list[tuple[float, float]], spacing: float) -> list[tuple[float, float]]:
    """Drop stroke samples closer than ``spacing`` to the last kept one (the painted shape barely changes)."""
    kept = [points[0]]
    for p in points[1:]:
        if math.hypot(p[0] - kept[-1][0], p[1] - kept[-1][1]) >= spacing:
            kept.append(p)
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    return kept


# -- the worker ------------------------------------------------------------------------------------------------


class Worker:
    """One daemon thread running submitted callables in order; ``submit`` returns a concurrent Future."""

    def __init__(self, name: str = "dragkit-studio-worker") -> None:
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._closed:
            fut.set_exception(RuntimeError("the studio worker is shut down"))
            return fut
        self._queue.put((fut, fn))
        return fut

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            fut, fn = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def close(self, timeout: float = 10.0) -> None:
        """Finish the jobs already queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)


# -- per-tab state ---------------------------------------------------------------------------------------------

CLOSE = {"type": "__close__"}  # outbox sentinel: close the WebSocket


class Outbox:
    """Messages waiting to be sent on a session's WebSocket; thread-safe ``put``.

    Up to ``max_pending_frames`` frames may wait; beyond that a new frame replaces the newest waiting one, so a
    slow client sees the latest picture rather than an ever-growing backlog. Other messages are never dropped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_pending_frames: int = 4) -> None:
        self._loop = loop
        self._items: deque[dict[str, Any]] = deque()
        self._event = asyncio.Event()
        self.max_pending_frames = max_pending_frames
        self._pending_frames = 0
        self.dropped_frames = 0

    def put(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is listening any more
            self._loop.call_soon_threadsafe(self._put, msg)

    def _put(self, msg: dict[str, Any]) -> None:
        is_frame = msg.get("type") == "frame"
        if (
            is_frame
            and self._pending_frames >= self.max_pending_frames
            and self._items
            and self._items[-1].get("type") == "frame"
        ):
            self._items[-1] = msg
            self.dropped_frames += 1
        else:
            self._items.append(msg)
            self._pending_frames += is_frame
        self._event.set()

    async def get(self) -> dict[str, Any]:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        msg = self._items.popleft()
        self._pending_frames -= msg.get("type") == "frame"
        return msg


class FrameStore:
    """JPEG frames recorded during drags, keyed by engine step (the frame of step s shows the latent the step
    started from). Bounded by ``budget`` bytes: the oldest frames go first."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._frames: OrderedDict[int, bytes] = OrderedDict()
        self._bytes = 0

    def add(self, step: int, jpeg: bytes) -> None:
        # A new step s means history branched at s - 1: frames of later steps belong to an undone future.
        for s in [s for s in self._frames if s >= step]:
            self._bytes -= len(self._frames.pop(s))
        self._frames[step] = jpeg
        self._bytes += len(jpeg)
        while self._bytes > self.budget and len(self._frames) > 1:
            _, old = self._frames.popitem(last=False)
            self._bytes -= len(old)

    def get(self, step: int) -> bytes | None:
        return self._frames.get(step)

    def clear(self) -> None:
        self._frames.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._frames)


@dataclass
class DragOptions:
    """The tab's drag controls."""

    model: str
    seed: int
    psi: float
    w_plus: bool
    lr: float | None
    max_steps: int
    tracker: str | None = None  # None: the model's drag_hints().tracker


@dataclass
class StudioSession:
    """One browser tab. Fields below ``engine`` are touched by the worker thread only (the ``do_*`` methods)."""

    id: str
    options: DragOptions
    frames: FrameStore
    jpeg_quality: int
    engine: DragSession | None = None
    running: bool = False
    run_id: int = 0  # bumped by every start/halt; a step job of an older run does nothing
    run_steps: int = 0  # steps taken in the current (or last) run
    last_run_steps: int = 0  # steps of the last run while nothing else happened since ("undo drag")
    stop_requested: bool = False  # set from the event loop at once; the next step job honours it
    step_started: float = 0.0  # monotonic time the last drag step began (for max_fps pacing)
    closed: bool = False
    last_active: float = field(default_factory=time.monotonic)
    outbox: Outbox | None = None
    connections: int = 0

    # -- messages ------------------------------------------------------------------------------------------
    def emit(self, msg: dict[str, Any]) -> None:
        outbox = self.outbox
        if outbox is not None:
            outbox.put(msg)

    def touch(self) -> None:
        self.last_active = time.monotonic()

    def require_engine(self) -> DragSession:
        if self.engine is None:
            raise conflict("no_image", "no image yet: choose a model and a seed first")
        return self.engine

    def snapshot(self, *, image: bool = False, mask: bool = False) -> dict[str, Any]:
        """The session state as a JSON-ready dict (``type`` "state"); ``image``/``mask`` add data URLs."""
        o = self.options
        out: dict[str, Any] = {
            "type": "state",
            "session": self.id,
            "model": o.model,
            "seed": o.seed,
            "psi": o.psi,
            "w_plus": o.w_plus,
            "lr": o.lr,
            "tracker": o.tracker,
            "max_steps": o.max_steps,
            "running": self.running,
            "run_steps": self.run_steps,
            "last_run_steps": self.last_run_steps,
        }
        eng = self.engine
        if eng is None:
            out.update(width=None, height=None, handles=[], targets=[], distances=[], step=0)
            out.update(can_undo=False, can_redo=False, stop_distance=None, has_mask=False, frames=0)
            return out
        st = eng.status()
        H, W = eng.image_shape
        out.update(
            width=W,
            height=H,
            lr=eng.settings.lr,
            tracker=eng.settings.tracker,
            handles=[list(p) for p in st.handles],
            targets=[list(p) for p in st.targets],
            distances=list(st.distances),
            step=st.step,
            done=st.done,
            stop_distance=eng.stop_distance(),
            can_undo=eng.can_undo,
            can_redo=eng.can_redo,
            frames=sum(1 for s in range(1, st.step + 1) if self.frames.get(s) is not None),
        )
        m = eng.mask
        out["has_mask"] = m is not None
        if image:
            out["image"] = data_url(encode_jpeg(eng.image(), self.jpeg_quality), "image/jpeg")
        if mask:
            out["mask"] = None if m is None else data_url(encode_png(m.astype(np.uint8) * 255), "image/png")
        return out

    # -- actions (worker thread) ------------------------------------------------------------------------------
    def halt(self, reason: StopReason) -> dict[str, Any] | None:
        """End a running drag (if any); returns the ``stopped`` message to send."""
        self.stop_requested = False
        if not self.running:
            return None
        self.running = False
        self.run_id += 1
        self.last_run_steps = self.run_steps
        msg = self.snapshot(image=True)
        msg.update(type="stopped", reason=reason)
        return msg

    def new_engine(self, store: ModelStore, model: str, seed: int, psi: float, w_plus: bool) -> None:
        G = store.get(model)
        config = DragConfig(
            lr=self.options.lr,
            tracker=cast(Tracker | None, self.options.tracker),
            w_mode="w+" if w_plus else "w",
            max_steps=self.options.max_steps,
        )
        engine = DragSession.from_seed(G, seed, psi=psi, config=config, model_id=model)
        self.engine = engine
        self.options.model, self.options.seed, self.options.psi, self.options.w_plus = model, seed, psi, w_plus
        self.frames.clear()
        self.run_steps = self.last_run_steps = 0

    def point(self, p: P.Point, what: str) -> tuple[float, float]:
        H, W = self.require_engine().image_shape
        return P.check_point(p, W, H, what)


def new_session_id() -> str:
    return secrets.token_urlsafe(18)


# -- the manager -----------------------------------------------------------------------------------------------


class SessionManager:
    """All sessions of one studio; owns the worker, the model store and the drag loop."""

    def __init__(self, config: StudioConfig, models: ModelStore) -> None:
        self.config = config
        self.models = models
        self.worker = Worker()
        self._sessions: OrderedDict[str, StudioSession] = OrderedDict()
        self._lock = threading.Lock()

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def create(self) -> StudioSession:
        """A new empty session (its first image comes from a ``new_image`` job); evicts idle ones if full."""
        c = self.config
        with self._lock:
            if len(self._sessions) >= c.max_sessions:
                idle = [s for s in self._sessions.values() if s.connections == 0 and not s.running]
                if not idle:
                    raise TooManySessionsError(c.max_sessions)
                victim = min(idle, key=lambda s: s.last_active)
                self._drop(victim)
            options = DragOptions(c.network, c.seed, c.psi, c.w_plus, c.lr, c.max_steps)
            s = StudioSession(new_session_id(), options, FrameStore(c.frame_budget_bytes), c.jpeg_quality)
            self._sessions[s.id] = s
        log.info("session %s… created (%d open)", s.id[:6], len(self._sessions))
        return s

    def get(self, sid: str) -> StudioSession:
        with self._lock:
            s = self._sessions.get(sid)
        if s is None:
            raise SessionNotFoundError()
        s.touch()
        return s

    def __len__(self) -> int:
        return len(self._sessions)

    def remove(self, sid: str) -> None:
        """Drop a session now (its tab, if any, is told and disconnected)."""
        with self._lock:
            s = self._sessions.get(sid)
            if s is not None:
                self._drop(s)

    def _drop(self, s: StudioSession) -> None:
        self._sessions.pop(s.id, None)
        s.closed = True
        s.run_id += 1
        s.emit({"type": "error", "code": "expired", "message": "this session expired; reload the page"})
        s.emit(CLOSE)
        log.info("session %s… dropped", s.id[:6])

    def expire(self, now: float | None = None) -> list[str]:
        """Drop sessions idle for longer than ``idle_timeout_s``; returns their ids."""
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [s for s in self._sessions.values() if now - s.last_active > self.config.idle_timeout_s]
            for s in old:
                self._drop(s)
        return [s.id for s in old]

    def close(self) -> None:
        with self._lock:
            for s in list(self._sessions.values()):
                s.closed = True
                s.run_id += 1
            self._sessions.clear()
        self.worker.close()

    # -- commands --------------------------------------------------------------------------------------------
    def submit(self, s: StudioSession, msg: P.ClientMessage) -> concurrent.futures.Future[dict[str, Any]]:
        """Queue ``msg`` for the worker; the future's result is the reply (also sent to the tab's outbox)."""
        s.touch()
        if isinstance(msg, P.Stop):
            s.stop_requested = True  # honoured by the very next step job, ahead of the queue
        return self.worker.submit(lambda: self._run_command(s, msg))

    async def command(self, s: StudioSession, msg: P.ClientMessage) -> dict[str, Any]:
        return await asyncio.wrap_future(self.submit(s, msg))

    def _run_command(self, s: StudioSession, msg: P.ClientMessage) -> dict[str, Any]:
        if s.closed:
            raise SessionNotFoundError()
        reply = self._apply(s, msg)
        if msg.id is not None:
            reply["reply_to"] = msg.id
        s.emit(reply)
        return reply

    def _apply(self, s: StudioSession, msg: P.ClientMessage) -> dict[str, Any]:
        """Carry out one client message on the worker thread; returns the reply."""
        if isinstance(msg, P.NewImage):
            stopped = s.halt("superseded")
            if stopped:
                s.emit(stopped)
            model = msg.model if msg.model is not None else s.options.model
            w_plus = msg.w_plus if msg.w_plus is not None else s.options.w_plus
            s.emit({"type": "status", "message": f"loading {model}…"})
            s.new_engine(self.models, model, msg.seed, msg.psi, w_plus)
            return s.snapshot(image=True, mask=True)
        if isinstance(msg, P.SetConfig):
            return self._set_config(s, msg)
        if isinstance(msg, P.Start):
            return self._start(s)
        if isinstance(msg, P.Stop):
            stopped = s.halt("user")
            return stopped if stopped is not None else s.snapshot()

        eng = s.require_engine()
        image = mask = False
        if isinstance(msg, P.AddPoint):
            if len(eng.handles) >= P.MAX_POINTS:
                raise conflict("too_many_points", f"at most {P.MAX_POINTS} points")
            eng.add_point(s.point(msg.handle, "handle"), s.point(msg.target, "target"))
        elif isinstance(msg, P.MovePoint):
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
        elif isinstance(msg, P.RemovePoint):
            if not msg.index < len(eng.handles):
                raise P.ProtocolError("out_of_range", f"no point {msg.index}: there are {len(eng.handles)}")
            eng.remove_point(msg.index)
        elif isinstance(msg, P.ClearPoints):
            eng.clear_points()
        elif isinstance(msg, P.MaskStroke):
            self._mask_stroke(s, eng, msg)
            mask = True
        elif isinstance(msg, P.MaskClear):
            eng.set_mask(None)
            mask = True
        elif isinstance(msg, P.Undo | P.Redo | P.Reset):
            stopped = s.halt("superseded")
            if stopped:
                s.emit(stopped)
            if isinstance(msg, P.Reset):
                eng.reset()
            else:
                self._undo_redo(s, eng, msg)
            image = mask = True
        else:  # pragma: no cover - the protocol union is exhaustive
            raise P.ProtocolError("unknown_type", f"unhandled message {msg.type!r}")
        s.last_run_steps = 0
        return s.snapshot(image=image, mask=mask)

    def _set_config(self, s: StudioSession, msg: P.SetConfig) -> dict[str, Any]:
        o = s.options
        if msg.max_steps is not None:
            o.max_steps = msg.max_steps
        if msg.lr is not None:
            o.lr = msg.lr
            if s.engine is not None:
                s.engine.set_lr(msg.lr)
        if msg.tracker is not None:
            o.tracker = msg.tracker
            if s.engine is not None:
                s.engine.set_tracker(msg.tracker)  # the drag goes on from here with fresh templates
        if msg.w_plus is not None and msg.w_plus != o.w_plus:
            # W vs W+ changes what is optimised: like the official GUI, start again from the seed's latent,
            # keeping the points and the mask.
            stopped = s.halt("superseded")
            if stopped:
                s.emit(stopped)
            old = s.engine
            o.w_plus = msg.w_plus
            if old is not None:
                origins = old.status()
                mask = old.mask
                s.new_engine(self.models, o.model, o.seed, o.psi, o.w_plus)
                eng = s.require_engine()
                if origins.handles:
                    eng.set_points(origins.handles, origins.targets)
                if mask is not None:
                    eng.set_mask(mask)
                return s.snapshot(image=True, mask=True)
        return s.snapshot()

    def _undo_redo(self, s: StudioSession, eng: DragSession, msg: P.Undo | P.Redo) -> None:
        if isinstance(msg, P.Undo) and msg.drag:
            count = s.last_run_steps
            if count == 0:
                raise conflict("nothing_to_undo", "no drag to undo as a whole: the last action was not a drag")
        else:
            count = msg.count
        undo = isinstance(msg, P.Undo)
        available = eng.can_undo if undo else eng.can_redo
        if not available:
            raise conflict(f"nothing_to_{msg.type}", f"nothing to {msg.type}")
        for _ in range(count):
            if not (eng.can_undo if undo else eng.can_redo):
                break
            (eng.undo if undo else eng.redo)()
        s.last_run_steps = 0

    def _mask_stroke(self, s: StudioSession, eng: DragSession, msg: P.MaskStroke) -> None:
        H, W = eng.image_shape
        if msg.radius > max(H, W):
            raise P.ProtocolError("out_of_range", f"radius {msg.radius:g} exceeds the image size {W}×{H}")
        points = [s.point(p, "stroke point") for p in msg.points]
        points = _decimate(points, max(0.5, msg.radius / 8))
        movable = msg.mode == "movable"
        current = eng.mask
        if current is None:  # the first stroke decides what the unpainted rest is
            current = np.full((H, W), not movable, dtype=bool)
        eng.set_mask(paint_stroke(current, points, msg.radius, movable))

    # -- the drag loop ---------------------------------------------------------------------------------------
    def _start(self, s: StudioSession) -> dict[str, Any]:
        eng = s.require_engine()
        if s.running:
            return s.snapshot()
        if not eng.handles:
            raise conflict("no_points", "add at least one handle and target before starting")
        s.stop_requested = False
        s.running = True
        s.run_id += 1
        s.run_steps = 0
        s.last_run_steps = 0
        run_id = s.run_id
        self.worker.submit(lambda: self._step_job(s, run_id))
        return s.snapshot()

    def _step_job(self, s: StudioSession, run_id: int) -> None:
        if s.closed or run_id != s.run_id or not s.running:
            return
        if s.stop_requested:
            self._finish(s, "user")
            return
        eng = s.require_engine()
        s.step_started = time.monotonic()
        try:
            result = eng.step(render=True)
        except DragkitError as exc:
            s.emit({"type": "error", "code": error_code(exc), "message": str(exc)})
            self._finish(s, "error")
            return
        except Exception as exc:
            log.exception("drag step failed")
            s.emit({"type": "error", "code": "internal", "message": f"internal error: {exc}"})
            self._finish(s, "error")
            return
        s.touch()
        s.run_steps += 1
        s.emit(self._frame_message(s, eng, result))
        if result.done:
            self._finish(s, "arrived")
        elif s.run_steps >= s.options.max_steps:
            self._finish(s, "max_steps")
        else:
            self._next_step(s, run_id)

    def _next_step(self, s: StudioSession, run_id: int) -> None:
        """Queue the run's next step behind whatever else is waiting (other tabs, edits), paced by ``max_fps``."""
        fps = self.config.max_fps
        delay = 0.0 if fps is None else s.step_started + 1.0 / fps - time.monotonic()
        if delay <= 0:
            self.worker.submit(lambda: self._step_job(s, run_id))
            return
        timer = threading.Timer(delay, lambda: self.worker.submit(lambda: self._step_job(s, run_id)))
        timer.daemon = True
        timer.start()

    def _frame_message(self, s: StudioSession, eng: DragSession, r: StepResult) -> dict[str, Any]:
        assert r.frame is not None
        jpeg = encode_jpeg(r.frame, s.jpeg_quality)
        s.frames.add(r.step, jpeg)
        return {
            "type": "frame",
            **r.to_dict(),
            "run_steps": s.run_steps,
            "can_undo": eng.can_undo,
            "can_redo": eng.can_redo,
            "image": data_url(jpeg, "image/jpeg"),
        }

    def _finish(self, s: StudioSession, reason: StopReason) -> None:
        msg = s.halt(reason)
        if msg is not None:
            s.emit(msg)

    def request_stop(self, s: StudioSession) -> None:
        """Stop a running drag as soon as possible (used when a tab disconnects)."""
        s.stop_requested = True
        self.worker.submit(lambda: self._finish(s, "user"))

    # -- files -----------------------------------------------------------------------------------------------
    def run_job(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        return self.worker.submit(fn)

    def image_png(self, s: StudioSession) -> bytes:
        return encode_png(s.require_engine().image())

    def latent_pt(self, s: StudioSession) -> bytes:
        """The current W+ latent as ``torch.save`` of a plain tensor [1, num_ws, w_dim] (like ``dragkit drag``)."""
        import torch

        buf = io.BytesIO()
        torch.save(s.require_engine().ws.cpu().clone(), buf)
        return buf.getvalue()

    def session_bytes(self, s: StudioSession) -> bytes:
        eng = s.require_engine()
        with tempfile.TemporaryDirectory(prefix="dragkit-studio-") as tmp:
            path = eng.save(Path(tmp) / "session.pt")
            return path.read_bytes()

    def load_session(self, s: StudioSession, data: bytes) -> dict[str, Any]:
        """Replace the tab's engine session with one saved by ``session_bytes`` (any tab, same model list)."""
        import torch

        with tempfile.TemporaryDirectory(prefix="dragkit-studio-") as tmp:
            path = Path(tmp) / "session.pt"
            path.write_bytes(data)
            try:
                head = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise P.ProtocolError("bad_session", f"not a dragkit session file ({exc})") from None
            if not isinstance(head, dict) or not isinstance(head.get("model_id"), str):
                raise P.ProtocolError("bad_session", "not a dragkit session file (no model id)")
            model_id = head["model_id"]
            del head
            G = self.models.get(model_id)
            try:
                engine = DragSession.load(path, G)
            except InvalidInputError as exc:
                raise P.ProtocolError("bad_session", str(exc).replace(str(path), "upload")) from None
        stopped = s.halt("superseded")
        if stopped:
            s.emit(stopped)
        s.engine = engine
        s.frames.clear()
        s.run_steps = s.last_run_steps = 0
        o = s.options
        o.model = model_id
        o.w_plus = engine.settings.w_mode == "w+"
        o.lr = engine.settings.lr
        o.tracker = engine.settings.tracker
        reply = s.snapshot(image=True, mask=True)
        s.emit(reply)
        return reply

    def export_video(self, s: StudioSession, fmt: Literal["mp4", "gif"], overlays: bool, fps: float) -> bytes:
        """The current trajectory as a video: the recorded frame of every step, then the current image."""
        from dragkit.render import draw_points, write_video

        eng = s.require_engine()
        status = eng.status()
        trajectory = eng.trajectory
        mask = eng.mask
        frames: list[np.ndarray] = []
        for r in trajectory:
            jpeg = s.frames.get(r.step)
            if jpeg is None:
                continue
            img = decode_jpeg(jpeg)
            frames.append(draw_points(img, r.handles, r.targets, mask) if overlays else img)
        if not frames:
            raise conflict(
                "no_frames",
                "no recorded drag frames to export: drag first (frames of a loaded session's earlier steps "
                "are not stored)",
            )
        final = eng.image()
        frames.append(draw_points(final, status.handles, status.targets, mask) if overlays else final)
        with tempfile.TemporaryDirectory(prefix="dragkit-studio-") as tmp:
            path = write_video(frames, Path(tmp) / f"drag.{fmt}", fps=fps)
            return path.read_bytes()
