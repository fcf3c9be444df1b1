"""Every family the loader reads, driven end to end on tiny seeded generators written in their own file layouts:
StyleGAN3 (stylegan3-repo pickle), TF-era StyleGAN2 ((G, D, Gs) pickle), StyleGAN-Human (non-square, H = 2 W)
and a conditional StyleGAN2. ``dragkit drag`` runs on each, the studio opens non-square and conditional models."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from dragkit.cli import main
from dragkit.engine import DragConfig, DragSession
from dragkit.errors import InvalidInputError
from dragkit.io import load_generator
from dragkit.nn.stylegan2 import StyleGAN2Config
from tests.ckpt_writers import human_snapshot, stylegan3_snapshot, tf_snapshot, write_nvidia_pickle
from tests.conftest import TINY_CONFIG, make_tiny_generator
from tests.test_nn_stylegan3 import R_CONFIG, T_CONFIG, make_sg3
from tests.test_studio_api import call, recv_until

HUMAN = StyleGAN2Config.from_dict({**TINY_CONFIG.to_dict(), "square": False})
COND = StyleGAN2Config.from_dict({**TINY_CONFIG.to_dict(), "c_dim": 5})
TF = StyleGAN2Config.from_dict({**TINY_CONFIG.to_dict(), "conv_clamp": None})


def _write(kind: str, path: Path) -> Path:
    writers: dict[str, Callable[[], bytes]] = {
        "stylegan3-t": lambda: stylegan3_snapshot(make_sg3(T_CONFIG)),
        "stylegan3-r": lambda: stylegan3_snapshot(make_sg3(R_CONFIG)),
        "tf-config-f": lambda: tf_snapshot(make_tiny_generator(0, TF)),
        "human": lambda: human_snapshot(make_tiny_generator(0, HUMAN)),
    }
    if kind == "conditional":
        return write_nvidia_pickle(make_tiny_generator(0, COND), path)
    path.write_bytes(writers[kind]())
    return path


@pytest.mark.parametrize("kind", ["stylegan3-t", "stylegan3-r", "tf-config-f", "human", "conditional"])
def test_cli_drag_moves_the_handle_on_every_family(kind: str, tmp_path: Path) -> None:
    ckpt = _write(kind, tmp_path / f"{kind}.pkl")
    # On the non-square model the image is 32 high and 16 wide: the points stay inside x < 16.
    handle, target = ("6,12", "12,16") if kind == "human" else ("10,12", "18,14")
    extra = ["--class", "3"] if kind == "conditional" else []
    args = ["drag", "--network", str(ckpt), "--seed", "0", "--handle", handle, "--target", target]
    args += ["--lr", "0.02", "--r1", "2", "--r2", "3", "--steps", "10", "--video-frames", "4", *extra]
    assert main([*args, "--outdir", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    (hx, hy), (tx, ty) = (map(float, p.split(",")) for p in (handle, target))
    assert all(math.isfinite(v) for v in result["handles"][0])
    assert result["distances"][0] < math.dist((hx, hy), (tx, ty))
    final = np.asarray(Image.open(tmp_path / "out" / "final.png"))
    assert final.shape == ((32, 16, 3) if kind == "human" else (32, 32, 3))
    if kind == "conditional":
        sess = DragSession.load(tmp_path / "out" / "session.pt", load_generator(ckpt))
        assert sess.meta["class"] == 3


def test_cli_class_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cond = _write("conditional", tmp_path / "c.pkl")
    base = ["drag", "--seed", "0", "--handle", "10,12", "--target", "18,14", "--steps", "1", "--no-video"]
    assert main([*base, "--network", str(cond), "--class", "5", "--outdir", str(tmp_path / "a")]) == 2
    assert "conditional on 5 classes: the class must be in [0, 4]" in capsys.readouterr().err
    assert main([*base, "--network", str(cond), "--outdir", str(tmp_path / "b")]) == 2
    plain = _write("human", tmp_path / "h.pkl")
    assert main([*base, "--network", str(plain), "--class", "1", "--outdir", str(tmp_path / "c")]) == 2
    assert "unconditional" in capsys.readouterr().err


def test_classes_give_different_latents_and_are_recorded() -> None:
    G = make_tiny_generator(0, COND)
    a = DragSession.from_seed(G, 0, class_idx=0)
    b = DragSession.from_seed(G, 0, class_idx=4)
    assert not torch.equal(a.ws, b.ws) and b.meta["class"] == 4
    with pytest.raises(InvalidInputError, match="conditional on 5 classes"):
        DragSession.from_seed(G, 0)


def test_non_square_drag_tracks_in_image_coordinates() -> None:
    """H ≠ W: points are (x, y) with x < W = 16 and y < H = 32; the engine's maps follow the image shape."""
    G = make_tiny_generator(0, HUMAN)
    assert G.img_shape == (32, 16)
    sess = DragSession.from_seed(G, 0, psi=0.7, config=DragConfig(lr=0.02, r1=2, r2=3))
    assert sess.image().shape == (32, 16, 3)
    sess.set_points([(6.0, 24.0)], [(10.0, 28.0)])
    start = sess.status().distances[0]
    for _ in range(10):
        sess.step()
    x, y = sess.handles[0]
    assert 0 <= x < 16 and 0 <= y < 32 and sess.status().distances[0] < start
    with pytest.raises(InvalidInputError):
        sess.set_points([(20.0, 5.0)], [(1.0, 1.0)])  # x beyond the width


def test_studio_opens_non_square_and_conditional_models(tmp_path: Path) -> None:
    human = make_tiny_generator(0, HUMAN)
    cond = make_tiny_generator(1, COND)
    (tmp_path / "models").mkdir()
    app_generators = {"human": human, "cond": cond}

    from dragkit.studio.server import StudioConfig, create_app

    app = create_app(StudioConfig(network="human", models_dir=tmp_path / "models", seed=1), generators=app_generators)
    with TestClient(app) as c, c.websocket_connect("/ws") as ws:
        state, _ = recv_until(ws, "state")
        assert (state["width"], state["height"], state["c_dim"], state["class_idx"]) == (16, 32, 0, None)
        s = call(ws, {"type": "add_point", "handle": [5, 20], "target": [12, 26]})
        assert s["handles"] == [[5, 20]]
        bad = call(ws, {"type": "add_point", "handle": [20, 5], "target": [1, 1]})
        assert bad["type"] == "error" and bad["code"] == "out_of_range"
        refused = call(ws, {"type": "new_image", "seed": 1, "class_idx": 2})
        assert refused["type"] == "error" and "unconditional" in refused["message"]
        s = call(ws, {"type": "new_image", "seed": 1, "model": "cond"})
        assert (s["width"], s["height"], s["c_dim"], s["class_idx"]) == (32, 32, 5, 0)
        s2 = call(ws, {"type": "new_image", "seed": 1, "class_idx": 3})
        assert s2["class_idx"] == 3 and s2["image"] != s["image"]
        s3 = call(ws, {"type": "new_image", "seed": 2})  # same model: the class is kept
        assert s3["class_idx"] == 3
        err = call(ws, {"type": "new_image", "seed": 1, "class_idx": 5})
        assert err["type"] == "error" and "[0, 4]" in err["message"]
        back = call(ws, {"type": "new_image", "seed": 1, "model": "human"})
        assert back["c_dim"] == 0 and back["class_idx"] is None
