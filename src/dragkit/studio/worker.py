"""The studio's single model worker and the per-tab outbox.

- :class:`Worker` — one daemon thread that runs every job touching a generator, first come first served. Drags
  are cut into one-step jobs that re-queue themselves, so two tabs dragging at once alternate step by step and
  never run on the model at the same time; a point edit sent during a drag lands between two steps.
- :class:`Outbox` — the messages waiting to be sent on one tab's WebSocket; filled from any thread, drained by
  the event loop. :data:`CLOSE` is the sentinel that closes the WebSocket.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

CLOSE: dict[str, Any] = {"type": "__close__"}  # outbox sentinel: close the WebSocket (compared by identity)


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
