"""dragkit.render: overlays (handles red, targets blue, arrows, mask tint) and video export (mp4, gif)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragkit.errors import InvalidInputError
from dragkit.render import HANDLE_COLOR, TARGET_COLOR, VideoWriter, draw_points, write_video
from dragkit.render.trajectory import TrajectoryFrames, fill_positions, frame_stride
from dragkit.render.video import fit_size


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


def test_video_size_caps_the_longer_side_and_never_upscales(tmp_path: Path) -> None:
    import imageio_ffmpeg

    path = write_video(_frames(3, 64, 96), tmp_path / "v.mp4", size=48)
    assert imageio_ffmpeg.read_frames(str(path)).__next__()["size"] == (48, 32)
    with Image.open(write_video(_frames(3, 32, 48), tmp_path / "v.gif", size=480)) as im:
        assert im.size == (48, 32)
    assert fit_size((1024, 512), 384) == (384, 192) and fit_size((10, 10), None) == (10, 10)
    with pytest.raises(InvalidInputError, match="video size"):
        VideoWriter(tmp_path / "v.gif", size=0)


def test_gif_frames_share_one_palette_that_covers_every_frame(tmp_path: Path) -> None:
    """A colour that only appears late in the clip is still in the shared palette."""
    frames = [np.full((16, 16, 3), 10 * i, np.uint8) for i in range(20)]
    frames[-1][:] = (200, 40, 90)
    with Image.open(write_video(frames, tmp_path / "v.gif")) as im:
        im.seek(im.n_frames - 1)  # (Pillow merges frames that quantise alike)
        assert np.abs(np.asarray(im.convert("RGB")).astype(int) - (200, 40, 90)).max() <= 4


@pytest.mark.parametrize(("max_steps", "frames", "stride"), [(100, 40, 3), (300, 40, 8), (10, 40, 1), (0, 2, 1)])
def test_frame_stride(max_steps: int, frames: int, stride: int) -> None:
    assert frame_stride(max_steps, frames) == stride
    with pytest.raises(InvalidInputError, match="at least 2"):
        frame_stride(10, 1)


def test_fill_positions_spreads_frames_over_an_edit_that_stopped_early() -> None:
    have = [0, 8, 16, 20]  # a 300-step plan (stride 8) that arrived at step 20
    fill = fill_positions(have, 0, 20, 11)
    assert fill == [2, 4, 6, 10, 12, 14, 18]
    spacing = 2
    assert all(min(abs(p - q) for q in [*have, *fill]) <= spacing / 2 for p in range(0, 21, spacing))
    assert fill_positions([*range(0, 100, 3), 100], 0, 100, 40) == []  # the plan (and the final image) covered it
    assert fill_positions([0, 4, 8], 0, 8, 40) == [1, 2, 3, 5, 6, 7]  # fewer steps than frames: every one
    assert fill_positions([], 5, 7, 40) == [5, 6, 7]  # a resumed edit: only its own positions
    assert fill_positions([7], 7, 7, 40) == []


def test_trajectory_frames_write_plain_and_overlay_in_order(tmp_path: Path) -> None:
    mask = np.zeros((64, 32), dtype=bool)
    mask[:, :16] = True
    video = TrajectoryFrames((64, 32), size=32, mask=mask)
    for position in (4, 0, 2):
        video.add(position, np.full((64, 32, 3), 40 * position, np.uint8), [(8, 8)], [(24, 56)])
    assert video.positions == [0, 2, 4] and video.shape == (32, 16)
    plain, overlay = video.write([(tmp_path / "v.gif", False, None), (tmp_path / "o.gif", True, None)], fps=10)
    with Image.open(plain) as a, Image.open(overlay) as b:
        assert a.n_frames == b.n_frames == 3 and a.size == (16, 32)
        means = []
        for i in range(3):
            a.seek(i)
            b.seek(i)
            means.append(np.asarray(a.convert("RGB")).mean())
            assert not np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
        assert means == pytest.approx([0, 80, 160], abs=3)
    with pytest.raises(InvalidInputError, match="expected uint8"):
        video.add(1, np.zeros((32, 32, 3), np.uint8), [], [])
