"""The quality guard: sharpness of the edit region, and going back to the last sharp step when it degrades."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dragkit.cli import main
from dragkit.engine import DragConfig, DragSession
from dragkit.engine import session as session_mod
from dragkit.engine.guard import GUARD_EVERY, GUARD_MIN_SIDE, guard_region, sharpness
from dragkit.engine.result import StepResult
from dragkit.io import save_native
from tests.conftest import TINY_CONFIG, make_tiny_generator

CONFIG_64 = dataclasses.replace(TINY_CONFIG, img_resolution=64)


def test_sharpness_falls_when_a_region_blurs_and_ignores_the_rest() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.rand([1, 3, 64, 64], generator=g) * 2 - 1
    blurred = img.clone()
    blurred[..., 8:40, 8:40] = F.avg_pool2d(img[..., 8:40, 8:40], 3, stride=1, padding=1, count_include_pad=False)
    box = (8, 8, 40, 40)
    assert sharpness(blurred, box) < 0.5 * sharpness(img, box)
    assert sharpness(blurred, (44, 44, 64, 64)) == pytest.approx(sharpness(img, (44, 44, 64, 64)))
    assert sharpness(torch.zeros([1, 3, 16, 16]), (0, 0, 16, 16)) == 0.0


def test_guard_region_is_the_mask_box_or_the_padded_points() -> None:
    mask = torch.zeros([128, 128], dtype=torch.bool)
    mask[20:60, 30:90] = True
    assert guard_region([(0.0, 0.0)], mask, (128, 128)) == (30, 20, 90, 60)
    assert guard_region([(64.0, 64.0), (70.0, 60.0)], None, (128, 128)) == (48, 44, 87, 81)
    assert guard_region([(1.0, 1.0)], None, (128, 128)) == (0, 0, 18, 18)  # clipped to the image
    full = torch.ones([128, 128], dtype=torch.bool)  # all movable: the points decide
    assert guard_region([(64.0, 64.0)], full, (128, 128)) == (48, 48, 81, 81)
    assert guard_region([], None, (32, 32)) == (0, 0, 32, 32)


class Schedule:
    """Stands in for the measured sharpness so a trip happens where the test wants: the first value is the segment
    start's (the reference; a check on the segment's first step is that frame), then one value per check."""

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.calls = 0

    def __call__(self, image: torch.Tensor, box: Any) -> float:
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return value


def _session(**config: Any) -> DragSession:
    """A 64 × 64 model with a 52 × 52 movable region: large enough to measure."""
    G = make_tiny_generator(config=CONFIG_64)
    sess = DragSession.from_seed(G, 0, config=DragConfig(lr=0.01, **config), model_id="tiny64")
    sess.set_points([(30.0, 32.0)], [(44.0, 30.0)])
    mask = np.zeros((64, 64), dtype=bool)
    mask[6:58, 6:58] = True
    sess.set_mask(mask)
    return sess


def test_a_trip_goes_back_to_the_last_sharp_step_and_history_survives(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    schedule = Schedule([1.0, 0.9, 0.5])  # the reference (also step 0's frame), then the checks at steps 10 and 20
    monkeypatch.setattr(session_mod, "sharpness", schedule)
    sess = _session(stop_rule=0.01)
    last = sess.run(max_steps=60)
    assert last.degraded and last.sharpness == 0.5 and last.loss is None and not last.done
    assert sess.step_count == 2 * GUARD_EVERY - GUARD_EVERY == 10  # step 11 checked the latent after 10 steps
    checked = [r.sharpness for r in sess.trajectory if r.sharpness is not None]
    assert checked == [1.0]  # step 1's check; step 11's (0.9, of this latent) is one of the undone steps
    assert sess.can_redo  # the steps after it are kept for redo
    sess.redo(GUARD_EVERY)
    assert sess.step_count == 20
    assert [r.sharpness for r in sess.trajectory if r.sharpness is not None] == [1.0, 0.9]
    sess.undo(GUARD_EVERY)
    loaded = DragSession.load(sess.save(tmp_path / "s.pt"), sess.generator)
    assert loaded.step_count == 10 and loaded.trajectory == sess.trajectory
    # going on deliberately: with the guard off the drag continues past the trip
    sess.set_config(guard=False)
    after = sess.run(max_steps=15)
    assert not after.degraded and sess.step_count == 25


def test_a_trip_before_any_passed_check_goes_back_to_the_segment_start(monkeypatch: pytest.MonkeyPatch) -> None:
    sess = _session(guard=False)
    sess.run(max_steps=5)
    sess.set_config(guard=True)
    sess.set_points([(20.0, 20.0)], [(40.0, 40.0)])  # a new segment, starting at step 5
    monkeypatch.setattr(session_mod, "sharpness", Schedule([1.0, 0.1]))
    result = sess.step()  # step 5 is no check
    assert not result.degraded and result.sharpness is None
    last = sess.run(max_steps=20)  # the check at step 10 is the segment's first, and fails
    assert last.degraded and last.sharpness == 0.1 and sess.step_count == 5
    assert sess.handles == [(20.0, 20.0)]


def test_no_measure_on_tiny_images_and_no_trip_when_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    G = make_tiny_generator()  # 32 × 32: the region is under GUARD_MIN_SIDE
    assert G.img_shape[0] < GUARD_MIN_SIDE
    sess = DragSession.from_seed(G, 0)
    sess.set_points([(10.0, 12.0)], [(16.0, 14.0)])
    assert all(sess.step().sharpness is None for _ in range(GUARD_EVERY + 1))
    monkeypatch.setattr(session_mod, "sharpness", Schedule([1.0, 0.1]))
    off = _session(guard=False)  # still measured (and reported), never acted on
    results = [off.step() for _ in range(GUARD_EVERY + 1)]
    assert [r.sharpness for r in results if r.sharpness is not None] == [1.0, 0.1]
    assert not any(r.degraded for r in results) and off.step_count == GUARD_EVERY + 1
    monkeypatch.undo()
    on = _session()
    results = [on.step() for _ in range(GUARD_EVERY + 1)]
    assert [r.step for r in results if r.sharpness is not None] == [1, GUARD_EVERY + 1]


def test_step_results_carry_the_check() -> None:
    r = StepResult(11, [(0.0, 0.0)], [(1.0, 1.0)], [1.4], None, False, sharpness=0.5, degraded=True)
    assert StepResult.from_dict(r.to_dict()) == r
    old = {k: v for k, v in r.to_dict().items() if k not in ("sharpness", "degraded")}  # files written before
    assert StepResult.from_dict(old) == StepResult(11, [(0.0, 0.0)], [(1.0, 1.0)], [1.4], None, False)


def test_cli_says_when_the_guard_stopped_the_drag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = save_native(make_tiny_generator(config=CONFIG_64), tmp_path / "tiny64")
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[6:58, 6:58] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    args = ["drag", "--network", str(ckpt), "--seed", "0", "--handle", "30,32", "--target", "44,30", "--lr", "0.01"]
    args += ["--mask", str(tmp_path / "mask.png")]
    args += ["--stop-rule", "0.01", "--steps", "40", "--video-frames", "4"]
    monkeypatch.setattr(session_mod, "sharpness", Schedule([1.0, 0.5]))
    assert main([*args, "--outdir", str(tmp_path / "on")]) == 0
    out = capsys.readouterr().out
    assert "stopped: the image started to degrade (edit region at 50% of its sharpness) — kept step 0" in out
    result = json.loads((tmp_path / "on" / "result.json").read_text())
    assert result["stopped"] == "degraded" and result["steps"] == 0 and result["sharpness"] == 0.5
    monkeypatch.setattr(session_mod, "sharpness", Schedule([1.0, 0.5]))
    assert main([*args, "--no-guard", "--outdir", str(tmp_path / "off")]) == 0
    result = json.loads((tmp_path / "off" / "result.json").read_text())
    assert result["stopped"] == "max_steps" and result["steps"] == 40 and result["config"]["guard"] is False


def test_studio_stops_on_a_trip_and_shows_the_last_sharp_step(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.test_studio_api import call, drag, make_client, recv_until

    monkeypatch.setattr(session_mod, "sharpness", Schedule([1.0, 0.5]))
    with make_client(make_tiny_generator(config=CONFIG_64), tmp_path) as client, client.websocket_connect("/ws") as ws:
        recv_until(ws, "state")
        s = call(ws, {"type": "set_config", "lr": 0.01, "max_steps": 50, "latent_reg": 0.5})
        assert s["guard"] is True and s["latent_reg"] == 0.5
        call(ws, {"type": "add_point", "handle": [30, 32], "target": [44, 30]})
        call(ws, {"type": "mask_stroke", "points": [[32, 32]], "radius": 26, "mode": "movable"})
        stopped, frames = drag(ws)
        assert stopped["reason"] == "degraded" and stopped["sharpness"] == 0.5
        assert stopped["step"] == 0 and stopped["can_redo"] and "image" in stopped
        assert frames and frames[0]["sharpness"] == pytest.approx(1.0, abs=1e-3)
        s = call(ws, {"type": "set_config", "guard": False})  # go on deliberately
        assert s["guard"] is False
        stopped, _ = drag(ws)
        assert stopped["reason"] == "max_steps"


@pytest.mark.parametrize("kind", ["mobilestylegan", "stylegan3-t", "stylegan3-r", "tf-config-f", "human"])
def test_checks_and_trips_on_every_family(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every family the loader reads (tiny generators from their own file layouts; the check's minimum region
    lowered to fit 32-px images): checks report a sharpness, and a trip goes back as on StyleGAN2."""
    from dragkit.io import load_generator
    from tests.test_families_e2e import _write
    from tests.test_mobilestylegan import make_tiny as make_tiny_msg

    G = make_tiny_msg() if kind == "mobilestylegan" else load_generator(_write(kind, tmp_path / f"{kind}.pkl"))
    monkeypatch.setattr(session_mod, "GUARD_MIN_SIDE", 8)
    H, W = G.img_shape
    handle, target = (0.3 * W, 0.4 * H), (0.6 * W, 0.5 * H)
    sess = DragSession.from_seed(G, 0, config=DragConfig(lr=0.01, r1=2, r2=3, stop_rule=0.01))
    sess.set_points([handle], [target])
    results = [sess.step() for _ in range(GUARD_EVERY + 1)]
    checked = [r for r in results if r.sharpness is not None]
    assert [r.step for r in checked] == [1, GUARD_EVERY + 1] and checked[0].sharpness == pytest.approx(1.0, abs=1e-3)
    monkeypatch.setattr(session_mod, "sharpness", Schedule([1.0, 0.5]))
    sess.set_points([handle], [target])
    last = sess.run(max_steps=3 * GUARD_EVERY)
    assert last.degraded and sess.step_count == GUARD_EVERY + 1
