"""Studio sessions: one per browser tab, isolated, expiring when idle, all model work on one worker thread.

- :class:`StudioSession` — one tab's state: the image source (model, seed, ψ), the :class:`~dragkit.engine.DragConfig`
  for its next engine, the engine's :class:`~dragkit.engine.DragSession` (the source of truth for the drag
  options once it exists), the recorded frames (for video export) and the outbox of messages for its WebSocket.
  Its engine, frames and run fields are touched on the worker thread only.
- :class:`SessionManager` — creates, finds and expires sessions (LRU bound + idle timeout), turns client messages
  into worker jobs (each handled by :data:`dragkit.studio.handlers.HANDLERS`) and drives the drag loop (start,
  per-step frames, auto-stop on arrival or at ``max_steps``, stop on request).

The worker thread and the outbox live in :mod:`dragkit.studio.worker`, image encoding in
:mod:`dragkit.studio.codec`, the mask brush in :mod:`dragkit.studio.mask`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import io
import logging
import math
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import torch

from dragkit.engine import DragConfig, DragSession, StepFailedError, StepResult
from dragkit.engine.persist import read_model_id
from dragkit.errors import CheckpointError, DragkitError, InvalidInputError, ModelNotFoundError
from dragkit.files import scratch_dir
from dragkit.nn.images import to_uint8
from dragkit.studio import protocol as P
from dragkit.studio.codec import data_url, decode_jpeg, encode_jpeg, encode_png
from dragkit.studio.handlers import HANDLERS
from dragkit.studio.models import PHOTO_PREFIX, ModelStore
from dragkit.studio.worker import CLOSE, Outbox, Worker

if TYPE_CHECKING:
    from dragkit.engine import ResolvedConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

SCRATCH_LABEL = "dragkit-studio"  # temporary folders for session files and exports: dragkit-studio-{pid}-…

StopReason = Literal["arrived", "max_steps", "user", "error", "superseded", "degraded"]


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
    token: str | None = None  # access token every request must carry (query, cookie or header); None = no token
    photos_dir: Path | None = None  # where generators tuned on opened photos are kept; None = <cache>/photos
    max_photo_bytes: int = 40 << 20  # largest photo upload (pixels are capped by dragkit.invert.align)

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
        if self.token is not None and len(self.token) < 16:
            raise InvalidInputError("token: expected at least 16 characters")
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


#: Most frames in a video export (evenly spaced over the edit): a 300-step edit's GIF stays ~15 MB at 384 px.
EXPORT_FRAMES = 120


@dataclass(frozen=True)
class ExportFrames:
    """Frames of a video export: (JPEG bytes, handles, targets) in order, the mask to tint (or None)."""

    frames: list[tuple[bytes, list[tuple[float, float]], list[tuple[float, float]]]]
    mask: np.ndarray | None
    overlays: bool


def write_export(job: ExportFrames, fmt: Literal["mp4", "gif"], fps: float, cancel: threading.Event) -> bytes:
    """Encode ``job`` as an MP4 (512 px) or a GIF (384 px, longer side) and return the file's bytes. Runs off the
    drag worker; stops with a :class:`ProtocolError` ``cancelled`` as soon as ``cancel`` is set."""
    from dragkit.render import draw_points
    from dragkit.render.video import GIF_SIZE, VIDEO_SIZE, VideoWriter

    with scratch_dir(SCRATCH_LABEL) as tmp:
        writer = VideoWriter(Path(tmp) / f"drag.{fmt}", fps=fps, size=GIF_SIZE if fmt == "gif" else VIDEO_SIZE)
        with writer:
            for jpeg, handles, targets in job.frames:
                if cancel.is_set():
                    raise P.ProtocolError("cancelled", "the export was cancelled")
                img = decode_jpeg(jpeg)
                writer.append(draw_points(img, handles, targets, job.mask) if job.overlays else img)
        return writer.path.read_bytes()


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


@dataclass(frozen=True)
class PhotoOptions:
    """How the studio inverts an opened photo: FFHQ face alignment (else a centre crop) and the step counts."""

    align: bool = True
    steps_w: int = 60
    steps_wplus: int = 60
    steps_pti: int = 40


@dataclass(frozen=True)
class ImageSource:
    """Where the tab's image comes from: model id, seed in [0, 2³²), truncation ψ and, for a conditional model,
    the class label (None for unconditional ones)."""

    model: str
    seed: int
    psi: float
    class_idx: int | None = None


@dataclass
class StudioSession:
    """One browser tab. ``engine`` and the fields below it are touched on the worker thread only.

    ``source`` and ``config`` make the tab's next engine (a new image, the W/W+ toggle); while an engine exists,
    its ``config`` / ``settings`` are what the drag uses and what :meth:`snapshot` reports.
    """

    id: str
    source: ImageSource
    config: DragConfig
    frames: FrameStore
    jpeg_quality: int
    engine: DragSession | None = None
    running: bool = False
    run_id: int = 0  # bumped by every start/halt; a step job of an older run does nothing
    run_steps: int = 0  # steps taken in the current (or last) run
    last_run_steps: int = 0  # steps of the last run while nothing else happened since ("undo drag")
    stop_requested: bool = False  # set from the event loop at once; the next step job honours it
    new_images: int = 0  # new_image messages received; a queued one that is not the latest is skipped
    step_started: float = 0.0  # monotonic time the last drag step began (for max_fps pacing)
    closed: bool = False
    last_active: float = field(default_factory=time.monotonic)
    outbox: Outbox | None = None
    connections: int = 0
    inverting: bool = False  # a photo inversion for this tab is running

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

    @property
    def w_plus(self) -> bool:
        """Whether the drag optimises W+ (True) or one shared w (False)."""
        mode = self.engine.settings.w_mode if self.engine is not None else self.config.w_mode
        return mode == "w+"

    def snapshot(self, *, image: bool = False, mask: bool = False) -> dict[str, Any]:
        """The session state as a JSON-ready dict (``type`` "state"); ``image``/``mask`` add data URLs."""
        src = self.source
        eng = self.engine
        opts: ResolvedConfig | DragConfig = eng.settings if eng is not None else self.config
        out: dict[str, Any] = {
            "type": "state",
            "session": self.id,
            "model": src.model,
            "seed": src.seed,
            "psi": src.psi,
            "w_plus": self.w_plus,
            "lr": opts.lr,  # None without an engine: the model's default
            "tracker": opts.tracker,
            "max_steps": opts.max_steps,
            "mask_lambda": opts.mask_lambda,
            "latent_reg": opts.latent_reg,
            "guard": opts.guard,
            "running": self.running,
            "run_steps": self.run_steps,
            "last_run_steps": self.last_run_steps,
        }
        out["class_idx"] = src.class_idx
        out["c_dim"] = int(eng.generator.c_dim) if eng is not None else 0
        if eng is None:
            out.update(width=None, height=None, handles=[], targets=[], distances=[], step=0)
            out.update(can_undo=False, can_redo=False, stop_distance=None, has_mask=False, frames=0)
            return out
        st = eng.status()
        H, W = eng.image_shape
        out.update(
            width=W,
            height=H,
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

    def supersede(self) -> None:
        """End a running drag because another action replaces it, telling the tab (reason "superseded")."""
        stopped = self.halt("superseded")
        if stopped:
            self.emit(stopped)

    def new_engine(
        self, store: ModelStore, model: str, seed: int, psi: float, w_plus: bool, class_idx: int | None = None
    ) -> None:
        """A fresh engine on ``model``'s image of ``seed`` at truncation ``psi`` (and class ``class_idx``, 0 when
        None, for a conditional model; an unconditional one ignores a carried-over None), with the tab's config
        (W+ or W per ``w_plus``); nothing changes if the model cannot be loaded or the class is out of range."""
        G = store.get(model)
        if G.c_dim > 0 and class_idx is None:
            class_idx = 0
        config = self.config.replace(w_mode="w+" if w_plus else "w")
        engine = DragSession.from_seed(G, seed, psi=psi, config=config, model_id=model, class_idx=class_idx)
        self.engine = engine
        self.source = ImageSource(model, seed, psi, class_idx)
        self.config = config
        self.frames.clear()
        self.run_steps = self.last_run_steps = 0

    def point(self, p: P.Point, what: str) -> tuple[float, float]:
        H, W = self.require_engine().image_shape
        return P.check_point(p, W, H, what)


def trim_memory() -> None:
    """Return freed heap memory to the system (glibc's ``malloc_trim``); nothing where that does not exist."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


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
            source = ImageSource(c.network, c.seed, c.psi)
            config = DragConfig(lr=c.lr, w_mode="w+" if c.w_plus else "w", max_steps=c.max_steps)
            s = StudioSession(new_session_id(), source, config, FrameStore(c.frame_budget_bytes), c.jpeg_quality)
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
        self.worker.submit(lambda: self._release(s), key=s.id)  # after whatever of it is still queued
        log.info("session %s… dropped", s.id[:6])

    @staticmethod
    def _release(s: StudioSession) -> None:
        """Worker thread: let go of a dropped session's engine and frames, and give the memory back."""
        s.engine = None
        s.frames.clear()
        trim_memory()

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
        if isinstance(msg, P.NewImage):
            s.new_images += 1
            latest = s.new_images
            return self.worker.submit(lambda: self._run_command(s, msg, superseded=latest != s.new_images), key=s.id)
        return self.worker.submit(lambda: self._run_command(s, msg), key=s.id)

    async def command(self, s: StudioSession, msg: P.ClientMessage) -> dict[str, Any]:
        return await asyncio.wrap_future(self.submit(s, msg))

    def _run_command(self, s: StudioSession, msg: P.ClientMessage, superseded: bool = False) -> dict[str, Any]:
        """Carry out ``msg`` (worker thread); a ``new_image`` that a later one replaces only answers the state."""
        if s.closed:
            raise SessionNotFoundError()
        reply = {**s.snapshot(), "superseded": True} if superseded else self._apply(s, msg)
        if msg.id is not None:
            reply["reply_to"] = msg.id
        s.emit(reply)
        return reply

    def _apply(self, s: StudioSession, msg: P.ClientMessage) -> dict[str, Any]:
        """Carry out one client message on the worker thread; returns the reply."""
        handler = HANDLERS.get(type(msg))
        if handler is None:  # pragma: no cover - HANDLERS covers the protocol union
            raise P.ProtocolError("unknown_type", f"unhandled message {msg.type!r}")
        return handler(self, s, msg)

    # -- the drag loop ---------------------------------------------------------------------------------------
    def begin_drag(self, s: StudioSession) -> None:
        """Mark ``s`` running and queue the first step job of a new run (worker thread)."""
        s.stop_requested = False
        s.running = True
        s.run_id += 1
        s.run_steps = 0
        s.last_run_steps = 0
        run_id = s.run_id
        self.worker.submit(lambda: self._step_job(s, run_id), key=s.id)

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
        if result.degraded:  # the guard went back to the last sharp step: the stopped message shows it
            stopped = s.halt("degraded")
            if stopped is not None:
                s.emit({**stopped, "sharpness": result.sharpness})
            return
        s.run_steps += 1
        s.emit(self._frame_message(s, eng, result))
        if result.done:
            self._finish(s, "arrived")
        elif s.run_steps >= eng.settings.max_steps:
            self._finish(s, "max_steps")
        else:
            self._next_step(s, run_id)

    def _next_step(self, s: StudioSession, run_id: int) -> None:
        """Queue the run's next step behind whatever else is waiting (other tabs, edits), paced by ``max_fps``."""
        fps = self.config.max_fps
        delay = 0.0 if fps is None else s.step_started + 1.0 / fps - time.monotonic()
        if delay <= 0:
            self.worker.submit(lambda: self._step_job(s, run_id), key=s.id)
            return
        timer = threading.Timer(delay, lambda: self.worker.submit(lambda: self._step_job(s, run_id), key=s.id))
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
        self.worker.submit(lambda: self._finish(s, "user"), key=s.id)

    # -- files -----------------------------------------------------------------------------------------------
    def run_job(self, fn: Callable[[], T], key: str | None = None) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the worker, in ``key``'s turn (a session id; None: a turn of its own)."""
        return self.worker.submit(fn, key=key)

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
        with scratch_dir(SCRATCH_LABEL) as tmp:
            path = eng.save(Path(tmp) / "session.pt")
            return path.read_bytes()

    # -- real photos ----------------------------------------------------------------------------------------
    def invert_photo(
        self,
        s: StudioSession,
        photo: np.ndarray,
        name: str,
        photo_sha256: str,
        options: PhotoOptions,
        cancel: threading.Event,
    ) -> tuple[str, torch.Tensor]:
        """Invert ``photo`` (uint8 RGB) into the tab's current model and save the tuned generator as a ``photo:``
        model. Runs on the inversion thread (never the drag worker), sending ``invert_progress`` messages (with a
        JPEG preview every few steps) to the tab; ``cancel`` (the tab went away) stops it between steps. Returns
        (the new model id, the W+ latent)."""
        from dragkit.invert.pipeline import invert_photo, write_outputs
        from dragkit.invert.project import InvertConfig

        base_id = s.source.model
        G = self.run_job(lambda: self.models.get(base_id), key=s.id).result()
        config = InvertConfig(steps_w=options.steps_w, steps_wplus=options.steps_wplus, steps_pti=options.steps_pti)
        quality = self.config.jpeg_quality

        def progress(stage: str, step: int, steps: int, loss: float, preview: torch.Tensor | None) -> None:
            msg: dict[str, Any] = {"type": "invert_progress", "stage": stage, "step": step, "steps": steps}
            msg["loss"] = round(loss, 5)
            if preview is not None:
                msg["image"] = data_url(encode_jpeg(to_uint8(preview)[0], quality), "image/jpeg")
            s.emit(msg)

        s.emit({"type": "status", "message": f"inverting {name} into {base_id}…"})
        result = invert_photo(
            G, photo, config, align=options.align, pti=True, progress=progress, should_stop=cancel.is_set
        )
        if cancel.is_set():
            raise P.ProtocolError("cancelled", "the photo inversion was cancelled")
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).stem).strip("-._")[:40] or "photo"
        folder = f"{stem}-{photo_sha256[:10]}"
        out = self.models.photo_path(PHOTO_PREFIX + folder)
        with scratch_dir(SCRATCH_LABEL) as tmp:
            write_outputs(result, tmp / "out", base_id, self.models.sha256(base_id) or "unknown", photo_sha256)
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.exists():
                shutil.rmtree(out)
            shutil.move(str(tmp / "out" / "generator"), str(out))
            shutil.copy(tmp / "out" / "report.json", out / "report.json")
        self.models.forget(PHOTO_PREFIX + folder)  # the same photo opened again: its old tuned weights are gone
        return PHOTO_PREFIX + folder, result.ws

    def open_photo_model(self, s: StudioSession, model_id: str, ws: torch.Tensor) -> dict[str, Any]:
        """(Worker.) A fresh engine on the tuned generator ``model_id`` from the inverted latent ``ws``."""
        from dragkit.io.loader import model_sha256

        G = self.models.get(model_id)
        path = self.models.photo_path(model_id)
        meta = {"photo_model": model_id, "generator_path": str(path), "generator_sha256": model_sha256(path)}
        s.supersede()
        s.engine = DragSession(G, ws.to(G.w_avg.device), config=s.config, model_id=model_id, meta=meta)
        s.source = ImageSource(model_id, s.source.seed, s.source.psi, None)
        s.frames.clear()
        s.run_steps = s.last_run_steps = 0
        reply = s.snapshot(image=True, mask=True)
        s.emit(reply)
        return reply

    def load_session(self, s: StudioSession, path: Path) -> dict[str, Any]:
        """Replace the tab's engine session with the one in the session file ``path`` (an upload; any tab's saved
        session, same model list)."""
        try:
            model_id = read_model_id(path)
        except InvalidInputError as exc:
            raise P.ProtocolError("bad_session", str(exc).replace(str(path), "upload")) from None
        G = self.models.get(model_id)
        try:
            engine = DragSession.load(path, G)
        except InvalidInputError as exc:
            raise P.ProtocolError("bad_session", str(exc).replace(str(path), "upload")) from None
        # The file's drag options come along (lr, tracker, W vs W+); the steps per Start stay the tab's.
        settings = engine.settings
        if settings.max_steps != s.config.max_steps:
            engine.set_config(max_steps=s.config.max_steps)
        s.supersede()
        s.engine = engine
        s.frames.clear()
        s.run_steps = s.last_run_steps = 0
        meta = engine.meta  # the image the session was made from, when it says (sessions made from a seed do)
        seed, psi, label = meta.get("seed"), meta.get("psi"), meta.get("class")
        s.source = ImageSource(
            model_id,
            seed if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= P.MAX_SEED else s.source.seed,
            float(psi) if isinstance(psi, int | float) and not isinstance(psi, bool) else s.source.psi,
            label
            if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < engine.generator.c_dim
            else None,
        )
        s.config = s.config.replace(lr=settings.lr, tracker=settings.tracker, w_mode=settings.w_mode)
        reply = s.snapshot(image=True, mask=True)
        s.emit(reply)
        return reply

    def export_frames(self, s: StudioSession, overlays: bool) -> ExportFrames:
        """What a video export of the current trajectory needs, gathered on the worker: the recorded frames of at
        most ``EXPORT_FRAMES - 1`` evenly spaced steps, then the current image (encoding happens off the worker:
        :func:`write_export`)."""
        max_frames = EXPORT_FRAMES
        eng = s.require_engine()
        status = eng.status()
        recorded = [(r, s.frames.get(r.step)) for r in eng.trajectory]
        frames = [(jpeg, r.handles, r.targets) for r, jpeg in recorded if jpeg is not None]
        if not frames:
            raise conflict(
                "no_frames",
                "no recorded drag frames to export: drag first (frames of a loaded session's earlier steps "
                "are not stored)",
            )
        if len(frames) > max_frames - 1:
            n = len(frames)
            frames = [frames[round(i * (n - 1) / max(max_frames - 2, 1))] for i in range(max_frames - 1)]
        final = encode_jpeg(eng.image(), s.jpeg_quality)
        frames.append((final, status.handles, status.targets))
        return ExportFrames(frames, eng.mask if overlays else None, overlays)
