"""Studio sessions: per-tab isolation, idle expiry, the session bound, reconnecting, and the single worker that
keeps drags from ever running on the model at the same time. Real engine, tiny generator."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from dragkit.errors import InvalidInputError
from dragkit.nn.stylegan2 import StyleGAN2Generator
from dragkit.studio import protocol as P
from dragkit.studio.codec import data_url, decode_jpeg, encode_jpeg, encode_png
from dragkit.studio.handlers import HANDLERS
from dragkit.studio.mask import MAX_STROKE_IMAGES, decimate, paint_stroke
from dragkit.studio.sessions import FrameStore, StudioConfig
from dragkit.studio.worker import Outbox, Worker
from tests.test_studio_api import (
    _one_thread_and_watchdog,  # noqa: F401 - an autouse fixture, active here too
    assert_error,
    call,
    check_frames,
    decode_data_url,
    drag,
    make_client,
    recv_until,
)


@pytest.fixture
def client(tiny_g: StyleGAN2Generator, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tiny_g, tmp_path) as c:
        yield c


def test_two_tabs_are_isolated(client: TestClient) -> None:
    with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
        sid_a = recv_until(a, "hello")[0]["session"]
        sid_b = recv_until(b, "hello")[0]["session"]
        assert sid_a != sid_b and len(sid_a) >= 20
        recv_until(a, "state")
        recv_until(b, "state")
        sb = call(b, {"type": "new_image", "seed": 7})
        sa = call(a, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        assert sa["handles"] == [[10, 10]] and sa["seed"] == 1
        sb = call(b, {"type": "add_point", "handle": [3, 3], "target": [6, 6]})
        assert sb["handles"] == [[3, 3]] and sb["seed"] == 7
        call(a, {"type": "set_config", "max_steps": 3})
        stopped, frames = drag(a)
        assert stopped["run_steps"] == 3
        check_frames(frames, stopped)
        # B heard nothing of A's drag: its next message is the reply to its own request.
        sb = call(b, {"type": "mask_clear"})
        assert sb["type"] == "state" and sb["session"] == sid_b and sb["step"] == 0 and sb["handles"] == [[3, 3]]
        # HTTP access is per session id as well.
        assert client.get(f"/api/sessions/{sid_b}").json()["step"] == 0
        assert client.get(f"/api/sessions/{sid_a}").json()["step"] == 3


def test_concurrent_drags_alternate_and_never_overlap_on_the_model(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    """Two tabs drag at once: frames of both arrive interleaved, and the generator never runs twice at once."""
    active = 0
    overlap = 0
    threads: set[int] = set()
    lock = threading.Lock()

    def enter(module: Any, args: Any) -> None:
        nonlocal active, overlap
        with lock:
            active += 1
            overlap = max(overlap, active)
            threads.add(threading.get_ident())

    def leave(module: Any, args: Any, out: Any) -> None:
        nonlocal active
        with lock:
            active -= 1

    block = tiny_g.synthesis.b4
    h1 = block.register_forward_pre_hook(enter)
    h2 = block.register_forward_hook(leave)
    try:
        with (
            make_client(tiny_g, tmp_path, max_steps=12) as c,
            c.websocket_connect("/ws") as a,
            c.websocket_connect("/ws") as b,
        ):
            for ws, seed in ((a, 1), (b, 2)):
                recv_until(ws, "state")
                call(ws, {"type": "new_image", "seed": seed})
                call(ws, {"type": "add_point", "handle": [10, 10], "target": [25, 20]})
            a.send_json({"type": "start"})
            b.send_json({"type": "start"})
            stopped_a, seen_a = recv_until(a, "stopped")
            stopped_b, seen_b = recv_until(b, "stopped")
    finally:
        h1.remove()
        h2.remove()
    frames_a = [m for m in seen_a if m["type"] == "frame"]
    frames_b = [m for m in seen_b if m["type"] == "frame"]
    assert stopped_a["run_steps"] == stopped_b["run_steps"] == 12
    assert stopped_a["reason"] == stopped_b["reason"] == "max_steps"
    check_frames(frames_a, stopped_a)
    check_frames(frames_b, stopped_b)
    assert overlap == 1 and len(threads) == 1
    # Neither drag got the images of the other.
    assert frames_a[0]["image"] != frames_b[0]["image"]


def test_idle_sessions_expire(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    with make_client(tiny_g, tmp_path, idle_timeout_s=60) as c:
        manager = c.app.state.manager  # type: ignore[attr-defined]
        with c.websocket_connect("/ws") as ws:
            sid = recv_until(ws, "hello")[0]["session"]
            recv_until(ws, "state")
            idle = c.post("/api/sessions").json()["session"]
            assert len(manager) == 2
            assert manager.expire(now=time.monotonic() + 30) == []
            expired = manager.expire(now=time.monotonic() + 61)
            assert set(expired) == {sid, idle} and len(manager) == 0
            msg, _ = recv_until(ws, "error")
            assert msg["code"] == "expired"
            with pytest.raises(WebSocketDisconnect):
                for _ in range(10):
                    ws.receive_json()
        assert c.get(f"/api/sessions/{idle}").status_code == 404
        with c.websocket_connect(f"/ws?session={sid}") as ws:
            assert_error(ws.receive_json(), "no_session")


def test_session_bound_evicts_idle_tabs_then_refuses(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    with make_client(tiny_g, tmp_path, max_sessions=2) as c:
        first = c.post("/api/sessions").json()["session"]  # no WebSocket: evictable
        with c.websocket_connect("/ws") as a:
            recv_until(a, "state")
            with c.websocket_connect("/ws") as b:
                recv_until(b, "state")
                assert c.get(f"/api/sessions/{first}").status_code == 404  # evicted for b
                r = c.post("/api/sessions")
                assert r.status_code == 503 and r.json()["error"]["code"] == "busy"
                with c.websocket_connect("/ws") as third:
                    assert_error(third.receive_json(), "busy")
                # The two live tabs are untouched.
                assert call(a, {"type": "add_point", "handle": [1, 1], "target": [2, 2]})["type"] == "state"
                assert call(b, {"type": "add_point", "handle": [1, 1], "target": [2, 2]})["type"] == "state"


def test_reconnect_resumes_the_session_and_replaces_the_old_connection(client: TestClient) -> None:
    with client.websocket_connect("/ws") as first:
        sid = recv_until(first, "hello")[0]["session"]
        recv_until(first, "state")
        call(first, {"type": "add_point", "handle": [4, 5], "target": [6, 7]})
        with client.websocket_connect(f"/ws?session={sid}") as second:
            hello, _ = recv_until(second, "hello")
            assert hello["session"] == sid
            state, _ = recv_until(second, "state")
            assert state["handles"] == [[4, 5]] and "image" in state
            assert_error(recv_until(first, "error")[0], "replaced")
            assert call(second, {"type": "remove_point", "index": 0})["handles"] == []


def test_disconnecting_stops_a_running_drag(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    with make_client(tiny_g, tmp_path, max_steps=10_000) as c:
        with c.websocket_connect("/ws") as ws:
            sid = recv_until(ws, "hello")[0]["session"]
            recv_until(ws, "state")
            call(ws, {"type": "add_point", "handle": [10, 10], "target": [25, 20]})
            call(ws, {"type": "start"})
            recv_until(ws, "frame")
        for _ in range(500):
            state = c.get(f"/api/sessions/{sid}").json()
            if not state["running"]:
                break
            time.sleep(0.01)
        assert not state["running"]
        step = state["step"]
        time.sleep(0.1)
        assert c.get(f"/api/sessions/{sid}").json()["step"] == step


def test_max_fps_paces_the_drag(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    with make_client(tiny_g, tmp_path, max_fps=25.0, max_steps=6) as c, c.websocket_connect("/ws") as ws:
        recv_until(ws, "state")
        call(ws, {"type": "add_point", "handle": [10, 10], "target": [25, 20]})
        t0 = time.monotonic()
        stopped, frames = drag(ws)
        elapsed = time.monotonic() - t0
    assert stopped["run_steps"] == 6 and elapsed >= 5 / 25.0
    check_frames(frames, stopped)


# -- the building blocks ---------------------------------------------------------------------------------------


def test_worker_runs_jobs_in_order_on_one_thread() -> None:
    worker = Worker()
    seen: list[tuple[int, int]] = []
    futures = [worker.submit(lambda i=i: seen.append((i, threading.get_ident()))) for i in range(50)]
    for f in futures:
        f.result(timeout=10)
    failing = worker.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    assert worker.submit(lambda: "still alive").result(timeout=10) == "still alive"
    worker.close()
    assert [i for i, _ in seen] == list(range(50)) and len({t for _, t in seen}) == 1
    with pytest.raises(RuntimeError):
        worker.submit(lambda: None).result(timeout=1)


def test_outbox_never_queues_a_frame_behind_a_stale_one() -> None:
    async def scenario() -> tuple[list[dict[str, Any]], int]:
        box = Outbox(asyncio.get_running_loop())
        box.put({"type": "state", "n": 0})
        for n in range(1, 6):
            box.put({"type": "frame", "n": n})
        box.put({"type": "stopped", "n": 6})
        box.put({"type": "frame", "n": 7})
        await asyncio.sleep(0)
        got = [await box.get() for _ in range(3)]
        box.put({"type": "frame", "n": 8})  # the waiting frame was sent: frames flow again
        box.put({"type": "state", "n": 9})
        await asyncio.sleep(0)
        return got + [await box.get() for _ in range(2)], box.dropped_frames

    got, dropped = asyncio.run(scenario())
    assert [(m["type"], m["n"]) for m in got] == [
        ("state", 0),
        ("stopped", 6),  # frames 1-5 were replaced while waiting; the other messages keep their order
        ("frame", 7),
        ("frame", 8),
        ("state", 9),
    ]
    assert dropped == 5


def test_frame_store_drops_undone_futures_and_respects_its_budget() -> None:
    store = FrameStore(budget=30)
    for step in range(1, 4):
        store.add(step, b"x" * 10)
    assert len(store) == 3
    store.add(2, b"y" * 10)  # history branched after step 1
    assert store.get(3) is None and store.get(2) == b"y" * 10 and len(store) == 2
    for step in range(3, 6):
        store.add(step, b"z" * 10)
    assert store.get(1) is None and store.get(2) is None and len(store) == 3
    store.clear()
    assert len(store) == 0


def test_paint_stroke_discs_and_capsules() -> None:
    empty = np.zeros((20, 30), dtype=bool)
    disc = paint_stroke(empty, [(10.0, 5.0)], 3.0, True)
    ys, xs = np.nonzero(disc)
    assert disc[5, 10] and disc[5, 13] and disc[2, 10] and not disc[5, 14] and not disc[9, 10]
    assert np.hypot(xs - 10, ys - 5).max() <= 3.5
    line = paint_stroke(empty, [(2.0, 10.0), (27.0, 10.0)], 2.0, True)
    assert line[10, 2:28].all() and line[8, 15] and not line[13, 15] and not empty.any()
    erased = paint_stroke(np.ones((20, 30), dtype=bool), [(15.0, 10.0)], 1.0, False)
    assert not erased[10, 15] and erased[0, 0]


def test_paint_stroke_equals_the_brute_force_definition_and_bounds_its_work() -> None:
    """Every pixel whose centre is within the radius of the polyline, whatever was painted before; a stroke whose
    segments would cover more than MAX_STROKE_IMAGES images is refused."""
    rng = np.random.default_rng(1)
    ys, xs = np.mgrid[0:24, 0:40].astype(np.float64)
    for _ in range(20):
        pts = [tuple(p) for p in rng.uniform(-5, 45, (int(rng.integers(1, 6)), 2))]
        radius, value = float(rng.uniform(0.5, 12)), bool(rng.integers(2))
        start = rng.random((24, 40)) > 0.5
        expected = start.copy()
        segments = list(itertools.pairwise(pts)) or [(pts[0], pts[0])]
        for (ax, ay), (bx, by) in segments:
            dx, dy = bx - ax, by - ay
            length2 = dx * dx + dy * dy
            t = 0.0 if length2 == 0 else np.clip(((xs - ax) * dx + (ys - ay) * dy) / length2, 0, 1)
            expected[(xs - ax - t * dx) ** 2 + (ys - ay - t * dy) ** 2 <= radius**2] = value
        assert np.array_equal(paint_stroke(start, pts, radius, value), expected)
    big = [(float(x), float(y)) for x, y in rng.uniform(0, 40, (MAX_STROKE_IMAGES + 2, 2))]
    with pytest.raises(P.ProtocolError, match="too large"):
        paint_stroke(np.zeros((24, 40), dtype=bool), big, 40.0, True)


def test_decimate_keeps_the_ends_and_drops_close_samples() -> None:
    pts = [(0.0, 0.0), (0.2, 0.0), (0.4, 0.0), (1.0, 0.0), (1.1, 0.0)]
    assert decimate(pts, 0.5) == [(0.0, 0.0), (1.0, 0.0), (1.1, 0.0)]
    assert decimate([(3.0, 4.0)], 1.0) == [(3.0, 4.0)]


def test_codec_roundtrips() -> None:
    rng = np.random.default_rng(0)
    img = np.repeat(np.repeat(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), 8, axis=0), 8, axis=1)
    back = decode_jpeg(encode_jpeg(img, 95))
    assert back.shape == (32, 32, 3) and back.dtype == np.uint8 and np.abs(back.astype(int) - img).mean() < 8
    grey = (rng.random((5, 7)) > 0.5).astype(np.uint8) * 255
    png = encode_png(grey)
    assert np.array_equal(decode_data_url(data_url(png, "image/png")), grey)
    assert data_url(b"\x00\x01", "image/png") == "data:image/png;base64,AAE="


def test_every_client_message_type_has_a_handler() -> None:
    union = get_args(get_args(P.ClientMessage)[0])
    assert set(HANDLERS) == set(union) and len(union) == 13


def test_studio_config_validation() -> None:
    for bad in (
        {"seed": -1},
        {"psi": float("nan")},
        {"lr": 0.0},
        {"max_steps": 0},
        {"idle_timeout_s": 0},
        {"max_sessions": 0},
        {"max_upload_bytes": -1},
        {"jpeg_quality": 0},
        {"max_fps": float("inf")},
    ):
        with pytest.raises(InvalidInputError):
            StudioConfig(**bad)  # type: ignore[arg-type]


def test_mask_is_held_by_the_engine_during_a_drag(client: TestClient) -> None:
    """A fixed region painted over the whole image except the handle's surroundings keeps far pixels closer to
    the original than the same drag without a mask."""
    results = {}
    for use_mask in (False, True):
        with client.websocket_connect("/ws") as ws:
            s0 = recv_until(ws, "state")[0]
            call(ws, {"type": "set_config", "max_steps": 15, "lr": 0.05})
            call(ws, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
            if use_mask:
                call(ws, {"type": "mask_stroke", "points": [[10, 10], [20, 14]], "radius": 6, "mode": "movable"})
            stopped, _ = drag(ws)
            before = decode_data_url(s0["image"]).astype(float)
            after = decode_data_url(stopped["image"]).astype(float)
            results[use_mask] = np.abs(after - before)[24:, :8].mean()  # a corner far from the edit
    assert results[True] < results[False]


def test_worker_is_fair_between_tabs_and_bounds_each_tabs_queue() -> None:
    """A tab that queues many jobs delays another tab's job by at most one of its own; a tab may not queue more
    than ``max_pending`` jobs (the rest are refused with ``busy``)."""
    import threading

    from dragkit.studio.protocol import ProtocolError
    from dragkit.studio.worker import Worker

    worker = Worker(max_pending=40)
    gate, running = threading.Event(), threading.Event()
    order: list[str] = []

    def hold() -> None:
        running.set()
        gate.wait()

    try:
        worker.submit(hold, key="a")  # holds the worker while both tabs queue
        assert running.wait(10)
        flood = [worker.submit(lambda i=i: order.append(f"a{i}"), key="a") for i in range(40)]
        refused = worker.submit(lambda: order.append("a-extra"), key="a")
        other = worker.submit(lambda: order.append("b"), key="b")
        gate.set()
        other.result(timeout=10)
        for f in flood:
            f.result(timeout=10)
        with pytest.raises(ProtocolError) as info:
            refused.result(timeout=10)
        assert info.value.code == "busy"
        assert order.index("b") <= 1  # after at most one more job of the flooding tab
        assert [o for o in order if o != "b"] == [f"a{i}" for i in range(40)]  # a tab's own jobs keep their order
    finally:
        gate.set()
        worker.close()


def test_queued_new_images_that_a_later_one_replaces_are_skipped(tiny_g: StyleGAN2Generator) -> None:
    """A burst of new_image messages costs one image, the last one's; the others answer the state at once."""
    import threading

    from dragkit.studio import protocol as P
    from dragkit.studio.models import ModelStore
    from dragkit.studio.sessions import SessionManager, StudioConfig

    manager = SessionManager(StudioConfig(network="tiny"), ModelStore(preloaded={"tiny": tiny_g}, use_registry=False))
    try:
        s = manager.create()
        gate = threading.Event()
        manager.run_job(gate.wait, key=s.id)  # hold the worker while the burst queues
        futures = [manager.submit(s, P.NewImage(type="new_image", seed=i)) for i in range(10)]
        gate.set()
        replies = [f.result(timeout=30) for f in futures]
        assert [r.get("superseded", False) for r in replies] == [True] * 9 + [False]
        assert replies[-1]["seed"] == 9 and "image" in replies[-1]
    finally:
        manager.close()
