"""The studio's "Open photo": upload → inversion beside the drag worker (progress to the tab) → an editing session
on the tuned generator, listed as a ``photo:`` model and saved/loaded like any session."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dragkit.invert.project import synthesize_image
from dragkit.nn.images import to_uint8
from tests.conftest import make_tiny_generator
from tests.test_studio_api import call, make_client, open_tab, recv_until

FEW = "align=false&steps_w=4&steps_wplus=4&steps_pti=3"


def photo_bytes(fmt: str = "PNG", size: tuple[int, int] = (96, 80)) -> bytes:
    G = make_tiny_generator(seed=5)
    torch.manual_seed(2)
    with torch.no_grad():
        img = to_uint8(synthesize_image(G, G.mapping(torch.randn(1, 16), psi=0.7)))[0]
    buf = io.BytesIO()
    Image.fromarray(img).resize(size).save(buf, fmt)
    return buf.getvalue()


def _err(r: Any, status: int, code: str, text: str = "") -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()["error"]
    assert body["code"] == code and text in body["message"], body


def test_open_photo_makes_a_draggable_photo_model_that_sessions_remember(tmp_path: Path) -> None:
    G = make_tiny_generator()
    with make_client(G, tmp_path, photos_dir=tmp_path / "photos") as c:
        sid = c.post("/api/sessions").json()["session"]
        r = c.post(f"/api/sessions/{sid}/photo?name=me.png&{FEW}", content=photo_bytes())
        assert r.status_code == 200, r.text
        state = r.json()
        model = state["model"]
        assert model.startswith("photo:me-") and state["step"] == 0 and state["image"]
        folder = tmp_path / "photos" / model.removeprefix("photo:")
        assert (folder / "model.safetensors").is_file() and (folder / "report.json").is_file()
        assert model in [m["id"] for m in c.get("/api/models").json()["models"]]
        again = c.post(
            f"/api/sessions/{sid}/photo?name=me.png&align=false&steps_w=4&steps_wplus=4&steps_pti=1",
            content=photo_bytes(),
        ).json()  # the same photo again, tuned less: the new weights are served
        assert again["model"] == model and again["image"] != state["image"]
        s = c.post(f"/api/sessions/{sid}/command", json={"type": "add_point", "handle": [10, 12], "target": [16, 14]})
        assert s.json()["handles"] == [[10, 12]]
        saved = c.get(f"/api/sessions/{sid}/session.pt")
        assert saved.status_code == 200
    # A new studio (same photos folder) opens the saved session on the tuned generator.
    with make_client(G, tmp_path, photos_dir=tmp_path / "photos") as c:
        sid = c.post("/api/sessions").json()["session"]
        loaded = c.post(f"/api/sessions/{sid}/session", content=saved.content).json()
        assert loaded["model"] == model and loaded["handles"] == [[10, 12]]


def test_progress_reaches_the_tab_and_other_tabs_keep_working(tmp_path: Path) -> None:
    G = make_tiny_generator()
    with make_client(G, tmp_path, photos_dir=tmp_path / "photos") as c:
        ws = open_tab(c)
        other = open_tab(c)
        sid = ws.hello["session"]
        import threading

        result: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: result.update(
                r=c.post(f"/api/sessions/{sid}/photo?name=x.jpg&{FEW}", content=photo_bytes("JPEG"))
            )
        )
        t.start()
        call(other, {"type": "add_point", "handle": [5, 5], "target": [9, 9]})  # another tab is served meanwhile
        msg, seen = recv_until(ws, "state", limit=200)
        progress = [m for m in seen if m["type"] == "invert_progress"]
        t.join(timeout=120)
        assert result["r"].status_code == 200
        assert [p["stage"] for p in progress][:1] == ["w"] and progress[-1]["stage"] == "pti"
        assert any("image" in p for p in progress)
        assert msg["model"].startswith("photo:x-")
        ws.__exit__(None, None, None)
        other.__exit__(None, None, None)


def test_bad_photos_are_refused_with_one_line(tmp_path: Path) -> None:
    G = make_tiny_generator()
    with make_client(G, tmp_path, photos_dir=tmp_path / "photos", max_photo_bytes=50_000) as c:
        sid = c.post("/api/sessions").json()["session"]
        base = f"/api/sessions/{sid}/photo?{FEW}"
        _err(c.post(base, content=b""), 400, "bad_input", "empty upload")
        _err(c.post(base, content=b"not an image"), 422, "invalid", "not a readable image")
        _err(c.post(base, content=b"x" * 60_000), 413, "too_large")
        _err(c.post(base, content=photo_bytes(size=(40, 40))), 422, "invalid", "too small")
        _err(c.post(f"/api/sessions/{sid}/photo?steps_w=0", content=photo_bytes()), 422, "invalid")
        flat = io.BytesIO()
        Image.fromarray(np.full((90, 90, 3), 128, dtype=np.uint8)).save(flat, "PNG")
        r = c.post(f"/api/sessions/{sid}/photo?align=true&steps_w=2&steps_wplus=2&steps_pti=1", content=flat.getvalue())
        assert r.status_code in (404, 422) and ("no face" in r.text or "landmark" in r.text or "dlib" in r.text)
        assert (
            c.post(
                f"/api/sessions/{sid}/command", json={"type": "add_point", "handle": [1, 1], "target": [2, 2]}
            ).status_code
            == 200
        )
