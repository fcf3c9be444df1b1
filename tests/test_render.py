"""dragkit.render: overlays (handles red, targets blue, arrows, mask tint) and video export (mp4, gif)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragkit.errors import InvalidInputError
from dragkit.render import HANDLE_COLOR, TARGET_COLOR, VideoWriter, draw_points, write_video


def _grey(h: int = 64, w: int = 64) -> np.ndarray:
    return np.full((h, w, 3), 128, dtype=np.uint8)


def test_draw_points_colours_and_arrow() -> None:
    img = _grey()
    out = draw_points(img, [(10, 32)], [(50, 32)])
    assert out.dtype == np.uint8 and out.shape == img.shape and np.all(img == 128)  # input untouched
    assert tuple(out[32, 10]) == HANDLE_COLOR
    assert tuple(out[32, 50]) == TARGET_COLOR
    assert tuple(out[32, 30]) == (255, 255, 255)  # arrow shaft halfway
    assert np.all(out[5, 5] == 128) and np.all(out[60, 30] == 128)  # far from the overlay: unchanged


def test_draw_points_mask_tint_darkens_only_the_fixed_region() -> None:
    mask = np.zeros((64, 64), dtype=bool)
    mask[:, :32] = True  # left half movable
    out = draw_points(_grey(), [], [], mask=mask)
    assert np.all(out[:, :32] == 128)
    assert np.all(out[:, 32:] < 128)


def test_draw_points_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="as many targets"):
        draw_points(_grey(), [(1, 1)], [])
    with pytest.raises(InvalidInputError, match="uint8"):
        draw_points(_grey().astype(np.float32), [], [])
    with pytest.raises(InvalidInputError, match="mask"):
        draw_points(_grey(), [], [], mask=np.zeros((8, 8), dtype=bool))


def _frames(n: int, h: int = 32, w: int = 48) -> list[np.ndarray]:
    return [np.full((h, w, 3), 20 * i, dtype=np.uint8) for i in range(n)]


def test_write_mp4_round_trip(tmp_path: Path) -> None:
    import imageio_ffmpeg

    path = write_video(_frames(6), tmp_path / "v.mp4", fps=12)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    frames = list(reader)
    assert meta["size"] == (48, 32) and len(frames) == 6
    means = [np.frombuffer(f, np.uint8).mean() for f in frames]
    assert means == pytest.approx([20 * i for i in range(6)], abs=3)


def test_write_mp4_pads_odd_sizes(tmp_path: Path) -> None:
    import imageio_ffmpeg

    path = write_video(_frames(2, 31, 33), tmp_path / "odd.mp4")
    meta = imageio_ffmpeg.read_frames(str(path)).__next__()
    assert meta["size"] == (34, 32)


def test_write_gif(tmp_path: Path) -> None:
    path = write_video(_frames(5), tmp_path / "v.gif", fps=20)
    with Image.open(path) as im:
        assert im.n_frames == 5 and im.size == (48, 32) and im.info["duration"] == 50
        im.seek(3)
        assert np.asarray(im.convert("RGB")).mean() == pytest.approx(60, abs=2)


def test_video_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"\.mp4 or \.gif"):
        VideoWriter(tmp_path / "v.avi")
    with pytest.raises(InvalidInputError, match="no frames"):
        write_video([], tmp_path / "v.gif")
    with pytest.raises(InvalidInputError, match="expected size"):
        write_video([_frames(1)[0], _frames(1, 16, 16)[0]], tmp_path / "v.gif")
    with pytest.raises(InvalidInputError, match="uint8"):
        write_video([np.zeros((8, 8, 3), np.float32)], tmp_path / "v.mp4")
