"""Studio API on the tiny generator: every control over the WebSocket and HTTP, and every bad input.

The real engine (``DragSession``) runs behind the real FastAPI app; nothing is mocked. Each drag is a few
milliseconds on the 32×32 generator.
"""

from __future__ import annotations

import base64
import faulthandler
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from dragkit.engine.trackers import TRACKERS, tracker_choices
from dragkit.errors import InvalidInputError
from dragkit.io import save_native
from dragkit.nn.stylegan2 import StyleGAN2Generator
from dragkit.studio import protocol as P
from dragkit.studio.server import StudioConfig, create_app

# -- helpers shared with the other studio tests ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def _one_thread_and_watchdog() -> Iterator[None]:
    """One torch thread (the machine is shared) and a hard watchdog: a hung WebSocket wait fails loudly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    torch.set_num_threads(threads)


def make_client(G: StyleGAN2Generator, tmp_path: Path, **overrides: Any) -> TestClient:
    models_dir = tmp_path / "models"
    models_dir.mkdir(exist_ok=True)
    kwargs: dict[str, Any] = {"network": "tiny", "models_dir": models_dir, "seed": 1}
    kwargs.update(overrides)
    app = create_app(StudioConfig(**kwargs), generators={"tiny": G})
    return TestClient(app)


@pytest.fixture
def client(tiny_g: StyleGAN2Generator, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tiny_g, tmp_path) as c:
        yield c


def recv_until(ws: Any, *types: str, limit: int = 2000) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read messages until one of ``types`` arrives; returns it and everything read (it included)."""
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        msg = ws.receive_json()
        seen.append(msg)
        if msg["type"] in types:
            return msg, seen
    raise AssertionError(f"no {types} message in {limit} messages: {[m['type'] for m in seen[-10:]]}")


def open_tab(c: TestClient, path: str = "/ws") -> Any:
    """Connect a tab; returns the open WebSocket after its hello and first state have arrived."""
    ws = c.websocket_connect(path).__enter__()
    hello, _ = recv_until(ws, "hello")
    ws.hello = hello
    recv_until(ws, "state")
    return ws


def call(ws: Any, msg: dict[str, Any]) -> dict[str, Any]:
    """Send one message and return its reply (a state or an error)."""
    ws.send_json(msg)
    reply, _ = recv_until(ws, "state", "error", "stopped")
    return reply


def decode_data_url(url: str) -> np.ndarray:
    header, b64 = url.split(",", 1)
    assert header in ("data:image/jpeg;base64", "data:image/png;base64")
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        return np.asarray(im).copy()


def drag(ws: Any, max_frames: int = 1000) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start and wait for the run to stop; returns the stopped message and the frames."""
    reply = call(ws, {"type": "start"})
    assert reply["type"] == "state" and reply["running"], reply
    stopped, seen = recv_until(ws, "stopped", limit=max_frames)
    return stopped, [m for m in seen if m["type"] == "frame"]


def check_frames(frames: list[dict[str, Any]], stopped: dict[str, Any]) -> None:
    """Frames come in step order and end with the run's last step (a slow reader may miss some in between)."""
    steps = [f["step"] for f in frames]
    assert frames and steps == sorted(set(steps)) and steps[-1] == stopped["step"], (steps, stopped["step"])


def assert_error(reply: dict[str, Any], code: str) -> None:
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply


# -- pages and listing -----------------------------------------------------------------------------------------


def test_index_static_and_health(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and '<script type="module" src="/static/app.js">' in r.text
    for name in ("app.js", "viewer.js", "net.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/../server.py").status_code == 404
    assert client.get("/api/health").json()["ok"] is True


def test_model_list_has_preloaded_registry_and_files(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    save_native(tiny_g, models / "faces" / "tiny-native", {"licence": "test"})
    (models / "other.pkl").write_bytes(b"not really")
    (models / "notes.txt").write_text("ignored")
    (models / ".hidden.pt").write_bytes(b"ignored")
    with make_client(tiny_g, tmp_path) as c:
        body = c.get("/api/models").json()
    ids = [m["id"] for m in body["models"]]
    assert ids[0] == "tiny" and body["default"] == "tiny"
    assert "default" in ids  # dragkit.io.registry
    assert "file:faces/tiny-native" in ids and "file:other.pkl" in ids
    assert not any("notes" in i or "hidden" in i for i in ids)


# -- the WebSocket controls ------------------------------------------------------------------------------------


def test_first_state_new_image_and_truncation(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        hello, _ = recv_until(ws, "hello")
        assert hello["defaults"]["model"] == "tiny" and hello["limits"]["max_points"] >= 1
        assert hello["trackers"] == tracker_choices()
        state, _ = recv_until(ws, "state")
        assert (state["width"], state["height"], state["seed"], state["model"]) == (32, 32, 1, "tiny")
        first = decode_data_url(state["image"])
        assert first.shape == (32, 32, 3)

        again = call(ws, {"type": "new_image", "seed": 1, "psi": 0.7, "id": 7})
        assert again["reply_to"] == 7
        assert np.abs(decode_data_url(again["image"]).astype(int) - first).max() <= 8  # same seed, JPEG noise
        other = call(ws, {"type": "new_image", "seed": 2, "psi": 0.7})
        assert other["seed"] == 2 and np.abs(decode_data_url(other["image"]).astype(int) - first).mean() > 5
        flat = call(ws, {"type": "new_image", "seed": 2, "psi": 0.0})
        assert flat["psi"] == 0.0
        assert np.abs(decode_data_url(flat["image"]).astype(int) - decode_data_url(other["image"])).mean() > 2
        w = call(ws, {"type": "new_image", "seed": 2, "w_plus": False, "model": "tiny"})
        assert w["w_plus"] is False and w["step"] == 0 and w["handles"] == []


def test_points_add_move_remove_clear(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        recv_until(ws, "state")
        s = call(ws, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        assert s["handles"] == [[10, 10]] and s["targets"] == [[20, 14]]
        assert s["distances"] == [pytest.approx(float(np.hypot(10, 4)))]
        s = call(ws, {"type": "add_point", "handle": [3.5, 4.25], "target": [31, 31]})
        assert len(s["handles"]) == 2
        s = call(ws, {"type": "move_point", "index": 0, "handle": [12, 11]})
        assert s["handles"][0] == [12, 11] and s["targets"][0] == [20, 14]
        s = call(ws, {"type": "move_point", "index": 1, "target": [0, 0]})
        assert s["targets"][1] == [0, 0]
        s = call(ws, {"type": "move_point", "index": 1, "handle": [1, 2], "target": [5, 6]})
        assert (s["handles"][1], s["targets"][1]) == ([1, 2], [5, 6])
        s = call(ws, {"type": "remove_point", "index": 0})
        assert s["handles"] == [[1, 2]]
        s = call(ws, {"type": "clear_points"})
        assert s["handles"] == [] and s["can_undo"]


def test_mask_brush_movable_fixed_and_clear(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        recv_until(ws, "state")
        s = call(ws, {"type": "mask_stroke", "points": [[8, 8]], "radius": 3, "mode": "movable"})
        m = decode_data_url(s["mask"]) > 127
        assert s["has_mask"] and m[8, 8] and m[8, 11] and not m[8, 12] and not m[20, 20]
        s = call(ws, {"type": "mask_stroke", "points": [[20, 20], [26, 20]], "radius": 2, "mode": "movable"})
        m = decode_data_url(s["mask"]) > 127
        assert m[8, 8] and m[20, 20] and m[20, 23] and m[20, 26] and not m[25, 23]
        s = call(ws, {"type": "mask_stroke", "points": [[8, 8]], "radius": 1, "mode": "fixed"})
        m = decode_data_url(s["mask"]) > 127
        assert not m[8, 8] and m[8, 11]
        s = call(ws, {"type": "mask_clear"})
        assert s["mask"] is None and not s["has_mask"]
        # On a fresh mask, "fixed" paints the held region and leaves the rest movable.
        s = call(ws, {"type": "mask_stroke", "points": [[16, 16]], "radius": 4, "mode": "fixed"})
        m = decode_data_url(s["mask"]) > 127
        assert not m[16, 16] and m[0, 0] and m[31, 31]


def test_drag_streams_frames_and_stops_on_arrival(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        recv_until(ws, "state")
        call(ws, {"type": "set_config", "lr": 0.1})
        call(ws, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        stopped, frames = drag(ws)
        assert stopped["reason"] == "arrived" and not stopped["running"]
        assert stopped["run_steps"] >= 3 and len(frames) >= 3 and frames[-1]["done"] and not frames[0]["done"]
        check_frames(frames, stopped)
        assert frames[0]["step"] == 1 and frames[-1]["distances"][0] <= 1.0 < frames[0]["distances"][0]
        assert all(decode_data_url(f["image"]).shape == (32, 32, 3) for f in frames[:3])
        assert stopped["step"] == stopped["run_steps"] == stopped["frames"] and "image" in stopped


def test_max_steps_and_user_stop(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        recv_until(ws, "state")
        s = call(ws, {"type": "set_config", "max_steps": 4, "lr": 0.002})
        assert s["max_steps"] == 4 and s["lr"] == 0.002
        call(ws, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        stopped, frames = drag(ws)
        assert stopped["reason"] == "max_steps" and stopped["run_steps"] == 4
        check_frames(frames, stopped)
        # Start/Stop: with a huge budget the drag only ends when told to.
        call(ws, {"type": "set_config", "max_steps": 10_000})
        reply = call(ws, {"type": "start"})
        assert reply["running"]
        recv_until(ws, "frame")
        ws.send_json({"type": "stop"})
        stopped, _ = recv_until(ws, "stopped")
        assert stopped["reason"] == "user" and not stopped["running"]
        stop_again = call(ws, {"type": "stop"})  # stopping a stopped session is harmless
        assert stop_again["type"] == "state" and not stop_again["running"]


def test_undo_redo_steps_points_whole_drag_and_reset(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        s0 = recv_until(ws, "state")[0]
        call(ws, {"type": "set_config", "max_steps": 5, "lr": 0.05})
        call(ws, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        stopped, _ = drag(ws)
        assert stopped["step"] == 5 and stopped["last_run_steps"] == 5
        s = call(ws, {"type": "undo"})
        assert s["step"] == 4 and s["can_redo"] and "image" in s
        s = call(ws, {"type": "redo"})
        assert s["step"] == 5 and not s["can_redo"]
        s = call(ws, {"type": "undo", "count": 2})
        assert s["step"] == 3
        s = call(ws, {"type": "redo", "count": 2})
        assert s["step"] == 5
        drag(ws)
        s = call(ws, {"type": "undo", "drag": True})
        assert s["step"] == 5 and s["last_run_steps"] == 0
        assert_error(call(ws, {"type": "undo", "drag": True}), "nothing_to_undo")
        s = call(ws, {"type": "reset"})
        assert s["step"] == 0 and s["handles"] == [[10, 10]] and s["targets"] == [[20, 14]]
        assert np.abs(decode_data_url(s["image"]).astype(int) - decode_data_url(s0["image"])).max() <= 8
        s = call(ws, {"type": "undo"})  # reset is one undoable action
        assert s["step"] == 5
        # Point edits undo one at a time.
        call(ws, {"type": "add_point", "handle": [1, 1], "target": [2, 2]})
        s = call(ws, {"type": "undo"})
        assert len(s["handles"]) == 1
        s = call(ws, {"type": "redo"})
        assert len(s["handles"]) == 2
        assert_error(call(ws, {"type": "redo"}), "nothing_to_redo")


def test_w_plus_toggle_keeps_points_and_mask(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        recv_until(ws, "state")
        call(ws, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        call(ws, {"type": "mask_stroke", "points": [[10, 10]], "radius": 5, "mode": "movable"})
        s = call(ws, {"type": "set_config", "w_plus": False, "max_steps": 3})
        assert s["w_plus"] is False and s["handles"] == [[10, 10]] and s["has_mask"]
        stopped, frames = drag(ws)
        assert stopped["reason"] == "max_steps" and stopped["run_steps"] == 3
        check_frames(frames, stopped)
        s = call(ws, {"type": "set_config", "w_plus": True})
        assert s["w_plus"] is True and s["step"] == 0


def test_tracker_switch_mid_edit_keeps_the_edit_and_survives_the_w_plus_toggle(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        s = recv_until(ws, "state")[0]
        assert s["tracker"] == "nn"  # the model's hint
        call(ws, {"type": "set_config", "max_steps": 3, "lr": 0.05})
        call(ws, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        stopped, _ = drag(ws)
        s = call(ws, {"type": "set_config", "tracker": "hybrid"})
        assert s["tracker"] == "hybrid" and s["step"] == 3 and s["can_undo"]  # nothing of the edit is lost
        assert s["handles"] == stopped["handles"]
        stopped, frames = drag(ws)
        assert stopped["reason"] == "max_steps" and stopped["step"] == 6 and stopped["tracker"] == "hybrid"
        check_frames(frames, stopped)
        s = call(ws, {"type": "undo", "count": 4})  # back into the nn part: the next drag still uses hybrid
        assert s["step"] == 2
        stopped, _ = drag(ws)
        assert stopped["step"] == 5 and stopped["tracker"] == "hybrid"
        s = call(ws, {"type": "set_config", "w_plus": False})
        assert s["tracker"] == "hybrid" and s["step"] == 0
        for unknown in ("optical", "flow"):
            reply = call(ws, {"type": "set_config", "tracker": unknown, "lr": 0.5})
            assert_error(reply, "invalid")
            assert unknown in reply["message"] and all(name in reply["message"] for name in TRACKERS)
        s = call(ws, {"type": "set_config", "max_steps": 3})  # nothing of the refused message was applied
        assert s["tracker"] == "hybrid" and s["lr"] == 0.05


def test_tracker_list_in_hello_and_the_engine_is_the_source_of_truth(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        hello = recv_until(ws, "hello")[0]
        names = [t["name"] for t in hello["trackers"]]
        assert names == list(TRACKERS) and names[0] == "nn" and "flow" not in names
        assert {"freedrag", "patch", "hybrid"} <= set(names)
        for t in hello["trackers"]:
            assert set(t) == {"name", "label", "experimental", "description"}
            assert isinstance(t["label"], str) and t["label"] and isinstance(t["experimental"], bool)
        assert {t["name"] for t in hello["trackers"] if t["experimental"]} == {"patch", "hybrid"}
        recv_until(ws, "state")
        s = call(ws, {"type": "set_config", "tracker": "freedrag", "lr": 0.01, "max_steps": 7})
        assert (s["tracker"], s["lr"], s["max_steps"]) == ("freedrag", 0.01, 7)
        tab = client.app.state.manager.get(hello["session"])  # type: ignore[attr-defined]
        eng = tab.engine
        assert (eng.config.tracker, eng.config.lr, eng.config.max_steps) == ("freedrag", 0.01, 7)
        assert (eng.settings.tracker, eng.settings.lr, eng.settings.max_steps) == ("freedrag", 0.01, 7)
        # A new image (another seed, W instead of W+) keeps the choices.
        s = call(ws, {"type": "new_image", "seed": 4, "w_plus": False})
        assert (s["tracker"], s["lr"], s["max_steps"], s["w_plus"], s["seed"]) == ("freedrag", 0.01, 7, False, 4)
        assert tab.engine is not eng and tab.engine.config.tracker == "freedrag"
        assert tab.engine.settings.w_mode == "w"


def test_lr_change_applies_to_the_running_engine(client: TestClient) -> None:
    """A higher lr moves the latent more per step (same points, same start)."""
    with client.websocket_connect("/ws") as ws:
        sid = recv_until(ws, "hello")[0]["session"]
        recv_until(ws, "state")
        call(ws, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        call(ws, {"type": "set_config", "max_steps": 1, "lr": 1e-4})
        drag(ws)
        small = torch.load(io.BytesIO(client.get(f"/api/sessions/{sid}/latent.pt").content), weights_only=True)
        call(ws, {"type": "undo"})
        start = torch.load(io.BytesIO(client.get(f"/api/sessions/{sid}/latent.pt").content), weights_only=True)
        call(ws, {"type": "set_config", "lr": 0.1})
        drag(ws)
        big = torch.load(io.BytesIO(client.get(f"/api/sessions/{sid}/latent.pt").content), weights_only=True)
    assert (big - start).abs().max() > 100 * (small - start).abs().max() > 0


def test_start_requires_points(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        recv_until(ws, "state")
        assert_error(call(ws, {"type": "start", "id": 3}), "no_points")


# -- files: PNG, latent, session, video ------------------------------------------------------------------------


def test_save_png_latent_and_session_roundtrip(client: TestClient, tiny_g: StyleGAN2Generator) -> None:
    with client.websocket_connect("/ws") as a:
        sid_a = recv_until(a, "hello")[0]["session"]
        recv_until(a, "state")
        call(a, {"type": "set_config", "max_steps": 3})
        call(a, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        call(a, {"type": "mask_stroke", "points": [[10, 10]], "radius": 6, "mode": "movable"})
        stopped, _ = drag(a)

        png = client.get(f"/api/sessions/{sid_a}/image.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert "attachment" in png.headers["content-disposition"]
        img = np.asarray(Image.open(io.BytesIO(png.content)))
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8

        latent = torch.load(io.BytesIO(client.get(f"/api/sessions/{sid_a}/latent.pt").content), weights_only=True)
        assert latent.shape == (1, tiny_g.num_ws, tiny_g.w_dim)
        with torch.no_grad():
            out = tiny_g.synthesize(latent, 0).image
        assert out is not None
        mine = (out * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
        assert np.array_equal(mine, img)

        call(a, {"type": "set_config", "tracker": "freedrag", "lr": 0.03})
        saved = client.get(f"/api/sessions/{sid_a}/session.pt")
        assert saved.status_code == 200 and len(saved.content) > 1000

        with client.websocket_connect("/ws") as b:
            sid_b = recv_until(b, "hello")[0]["session"]
            recv_until(b, "state")
            call(b, {"type": "new_image", "seed": 5})
            call(b, {"type": "set_config", "max_steps": 9})
            r = client.post(f"/api/sessions/{sid_b}/session", content=saved.content)
            assert r.status_code == 200, r.text
            loaded = r.json()
            pushed, _ = recv_until(b, "state")  # the tab hears about it too
            for s in (loaded, pushed):
                assert s["step"] == 3 and s["handles"] == stopped["handles"] and s["has_mask"]
                assert s["model"] == "tiny" and s["can_undo"]
                assert s["seed"] == 1  # the seed the session was made from (tab a's), not tab b's 5
                # The file's drag options come along; the steps per Start stay the tab's.
                assert (s["tracker"], s["lr"], s["max_steps"]) == ("freedrag", 0.03, 9)
            png_b = client.get(f"/api/sessions/{sid_b}/image.png").content
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_b))), img)
            s = call(b, {"type": "undo"})  # history came along
            assert s["step"] == 2
            s = call(b, {"type": "new_image", "seed": 6})  # and the options stay for the next image
            assert (s["tracker"], s["lr"], s["max_steps"]) == ("freedrag", 0.03, 9)


@pytest.mark.parametrize("fmt", ["gif", "mp4"])
def test_export_video_with_and_without_overlays(client: TestClient, fmt: str) -> None:
    with client.websocket_connect("/ws") as ws:
        sid = recv_until(ws, "hello")[0]["session"]
        recv_until(ws, "state")
        call(ws, {"type": "set_config", "max_steps": 4})
        call(ws, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        drag(ws)
        with_overlay = client.get(f"/api/sessions/{sid}/export.{fmt}?overlays=true&fps=5")
        clean = client.get(f"/api/sessions/{sid}/export.{fmt}?overlays=false")
    for r in (with_overlay, clean):
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == ("image/gif" if fmt == "gif" else "video/mp4")
        if fmt == "gif":
            assert r.content[:6] == b"GIF89a"
        else:
            assert r.content[4:8] == b"ftyp"
    assert with_overlay.content != clean.content
    if fmt == "gif":
        with Image.open(io.BytesIO(with_overlay.content)) as g:
            assert g.n_frames == 5  # 4 step frames + the final image
            g.seek(0)
            first = np.asarray(g.convert("RGB")).astype(int)
        with Image.open(io.BytesIO(clean.content)) as g:
            plain = np.asarray(g.convert("RGB")).astype(int)
        # The handle (red) is drawn where the first frame's handle was.
        assert first[10, 10, 0] > 150 and first[10, 10, 2] < 120 and abs(first - plain).max() > 100


def test_export_is_encoded_off_the_worker_and_caps_its_frames(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one tab's export encodes, another tab's commands still run; a long edit's export is capped in frames,
    evenly spaced, and a cancelled export stops."""
    import threading

    from dragkit.studio import server as server_module
    from dragkit.studio.sessions import ExportFrames, write_export

    encoding, release = threading.Event(), threading.Event()
    jobs: list[ExportFrames] = []

    def slow_export(job: ExportFrames, fmt: Any, fps: float, cancel: threading.Event) -> bytes:
        jobs.append(job)
        encoding.set()
        assert release.wait(30)
        return write_export(job, fmt, fps, cancel)

    monkeypatch.setattr(server_module, "write_export", slow_export)
    monkeypatch.setattr("dragkit.studio.sessions.EXPORT_FRAMES", 4)
    with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
        sid = recv_until(a, "hello")[0]["session"]
        recv_until(a, "state")
        recv_until(b, "state")
        call(a, {"type": "set_config", "max_steps": 7})
        call(a, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        drag(a)
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(r=client.get(f"/api/sessions/{sid}/export.gif")))
        thread.start()
        assert encoding.wait(30)
        assert call(b, {"type": "new_image", "seed": 3})["seed"] == 3  # the worker is free while a encodes
        release.set()
        thread.join(30)
    assert result["r"].status_code == 200
    (job,) = jobs
    assert len(job.frames) == 4  # 3 of the 7 recorded steps (the first, middle and last) + the final image
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(P.ProtocolError, match="cancelled"):
        write_export(job, "gif", 5.0, cancel)


def test_export_needs_recorded_frames(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        sid = recv_until(ws, "hello")[0]["session"]
        r = client.get(f"/api/sessions/{sid}/export.gif")
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_frames"


# -- the HTTP session API ------------------------------------------------------------------------------------


def test_http_session_and_commands(client: TestClient) -> None:
    r = client.post("/api/sessions")
    assert r.status_code == 200
    body = r.json()
    sid = body["session"]
    assert body["width"] == 32 and body["image"].startswith("data:image/jpeg")
    cmd = f"/api/sessions/{sid}/command"
    s = client.post(cmd, json={"type": "add_point", "handle": [10, 10], "target": [20, 14]}).json()
    assert s["handles"] == [[10, 10]]
    s = client.post(cmd, json={"type": "set_config", "max_steps": 2}).json()
    assert s["max_steps"] == 2
    assert client.post(cmd, json={"type": "start"}).json()["running"]
    for _ in range(200):
        state = client.get(f"/api/sessions/{sid}").json()
        if not state["running"]:
            break
    assert state["step"] == 2 and not state["running"]
    r = client.post(cmd, json={"type": "undo", "count": 5})
    assert r.status_code == 200 and r.json()["step"] == 0 and r.json()["handles"] == []
    r = client.post(cmd, json={"type": "undo"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "nothing_to_undo"


# -- bad input -------------------------------------------------------------------------------------------------

BAD_MESSAGES: list[tuple[str, str]] = [
    ("not json", "bad_json"),
    ("[1, 2]", "bad_json"),
    ('"start"', "bad_json"),
    ("{}", "unknown_type"),
    ('{"type": "explode"}', "unknown_type"),
    ('{"type": 5}', "unknown_type"),
    ('{"type": "start", "extra": 1}', "invalid"),
    ('{"type": "add_point", "handle": [1, 2]}', "invalid"),
    ('{"type": "add_point", "handle": [NaN, 2], "target": [1, 1]}', "invalid"),
    ('{"type": "add_point", "handle": [Infinity, 2], "target": [1, 1]}', "invalid"),
    ('{"type": "add_point", "handle": [1e999, 2], "target": [1, 1]}', "invalid"),
    ('{"type": "add_point", "handle": ["1", 2], "target": [1, 1]}', "invalid"),
    ('{"type": "add_point", "handle": [1, 2, 3], "target": [1, 1]}', "invalid"),
    ('{"type": "add_point", "handle": [1, 2], "target": [32, 1]}', "out_of_range"),
    ('{"type": "add_point", "handle": [-0.5, 2], "target": [1, 1]}', "out_of_range"),
    ('{"type": "add_point", "handle": [1, 2], "target": [1, 31.01]}', "out_of_range"),
    ('{"type": "move_point", "index": 0, "handle": [1, 1]}', "out_of_range"),
    ('{"type": "move_point", "index": -1, "handle": [1, 1]}', "invalid"),
    ('{"type": "remove_point", "index": 3}', "out_of_range"),
    ('{"type": "remove_point", "index": true}', "invalid"),
    ('{"type": "new_image", "seed": -1}', "invalid"),
    ('{"type": "new_image", "seed": 4294967296}', "invalid"),
    ('{"type": "new_image", "seed": 1.5}', "invalid"),
    ('{"type": "new_image", "seed": "3"}', "invalid"),
    ('{"type": "new_image", "seed": 1, "psi": 5}', "invalid"),
    ('{"type": "new_image", "seed": 1, "psi": NaN}', "invalid"),
    ('{"type": "new_image", "seed": 1, "model": "no-such-model"}', "unknown_model"),
    ('{"type": "new_image", "seed": 1, "model": ""}', "invalid"),
    ('{"type": "new_image", "seed": 1, "model": "file:../secret.pkl"}', "forbidden_path"),
    ('{"type": "new_image", "seed": 1, "model": "file:/etc/passwd"}', "forbidden_path"),
    ('{"type": "new_image", "seed": 1, "model": "file:a/../../x.pkl"}', "forbidden_path"),
    ('{"type": "new_image", "seed": 1, "model": "file:~/x.pkl"}', "forbidden_path"),
    ('{"type": "new_image", "seed": 1, "model": "file:a\\\\b.pkl"}', "forbidden_path"),
    ('{"type": "new_image", "seed": 1, "model": "file:missing.pkl"}', "unknown_model"),
    ('{"type": "set_config", "lr": 0}', "invalid"),
    ('{"type": "set_config", "lr": 2}', "invalid"),
    ('{"type": "set_config", "max_steps": 0}', "invalid"),
    ('{"type": "set_config", "max_steps": 100001}', "invalid"),
    ('{"type": "set_config", "w_plus": "yes"}', "invalid"),
    ('{"type": "set_config", "tracker": ""}', "invalid"),
    ('{"type": "set_config", "tracker": 3}', "invalid"),
    ('{"type": "set_config", "tracker": "' + "n" * 65 + '"}', "invalid"),
    ('{"type": "set_config", "tracker": "flow"}', "invalid"),
    ('{"type": "mask_stroke", "points": [], "radius": 3, "mode": "movable"}', "invalid"),
    ('{"type": "mask_stroke", "points": [[1, 1]], "radius": 0, "mode": "movable"}', "invalid"),
    ('{"type": "mask_stroke", "points": [[1, 1]], "radius": 33, "mode": "movable"}', "out_of_range"),
    ('{"type": "mask_stroke", "points": [[1, 1]], "radius": 3, "mode": "paint"}', "invalid"),
    ('{"type": "mask_stroke", "points": [[1, 40]], "radius": 3, "mode": "fixed"}', "out_of_range"),
    ('{"type": "undo", "count": 0}', "invalid"),
    ('{"type": "undo"}', "nothing_to_undo"),
    ('{"type": "redo"}', "nothing_to_redo"),
    ('{"type": "start", "id": -4}', "invalid"),
]


def test_bad_websocket_messages_get_errors_and_the_tab_keeps_working(
    tiny_g: StyleGAN2Generator, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.pkl"
    outside.write_bytes(b"x")
    with make_client(tiny_g, tmp_path, max_message_bytes=4096) as c, c.websocket_connect("/ws") as ws:
        recv_until(ws, "state")
        for raw, code in BAD_MESSAGES:
            ws.send_text(raw)
            reply, _ = recv_until(ws, "error", "state")
            assert reply["type"] == "error" and reply["code"] == code, (raw, reply)
        ws.send_text(json.dumps({"type": "mask_stroke", "points": [[1, 1]] * 2000, "radius": 1, "mode": "fixed"}))
        assert_error(recv_until(ws, "error")[0], "too_large")
        ws.send_bytes(b"\xff\xfe binary garbage")
        assert recv_until(ws, "error")[0]["code"] in ("bad_json", "invalid")
        # Nothing above changed the session, and it still answers.
        s = call(ws, {"type": "add_point", "handle": [1, 2], "target": [3, 4], "id": 99})
        assert s["reply_to"] == 99 and s["handles"] == [[1, 2]] and s["step"] == 0
        assert c.get("/api/health").status_code == 200


def test_symlink_out_of_the_models_folder_is_refused(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    save_native(tiny_g, outside / "net", {"licence": "test"})
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(outside / "net", models / "escape")
    with make_client(tiny_g, tmp_path) as c:
        ids = [m["id"] for m in c.get("/api/models").json()["models"]]
        assert "file:escape" not in ids
        with c.websocket_connect("/ws") as ws:
            recv_until(ws, "state")
            assert_error(call(ws, {"type": "new_image", "seed": 0, "model": "file:escape"}), "forbidden_path")


def test_model_from_the_models_folder_loads_and_drags(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    save_native(tiny_g, models / "nets" / "tiny-copy", {"licence": "test"})
    (models / "broken.pkl").write_bytes(b"\x80\x04 this is not a checkpoint")
    with make_client(tiny_g, tmp_path) as c, c.websocket_connect("/ws") as ws:
        first = recv_until(ws, "state")[0]
        s = call(ws, {"type": "new_image", "seed": 1, "model": "file:nets/tiny-copy"})
        assert s["model"] == "file:nets/tiny-copy"
        assert np.abs(decode_data_url(s["image"]).astype(int) - decode_data_url(first["image"])).max() <= 8
        call(ws, {"type": "set_config", "max_steps": 2})
        call(ws, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        assert drag(ws)[0]["reason"] == "max_steps"
        reply = call(ws, {"type": "new_image", "seed": 1, "model": "file:broken.pkl"})
        assert reply["type"] == "error" and reply["code"] in ("bad_checkpoint", "invalid")
        s = call(ws, {"type": "add_point", "handle": [1, 1], "target": [2, 2]})  # still serving its old image
        assert s["model"] == "file:nets/tiny-copy" and len(s["handles"]) == 2


def test_bad_http_requests(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    with make_client(tiny_g, tmp_path, max_message_bytes=2048, max_upload_bytes=10_000) as c:
        sid = c.post("/api/sessions").json()["session"]
        base = f"/api/sessions/{sid}"

        def err(r: Any, status: int, code: str) -> None:
            assert r.status_code == status, (r.status_code, r.text)
            assert r.json()["error"]["code"] == code, r.text

        for path in ("", "/image.png", "/latent.pt", "/session.pt", "/export.gif"):
            err(c.get(f"/api/sessions/nope{path}"), 404, "no_session")
        err(c.post("/api/sessions/nope/command", json={"type": "start"}), 404, "no_session")
        err(c.post(f"{base}/command", content=b"{oops"), 400, "bad_json")
        err(c.post(f"{base}/command", json={"type": "warp"}), 400, "unknown_type")
        err(
            c.post(f"{base}/command", json={"type": "add_point", "handle": [99, 1], "target": [1, 1]}),
            422,
            "out_of_range",
        )
        err(c.post(f"{base}/command", content=b'{"type":"add_point","handle":[NaN,1],"target":[1,1]}'), 422, "invalid")
        err(c.post(f"{base}/command", json={"type": "new_image", "seed": 1, "model": "zzz"}), 404, "unknown_model")
        err(
            c.post(f"{base}/command", json={"type": "new_image", "seed": 1, "model": "file:../x"}),
            403,
            "forbidden_path",
        )
        err(c.post(f"{base}/command", content=b"x" * 5000), 413, "too_large")
        err(c.post(f"{base}/command", json={"type": "start"}), 409, "no_points")
        err(c.post(f"{base}/session", content=b"x" * 20_000), 413, "too_large")
        err(c.post(f"{base}/session", content=b""), 422, "bad_session")
        err(c.post(f"{base}/session", content=b"garbage, not a session"), 422, "bad_session")
        err(c.get(f"{base}/export.avi"), 422, "invalid")
        err(c.get(f"{base}/export.gif?fps=0"), 422, "invalid")
        err(c.get(f"{base}/export.gif?fps=1000"), 422, "invalid")
        err(c.get(f"{base}/export.gif?fps=nan"), 422, "invalid")
        err(c.get(f"{base}/export.gif?overlays=maybe"), 422, "invalid")
        # A session file of another model is refused by name.
        buf = io.BytesIO()
        torch.save({"format": "dragkit.session", "model_id": "someone-elses-model"}, buf)
        err(c.post(f"{base}/session", content=buf.getvalue()), 404, "unknown_model")
        assert c.get("/api/health").json()["ok"]


def test_upload_limit_is_enforced_without_content_length(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    with make_client(tiny_g, tmp_path, max_upload_bytes=10_000) as c:
        sid = c.post("/api/sessions").json()["session"]

        def chunks() -> Iterator[bytes]:
            for _ in range(10):
                yield b"y" * 4096

        r = c.post(f"/api/sessions/{sid}/session", content=chunks())
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_unknown_session_and_cross_origin_websockets(client: TestClient) -> None:
    with client.websocket_connect("/ws?session=does-not-exist") as ws:
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["code"] == "no_session"
    from starlette.websockets import WebSocketDisconnect

    with (
        pytest.raises(WebSocketDisconnect) as info,
        client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws,
    ):
        ws.receive_json()
    assert info.value.code == 1008
    # Same origin is fine.
    with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
        assert ws.receive_json()["type"] == "hello"


def test_trusted_hosts_guard_against_dns_rebinding(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    with make_client(tiny_g, tmp_path, allowed_hosts=("127.0.0.1", "localhost")) as c:
        assert c.get("/api/health", headers={"host": "evil.example"}).status_code == 400
        assert c.get("/api/health", headers={"host": "127.0.0.1:7860"}).status_code == 200


def test_unknown_start_model_fails_at_creation(tiny_g: StyleGAN2Generator) -> None:
    from dragkit.studio.models import UnknownModelError

    with pytest.raises(UnknownModelError):
        create_app(StudioConfig(network="nope"), generators={"tiny": tiny_g})


def test_crafted_session_uploads_get_a_4xx_json_error_and_the_tab_keeps_working(client: TestClient) -> None:
    sid = client.post("/api/sessions").json()["session"]
    base = f"/api/sessions/{sid}"
    client.post(f"{base}/command", json={"type": "add_point", "handle": [10, 10], "target": [20, 14]})
    client.post(f"{base}/command", json={"type": "mask_stroke", "points": [[10, 10]], "radius": 6, "mode": "movable"})
    good = torch.load(io.BytesIO(client.get(f"{base}/session.pt").content), weights_only=True)
    crafted = {
        "no states": {**good, "states": []},
        "no generator": {k: v for k, v in good.items() if k != "generator"},
        "current 999": {**good, "current": 999},
        "current -5": {**good, "current": -5},
        "history_limit text": {**good, "history_limit": "abc"},
        "forward trajectory link": {**good, "trajectory_nodes": [{"result": {}, "prev": 3}]},
        "NaN handle": {**good, "states": [{**good["states"][-1], "handles": [[float("nan"), 1.0]]}], "current": 0},
        "3×3 mask": {**good, "masks": [torch.ones(3, 3, dtype=torch.bool)]},
    }
    for what, payload in crafted.items():
        buf = io.BytesIO()
        torch.save(payload, buf)
        r = client.post(f"{base}/session", content=buf.getvalue())
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_session", (what, r.status_code, r.text)
        message = r.json()["error"]["message"]
        assert "\n" not in message and "weights_only" not in message, (what, message)
    state = client.post(f"{base}/command", json={"type": "add_point", "handle": [5, 5], "target": [8, 8]}).json()
    assert len(state["handles"]) == 2  # the tab kept its session


def test_pages_of_other_sites_can_neither_create_nor_drive_a_session(client: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    sid = client.post("/api/sessions").json()["session"]  # a script (no Origin) may
    cmd = f"/api/sessions/{sid}/command"
    foreign = [
        {"origin": "http://evil.example"},
        {"origin": "https://testserver"},  # the right host, another scheme
        {"sec-fetch-site": "cross-site"},
    ]
    for headers in foreign:
        r = client.post("/api/sessions", headers=headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_origin", headers
        r = client.post(cmd, json={"type": "add_point", "handle": [1, 1], "target": [2, 2]}, headers=headers)
        assert r.status_code == 403, headers
        r = client.post(f"/api/sessions/{sid}/session", content=b"x", headers=headers)
        assert r.status_code == 403, headers
    assert client.get(f"/api/sessions/{sid}").json()["handles"] == []  # nothing reached the session
    assert client.post("/api/sessions", headers={"origin": "http://testserver"}).status_code == 200
    for headers in ({"origin": "https://testserver"}, {"origin": "http://testserver:8080"}):
        with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws", headers=headers) as ws:
            ws.receive_json()
        assert info.value.code == 1008


def test_a_studio_with_a_token_needs_it_on_every_route(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    from starlette.websockets import WebSocketDisconnect

    token = "t" * 24
    with make_client(tiny_g, tmp_path, token=token) as c:
        for path in ("/", "/api/health", "/static/app.js", "/api/models"):
            r = c.get(path)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", path
        assert c.post("/api/sessions").status_code == 401
        assert c.get("/api/health", params={"token": "t" * 23 + "x"}).status_code == 401
        with pytest.raises(WebSocketDisconnect) as info, c.websocket_connect("/ws") as ws:
            ws.receive_json()
        assert info.value.code == 1008
        assert c.post("/api/sessions", headers={"x-dragkit-token": token}).status_code == 200  # scripts
        page = c.get("/", params={"token": token})  # the URL printed at start-up
        assert page.status_code == 200 and "dragkit_token" in page.headers["set-cookie"]
        assert "httponly" in page.headers["set-cookie"].lower()
        assert c.get("/static/app.js").status_code == 200  # the page's own requests carry the cookie
        with c.websocket_connect("/ws") as ws:
            assert ws.receive_json()["type"] == "hello"
    with pytest.raises(InvalidInputError, match="token"):
        StudioConfig(token="short")


def test_a_new_studio_removes_what_killed_studios_left_in_the_temp_folder(
    tiny_g: StyleGAN2Generator, tmp_path: Path
) -> None:
    import tempfile

    stale = Path(tempfile.gettempdir()) / "dragkit-studio-999999999-left"
    stale.mkdir(exist_ok=True)
    (stale / "session.pt").write_bytes(b"half a session")
    with make_client(tiny_g, tmp_path):
        assert not stale.exists()


def test_hold_strength_lambda_and_a_warning_for_handles_in_the_fixed_region(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        recv_until(ws, "state")
        s = call(ws, {"type": "set_config", "mask_lambda": 5})
        assert s["mask_lambda"] == 5
        assert_error(call(ws, {"type": "set_config", "mask_lambda": -1}), "invalid")
        call(ws, {"type": "add_point", "handle": [10, 10], "target": [20, 14]})
        call(ws, {"type": "add_point", "handle": [25, 25], "target": [28, 28]})
        call(ws, {"type": "set_config", "max_steps": 1})
        call(ws, {"type": "mask_stroke", "points": [[10, 10]], "radius": 6, "mode": "movable"})  # handle 2 is fixed
        ws.send_json({"type": "start"})
        _, seen = recv_until(ws, "stopped")
        warnings = [m for m in seen if m["type"] == "warning"]
        assert len(warnings) == 1 and warnings[0]["code"] == "handle_in_fixed_region"
        assert "handle 2 " in warnings[0]["message"]
