"""``dragkit drag`` end to end on a tiny native checkpoint (written with dragkit.io.save_native)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dragkit.cli import main
from dragkit.engine import DragSession
from dragkit.io import load_generator, save_native
from tests.conftest import make_tiny_generator


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_native(make_tiny_generator(), tmp_path_factory.mktemp("ckpt") / "tiny32")


def _args(ckpt: Path, outdir: Path, *extra: str) -> list[str]:
    return [
        "drag",
        "--network",
        str(ckpt),
        "--seed",
        "0",
        "--handle",
        "10,12",
        "--target",
        "16,14",
        "--handle",
        "20,8",
        "--target",
        "14,4",
        "--lr",
        "0.02",
        "--steps",
        "4",
        "--outdir",
        str(outdir),
        *extra,
    ]


def test_drag_end_to_end(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[:, 4:28] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(_args(tiny_checkpoint, out, "--mask", str(tmp_path / "mask.png"), "--r2", "3")) == 0
    assert "final distances (px):" in capsys.readouterr().out

    result = json.loads((out / "result.json").read_text())
    assert set(result) >= {"handles", "targets", "distances", "steps", "seconds", "config"}
    assert result["steps"] == 4 and result["targets"] == [[16.0, 14.0], [14.0, 4.0]]
    assert result["config"]["r2"] == 3 and result["config"]["impl"] == "fast"

    latent = torch.load(out / "latent.pt", weights_only=True)
    assert isinstance(latent, torch.Tensor) and latent.shape == (1, 8, 16)
    sess = DragSession.load(out / "session.pt", load_generator(tiny_checkpoint))
    assert torch.equal(sess.ws, latent) and sess.step_count == 4 and sess.mask is not None
    assert [list(p) for p in sess.handles] == result["handles"]
    assert np.array_equal(np.asarray(Image.open(out / "final.png").convert("RGB")), sess.image())
    summary = json.loads((out / "session.json").read_text())
    assert summary["mask"] is True and summary["config"] == result["config"]
    assert [r["step"] for r in summary["trajectory"]] == [1, 2, 3, 4]
    assert summary["trajectory"][-1]["handles"] == result["handles"]

    for name in ("trajectory", "trajectory_overlay"):
        with Image.open(out / f"{name}.gif") as gif:
            assert gif.n_frames == 5 and gif.size == (32, 32)  # one frame per step + the final latent
        assert (out / f"{name}.mp4").stat().st_size > 0
    assert (out / "final_overlay.png").is_file()


def test_drag_no_video(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(_args(tiny_checkpoint, out, "--no-video", "--impl", "reference", "--steps", "2")) == 0
    assert not list(out.glob("trajectory*"))
    assert json.loads((out / "result.json").read_text())["config"]["impl"] == "reference"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--handle", "40,3", "--target", "3,3"], "outside the 32×32 image"),
        (["--handle", "3,3"], "2 --target"),
        (["--handle", "3;3", "--target", "3,3"], "expected X,Y"),
        (["--handle", "nan,3", "--target", "3,3"], "finite"),
        (["--mask", "MASK16"], "expected 32×32"),
        (["--lr", "-1"], "DragConfig.lr"),
        (["--stop-rule", "soon"], "stop_rule"),
        (["--device", "nonsense"], "--device"),
        (["--track-patch", "3"], "--track-patch applies to the patch and hybrid tracker, not 'nn'"),
        (["--optimize-ws", "0-x"], "--optimize-ws"),
    ],
)
def test_drag_bad_input_is_one_line_and_exit_2(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "m16.png")
    extra = [str(tmp_path / "m16.png") if e == "MASK16" else e for e in extra]
    assert main(_args(tiny_checkpoint, tmp_path / "out", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dragkit drag: error:") and message in err


def test_drag_unknown_impl_is_a_usage_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(_args(tiny_checkpoint, tmp_path / "out", "--impl", "slow"))
    assert info.value.code == 2


def test_resume_continues_a_saved_edit_exactly(tiny_checkpoint: Path, tmp_path: Path) -> None:
    assert main(_args(tiny_checkpoint, tmp_path / "whole", "--no-video", "--steps", "5")) == 0
    assert main(_args(tiny_checkpoint, tmp_path / "first", "--no-video", "--steps", "3")) == 0
    # no --network: the session names its model; no points: the saved ones go on
    resumed = ["drag", "--resume", str(tmp_path / "first" / "session.pt"), "--steps", "2", "--lr", "0.02"]
    assert main([*resumed, "--no-video", "--outdir", str(tmp_path / "second")]) == 0
    whole = json.loads((tmp_path / "whole" / "session.json").read_text())
    second = json.loads((tmp_path / "second" / "session.json").read_text())
    assert second["trajectory"] == whole["trajectory"]
    latents = [torch.load(tmp_path / d / "latent.pt", weights_only=True) for d in ("whole", "second")]
    assert torch.equal(*latents)
    result = json.loads((tmp_path / "second" / "result.json").read_text())
    assert (result["steps"], result["steps_this_run"], result["seed"]) == (5, 2, 0)  # the seed comes from the session
    assert result["resumed_from"].endswith("session.pt")


def test_resume_refuses_what_cannot_change_and_bad_files(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(tiny_checkpoint, tmp_path / "first", "--no-video", "--steps", "1")) == 0
    session = str(tmp_path / "first" / "session.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    for extra, message in [
        (["--resume", session, "--w-mode", "w"], "w_mode"),
        (["--resume", str(tmp_path / "junk.pt")], "not a readable dragkit session file"),
        (["--resume", str(tmp_path / "missing.pt")], "not found"),
        (["--handle", "3,3", "--target", "5,5"], "give --network"),
    ]:
        assert main(["drag", *extra, "--outdir", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_outputs_are_written_whole_or_not_at_all(tmp_path: Path) -> None:
    """A write that fails part-way leaves the previous file and no temporary one; a killed run's leftovers go."""
    from dragkit.files import atomic_path, remove_stale_partials
    from dragkit.render import VideoWriter

    target = tmp_path / "trajectory.gif"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), VideoWriter(target) as writer:
        writer.append(np.zeros((8, 8, 3), np.uint8))
        raise RuntimeError("killed mid-video")
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["trajectory.gif"]
    with VideoWriter(target) as writer:
        writer.append(np.zeros((8, 8, 3), np.uint8))
    assert target.read_bytes()[:3] == b"GIF"
    with pytest.raises(OSError), atomic_path(tmp_path / "final.png") as tmp:
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trajectory.gif"]
    (tmp_path / ".final.999999999.partial.png").write_bytes(b"left by a killed run")
    assert [p.name for p in remove_stale_partials(tmp_path)] == [".final.999999999.partial.png"]


def test_drag_that_arrives_early_still_gets_evenly_spaced_video_frames(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Frames are planned for --steps; an edit that arrives early has the missing ones rendered from its latents."""
    one = ["drag", "--network", str(tiny_checkpoint), "--handle", "10,12", "--target", "16,14", "--lr", "0.02"]
    assert main([*one, "--no-video", "--steps", "12", "--stop-rule", "0.001", "--outdir", str(tmp_path / "a")]) == 0
    distances = [r["distances"][0] for r in json.loads((tmp_path / "a" / "session.json").read_text())["trajectory"]]
    threshold = min(distances) + 1e-3
    arrival = next(i for i, d in enumerate(distances) if d <= threshold) + 1  # the step that reports arrival
    assert arrival >= 3, distances
    out = tmp_path / "early"
    assert (
        main([*one, "--steps", "40", "--video-frames", "5", "--stop-rule", str(threshold), "--outdir", str(out)]) == 0
    )
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == arrival and result["done"]
    expected = min(5, arrival)  # positions 0 … arrival - 1 (the arrived step does not move the latent)
    assert result["video_frames"] == expected
    for name in ("trajectory", "trajectory_overlay"):
        with Image.open(out / f"{name}.gif") as gif:
            assert gif.n_frames == expected


def _complete(path: Path, G: Any) -> None:
    """``path`` is a whole output file of ``dragkit drag`` (raises otherwise)."""
    if path.suffix in (".png", ".gif"):
        with Image.open(path) as im:
            for i in range(getattr(im, "n_frames", 1)):
                im.seek(i)
                im.load()
    elif path.suffix == ".mp4":
        data = path.read_bytes()
        assert data[4:8] == b"ftyp" and b"moov" in data, path  # ffmpeg writes the index last
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.name == "session.pt":
        DragSession.load(path, G)
    else:
        assert isinstance(torch.load(path, weights_only=True), torch.Tensor), path


def test_sigkill_at_any_point_leaves_whole_files_and_the_next_run_removes_the_litter(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """``dragkit drag`` killed with SIGKILL at several points of a run: every file in the output folder is either
    the previous run's or a complete new one; the next run leaves no temporary file behind."""
    import signal
    import subprocess
    import sys
    import time

    G = load_generator(tiny_checkpoint)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dragkit", *_args(tiny_checkpoint, out, "--steps", "60", "--video-frames", "60")]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)  # a previous, complete run
    whole_run = time.perf_counter() - start
    for fraction in (0.6, 0.8, 0.9, 1.0):  # start-up, the drag, the videos, the last files
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(whole_run * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        for path in out.iterdir():
            if not path.name.startswith("."):  # temporary files are hidden and removed by the next run
                _complete(path, G)
    assert main(_args(tiny_checkpoint, out, "--steps", "2")) == 0
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_exchange_swaps_two_folders_in_one_step(tmp_path: Path) -> None:
    from dragkit.files import exchange

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "new").write_text("new")
    (b / "old").write_text("old")
    assert exchange(a, b)  # Linux (the machines dragkit supports for this) has renameat2
    assert [p.name for p in b.iterdir()] == ["new"] and [p.name for p in a.iterdir()] == ["old"]
    with pytest.raises(FileNotFoundError):
        exchange(tmp_path / "missing", a)


def test_videos_do_not_change_the_edit(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Rendering video frames during the drag leaves the handles and the latent exactly as without videos."""
    assert main(_args(tiny_checkpoint, tmp_path / "plain", "--no-video", "--steps", "9")) == 0
    assert main(_args(tiny_checkpoint, tmp_path / "video", "--steps", "9", "--video-frames", "4")) == 0
    plain, video = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("plain", "video"))
    assert plain["handles"] == video["handles"] and plain["distances"] == video["distances"]
    assert video["video_frames"] == 4
    latents = [torch.load(tmp_path / d / "latent.pt", weights_only=True) for d in ("plain", "video")]
    assert torch.equal(*latents)
