"""The studio's single model worker and the per-tab outbox.

- :class:`Worker` — one daemon thread that runs every job touching a generator, fair between tabs (round-robin
  over the tabs with waiting jobs, a bounded queue per tab). Drags are cut into one-step jobs that re-queue
  themselves, so two tabs dragging at once alternate step by step and never run on the model at the same time; a
  point edit sent during a drag lands between two steps.
- :class:`Outbox` — the messages waiting to be sent on one tab's WebSocket; filled from any thread, drained by
  the event loop. :data:`CLOSE` is the sentinel that closes the WebSocket.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from dragkit.studio.protocol import ProtocolError

T = TypeVar("T")

CLOSE: dict[str, Any] = {"type": "__close__"}  # outbox sentinel: close the WebSocket (compared by identity)


class Worker:
    """One daemon thread running every job that touches a model; ``submit`` returns a concurrent Future.

    Fair between keys (a tab's session id): the jobs of one key run in the order they came, and the keys with
    waiting jobs take turns, so a tab that queues many jobs delays another tab's next job by at most one job.
    A key may have at most ``max_pending`` jobs waiting; more are refused at once with a ``busy``
    :class:`~dragkit.studio.protocol.ProtocolError` (the flooding tab is told, the others are not slowed down).
    """

    def __init__(self, name: str = "dragkit-studio-worker", max_pending: int = 64) -> None:
        self.max_pending = max_pending
        self._cond = threading.Condition()
        self._queues: OrderedDict[Hashable, deque[tuple[concurrent.futures.Future[Any], Callable[[], Any]]]] = (
            OrderedDict()
        )
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], key: Hashable = None) -> concurrent.futures.Future[T]:
        """Queue ``fn`` behind the earlier jobs of ``key``."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            if self._closed:
                fut.set_exception(RuntimeError("the studio worker is shut down"))
                return fut
            waiting = self._queues.setdefault(key, deque())
            if len(waiting) >= self.max_pending:
                fut.set_exception(
                    ProtocolError("busy", f"{len(waiting)} requests of this tab are waiting: slow down and retry")
                )
                return fut
            waiting.append((fut, fn))
            self._cond.notify()
        return fut

    def _next(self) -> tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None:
        """The next job: the first of the key whose turn it is (that key then goes to the back); None when closed
        and everything queued has run."""
        with self._cond:
            while not self._queues:
                if self._closed:
                    return None
                self._cond.wait()
            key, waiting = self._queues.popitem(last=False)
            job = waiting.popleft()
            if waiting:
                self._queues[key] = waiting
            return job

    def _loop(self) -> None:
        while (job := self._next()) is not None:
            fut, fn = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def close(self, timeout: float = 10.0) -> None:
        """Finish the jobs already queued, then stop the thread."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)


class Outbox:
    """Messages waiting to be sent on a session's WebSocket; thread-safe ``put``.

    At most one frame waits: a new frame replaces the one still waiting (it is taken out of the queue, and the new
    one goes to the end), so a tab is never sent a picture older than one it could already have, and a slow client
    costs the drag nothing. Every frame carries the whole state it shows (step, handles, …), so nothing is lost by
    skipping one. Other messages are never dropped or reordered.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[dict[str, Any]] = deque()
        self._event = asyncio.Event()
        self._frame: dict[str, Any] | None = None  # the frame waiting in ``_items``, if any
        self.dropped_frames = 0

    def put(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is listening any more
            self._loop.call_soon_threadsafe(self._put, msg)

    def _put(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "frame":
            if self._frame is not None:
                self._items.remove(self._frame)
                self.dropped_frames += 1
            self._frame = msg
        self._items.append(msg)
        self._event.set()

    async def get(self) -> dict[str, Any]:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        msg = self._items.popleft()
        if msg is self._frame:
            self._frame = None
        return msg
