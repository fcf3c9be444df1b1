"""The jobs layer without Ray: the resumable result log, batch cases and their drags, the landmark protocol's
cases and summary, ``dragkit batch`` and ``dragkit eval`` serially on a tiny generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dragkit.cli import main
from dragkit.errors import InvalidInputError
from dragkit.io import save_native
from dragkit.jobs.batch import read_cases
from dragkit.jobs.execute import VOLATILE, Outcome, ResultLog, check_run_settings, execute
from dragkit.jobs.landmarks import draw_subsets, eval_to_image, image_to_eval, landmark_cases, summarise
from tests.conftest import make_tiny_generator


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_native(make_tiny_generator(), tmp_path_factory.mktemp("ckpt") / "tiny32")


def write_cases(folder: Path, n: int, steps: int = 6) -> Path:
    """``n`` drags on seeds 0 … n − 1, every second one with a mask file beside the cases."""
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[:, 4:28] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    lines = []
    for i in range(n):
        case: dict[str, Any] = {"id": f"c{i}", "seed": i, "handles": [[10, 12]], "targets": [[16, 14]]}
        case["config"] = {"lr": 0.02, "max_steps": steps}
        if i % 2:
            case["mask"] = "mask.png"
        lines.append(json.dumps(case))
    path = folder / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without the fields that depend on where and how fast it ran."""
    return {k: v for k, v in record.items() if k not in VOLATILE}


def test_result_log_resumes_and_cuts_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    log = ResultLog(path)
    log.write({"id": "a", "x": 1})
    log.write({"id": "b", "error": "boom"})
    log.close()
    with open(path, "a") as f:
        f.write('{"id": "c", "x"')  # the driver was killed mid-line
    log = ResultLog(path)
    assert log.finished() == {"a"} and set(log.records) == {"a", "b"}
    log.write({"id": "b", "x": 2})  # a failed case that ran again: the last record wins
    log.close()
    assert ResultLog(path).finished() == {"a", "b"}
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_run_settings_refuse_mixing(tmp_path: Path) -> None:
    check_run_settings(tmp_path, {"a": 1, "b": 2})
    check_run_settings(tmp_path, {"a": 1, "b": 2})  # the same settings: a resume
    with pytest.raises(InvalidInputError, match="b differ"):
        check_run_settings(tmp_path, {"a": 1, "b": 3})


class _Squares:
    """A worker that fails on one case."""

    def build(self) -> _Squares:
        return self

    def run(self, case: Any) -> Outcome:
        if case.id == "bad":
            raise ValueError("no square for you")
        return Outcome({"square": case.n**2}, {"n.txt": str(case.n).encode()})


class _Case:
    def __init__(self, id: str, n: int) -> None:
        self.id, self.n = id, n


def test_execute_serial_records_errors_and_skips_finished(tmp_path: Path) -> None:
    cases = [_Case("a", 2), _Case("bad", 0), _Case("c", 3)]
    log = ResultLog(tmp_path / "r.jsonl")
    stats = execute(_Squares(), cases, tmp_path, log, progress=False)
    assert (stats.done, stats.failed, stats.skipped) == (2, 1, 0)
    assert log.records["a"]["square"] == 4 and "ValueError: no square" in log.records["bad"]["error"]
    assert (tmp_path / "cases" / "c" / "n.txt").read_text() == "3"
    stats = execute(_Squares(), cases, tmp_path, log, progress=False)  # only the failed case runs again
    assert (stats.done, stats.failed, stats.skipped) == (0, 1, 2)
    log.close()
    with pytest.raises(InvalidInputError, match="unique"):
        execute(_Squares(), [_Case("a", 1), _Case("a", 2)], tmp_path, ResultLog(tmp_path / "s.jsonl"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"handles": [[1, 2]]}, "'targets' must be"),
        ({"handles": [[1, 2]], "targets": [[1, 2], [3, 4]]}, "1 handles but 2 targets"),
        ({"handles": [[1, 2]], "targets": [[1, 2]], "id": "../x"}, "id '../x'"),
        ({"handles": [[1, 2]], "targets": [[1, 2]], "config": {"lr": -1}}, "DragConfig.lr"),
        ({"handles": [[1, 2]], "targets": [[1, 2]], "mask": "missing.png"}, "mask .*missing.png"),
        ({"handles": [[1, 2]], "targets": [[1, 2]], "colour": 1}, "unknown keys"),
        ({"handles": [[1, 2]], "targets": [[1, 2]], "seed": -1}, "'seed' must be"),
    ],
)
def test_batch_lines_are_checked_with_their_line_number(tmp_path: Path, line: dict[str, Any], message: str) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text("# a comment\n" + json.dumps(line) + "\n")
    with pytest.raises(InvalidInputError, match=message) as info:
        read_cases(path, network="tiny")
    assert str(info.value).startswith("line 2:")


def test_batch_needs_a_network_and_unique_ids(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps({"handles": [[1, 2]], "targets": [[1, 2]]}) + "\n")
    with pytest.raises(InvalidInputError, match="no 'network'"):
        read_cases(path)
    assert read_cases(path, "tiny")[0].id == "line00001"
    line = json.dumps({"id": "x", "handles": [[1, 2]], "targets": [[1, 2]]})
    path.write_text(f"{line}\n{line}\n")
    with pytest.raises(InvalidInputError, match="used twice"):
        read_cases(path, "tiny")


def test_batch_writes_what_drag_writes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    cases = write_cases(tmp_path, 2)
    out = tmp_path / "batch"
    assert main(["batch", str(cases), "--network", str(tiny_checkpoint), "--out", str(out), "--no-video"]) == 0
    mask = tmp_path / "mask.png"
    drag_out = tmp_path / "drag"
    args = ["drag", "--network", str(tiny_checkpoint), "--seed", "1", "--handle", "10,12", "--target", "16,14"]
    assert (
        main([*args, "--lr", "0.02", "--steps", "6", "--mask", str(mask), "--no-video", "--outdir", str(drag_out)]) == 0
    )
    made = out / "cases" / "c1"
    assert sorted(p.name for p in made.iterdir()) == sorted(p.name for p in drag_out.iterdir())
    assert torch.equal(torch.load(made / "latent.pt"), torch.load(drag_out / "latent.pt"))
    assert (made / "final.png").read_bytes() == (drag_out / "final.png").read_bytes()
    a, b = json.loads((made / "result.json").read_text()), json.loads((drag_out / "result.json").read_text())
    assert {k: v for k, v in a.items() if "seconds" not in k} == {k: v for k, v in b.items() if "seconds" not in k}
    lines = [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == ["c0", "c1"] and lines[1]["steps"] == 6


def test_batch_resumes_and_reports_a_failed_case(tiny_checkpoint: Path, tmp_path: Path, capsys: Any) -> None:
    cases = write_cases(tmp_path, 3, steps=2)
    text = cases.read_text().splitlines()
    bad = json.loads(text[2])
    bad["handles"] = [[10, 12], [3, 3]]
    bad["targets"] = [[16, 14], [4, 4]]
    bad["mask"] = "wrong.png"
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(tmp_path / "wrong.png")  # not the model's size
    cases.write_text("\n".join([*text[:2], json.dumps(bad)]) + "\n")
    out = tmp_path / "out"
    argv = ["batch", str(cases), "--network", str(tiny_checkpoint), "--out", str(out), "--no-video"]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "2 now, 0 earlier" in printed and "c2: InvalidInputError" in printed and "mask is 16×16" in printed
    assert main(argv) == 1
    assert "0 now, 2 earlier" in capsys.readouterr().out  # finished cases are skipped; the failed one runs again
    assert main([*argv, "--lr", "0.5"]) == 2  # other settings into the same folder: refused
    assert "other settings" in capsys.readouterr().err


def test_landmark_cases_are_deterministic() -> None:
    cases = landmark_cases(3, [1, 5], seed_base=10)
    assert [c.id for c in cases] == ["pair0000-n1", "pair0000-n5", "pair0001-n1", "pair0001-n5", "pair0002-n1",
                                     "pair0002-n5"]  # fmt: skip
    assert cases[2].seeds == (12, 13) and cases[3].points == 5
    assert list(cases[3].landmarks) == list(draw_subsets(1, [1, 5])[5])
    five = landmark_cases(3, [5], draw_points=[1, 5, 68])  # the 5-point subsets of the paper's full run
    assert [c.landmarks for c in five] == [c.landmarks for c in cases if c.points == 5]
    with pytest.raises(InvalidInputError, match="draw-points"):
        landmark_cases(2, [5], draw_points=[1])


def test_eval_grid_mapping_round_trips() -> None:
    pts = np.array([[0.0, 0.0], [255.5, 100.0], [511.0, 511.0]])
    img = eval_to_image(pts, (1024, 1024))
    assert img[0] == (0.5, 0.5) and img[2] == (1022.5, 1022.5)
    np.testing.assert_allclose(image_to_eval(img, (1024, 1024)), pts)


def test_landmark_summary_counts_lost_skipped_and_failed() -> None:
    base = {"drift": 1.0, "tracked_to_target": 0.5, "steps": 10, "seconds": 1.0, "arrived": True, "image_change": 2.0}
    records = [
        {**base, "points": 1, "md": 2.0, "md_no_edit": 10.0},
        {**base, "points": 1, "md": 4.0, "md_no_edit": 10.0, "image_change": 6.0},
        {**base, "points": 1, "md": None, "md_no_edit": 30.0, "drift": None},  # face lost: not in the MD means
        {"points": 1, "skipped": "no face in one of the two images"},
        {"points": 5, "error": "boom"},
        {**base, "points": 5, "md": 1.0, "md_no_edit": 4.0, "arrived": False},
    ]
    s = summarise(records, [1, 5, 68])
    assert set(s) == {"1", "5"}
    assert (s["1"]["md"], s["1"]["md_no_edit"], s["1"]["ratio"]) == (3.0, 10.0, 0.3)
    assert (s["1"]["edits"], s["1"]["face_lost"], s["1"]["arrived"], s["1"]["skipped"]) == (3, 1, 3, 1)
    assert s["1"]["ratio_lost_as_no_edit"] == pytest.approx((2 + 4 + 30) / 50, abs=1e-3)
    assert (s["5"]["ratio"], s["5"]["arrived"], s["5"]["failed"]) == (0.25, 0, 1)


def test_eval_landmarks_on_a_model_without_faces_skips_every_pair(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """dlib finds no face in a 32² random generator: each case says so, and the report still comes out."""
    pytest.importorskip("dlib")
    out = tmp_path / "lm"
    argv = ["eval", "landmarks", "--network", str(tiny_checkpoint), "--cases", "2", "--out", str(out)]
    assert main([*argv, "--steps", "2"]) == 0
    records = [json.loads(line) for line in (out / "landmarks.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["pair0000-n1", "pair0000-n5", "pair0001-n1", "pair0001-n5"]
    assert all(r["skipped"] == "no face in one of the two images" for r in records)
    assert "skipped edits (no face found in a pair's images): 4" in (out / "summary.md").read_text()


def test_dis_flow_finds_a_shift_and_handles_follow_it() -> None:
    from dragkit.jobs.reconstruction import consistent, flow_pair, mse_parts, pick_handles

    rng = np.random.RandomState(0)
    small = rng.randint(0, 255, (24, 24, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(small).resize((96, 96), Image.Resampling.BICUBIC))
    shifted = np.roll(base, (2, 3), axis=(0, 1))  # content moves 3 px right, 2 px down
    forward, backward = flow_pair(base, shifted)
    ok = consistent(forward, backward)
    inner = (slice(20, 76), slice(20, 76))
    assert ok[inner].mean() > 0.9
    np.testing.assert_allclose(np.median(forward[inner].reshape(-1, 2), axis=0), [3, 2], atol=0.3)
    handles, targets = pick_handles(forward, ok, 8, seed=1)
    assert (handles, targets) == pick_handles(forward, ok, 8, seed=1) and len(set(handles)) == 8
    moved = np.array(targets) - np.array(handles)
    assert np.median(np.hypot(moved[:, 0] - 3, moved[:, 1] - 2)) < 0.5
    with pytest.raises(ValueError, match="consistent flow"):
        pick_handles(forward, np.zeros_like(ok), 4, seed=1)
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    b = a.copy()
    b[:2] = 255  # the top half differs by 1 (on [0, 1])
    moving = np.zeros((4, 4), dtype=bool)
    moving[:2] = True
    assert mse_parts(a, b, moving) == (50.0, 100.0, 0.0)
    assert mse_parts(a, b, np.zeros((4, 4), dtype=bool))[1] is None


def test_eval_reconstruction_on_a_tiny_generator(tiny_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    out = tmp_path / "rec"
    argv = ["eval", "reconstruction", "--network", str(tiny_checkpoint), "--cases", "2", "--handles", "4"]
    assert main([*argv, "--steps", "3", "--lr", "0.02", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "reconstruction.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["seed000000", "seed000001"]
    for r in records:
        assert r["handles"] == 4 and r["steps"] <= 3 and r["mse"] >= 0 and r["mse_no_edit"] >= 0
        assert r["lpips"] is None or r["lpips"] >= 0
    summary = (out / "summary.md").read_text()
    assert "RAFT" in summary and "MSE×100" in summary
    assert (out / "examples.png").is_file() and json.loads((out / "run.json").read_text())["config"]["max_steps"] == 3


def test_tracking_replay_starts_every_tracker_at_the_truth(tiny_checkpoint: Path) -> None:
    """The replay on a recorded tiny drag, with the truth taken as the handles' start (dlib finds no face in a
    32² random image): every tracker and Lucas–Kanade is exact at step 0 and reports one error per step."""
    pytest.importorskip("cv2")
    pytest.importorskip("dlib")
    from dragkit.engine import TRACKERS, DragConfig, DragSession
    from dragkit.io import load_generator
    from dragkit.jobs.tracking import BASELINE, TrackingSpec, TrackingWorker, summarise_tracking

    worker = TrackingWorker(TrackingSpec(str(tiny_checkpoint), config={"lr": 0.02, "max_steps": 4}))
    handles = [(10.0, 12.0), (20.0, 8.0)]
    start = image_to_eval(handles, (32, 32))
    worker.marker = lambda img: _truth(start)  # type: ignore[assignment]
    sess = DragSession(
        load_generator(tiny_checkpoint), worker.G.mapping(torch.zeros(1, 16), psi=0.7), DragConfig(lr=0.02)
    )
    sess.set_points(handles, [(16.0, 14.0), (14.0, 4.0)])
    latents = [sess.ws.detach().clone()]
    for _ in range(3):
        sess.step()
        latents.append(sess.ws.detach().clone())
    errors = worker._replay(sess, latents, handles, np.array([0, 1]))
    assert set(errors) == {*TRACKERS, BASELINE}
    for name, errs in errors.items():
        assert len(errs) == 4 and errs[0] == 0.0, name
    record = {"trackers": {n: {"mean": float(np.mean(e)), "final": e[-1], "per_step": e} for n, e in errors.items()}}
    summary = summarise_tracking([{**record, "steps": 3}, {"skipped": "no face"}])
    assert summary["cases"] == 1 and summary["skipped"] == 1
    assert sorted(t["rank"] for t in summary["trackers"].values()) == list(range(1, len(errors) + 1))


def _truth(start: np.ndarray) -> np.ndarray:
    """68 landmarks whose first two are ``start`` (the others unused)."""
    out = np.zeros((68, 2))
    out[:2] = start
    return out


def test_eval_speed_times_each_model_and_device(tiny_checkpoint: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "speed"
    argv = ["eval", "speed", "--network", str(tiny_checkpoint), "--timed-steps", "3", "--edit-steps", "2"]
    assert main([*argv, "--warmup", "1", "--out", str(out)]) == 0
    (record,) = [json.loads(line) for line in (out / "speed.jsonl").read_text().splitlines()]
    assert record["id"] == "00-tiny32-cpu" and record["image_shape"] == [32, 32] and record["edit_steps"] == 2
    assert 0 < record["step_ms_min"] <= record["step_ms"] <= record["step_ms_max"] and record["edit_seconds"] > 0
    assert "| 32×32 | cpu |" in capsys.readouterr().out
    if not torch.cuda.is_available():  # a device the machine lacks: that case fails with its reason, the run goes on
        assert main([*argv, "--devices", "cpu", "cuda", "--out", str(tmp_path / "s2")]) == 1
        lines = [json.loads(line) for line in (tmp_path / "s2" / "speed.jsonl").read_text().splitlines()]
        assert "error" not in lines[0] and "error" in lines[1]


def test_tracking_run_records_a_drag_and_ranks_the_trackers(tiny_checkpoint: Path) -> None:
    """``run`` on a tiny drag, with landmarks given (face 1's two points, then face 2's, then face 1's again as the
    truth on every replayed step): one record with every tracker, steps and why the drag stopped."""
    pytest.importorskip("cv2")
    pytest.importorskip("dlib")
    from dragkit.engine import TRACKERS
    from dragkit.jobs.landmarks import LandmarkCase
    from dragkit.jobs.tracking import BASELINE, TrackingSpec, TrackingWorker

    worker = TrackingWorker(TrackingSpec(str(tiny_checkpoint), config={"lr": 0.02, "max_steps": 3}))
    first, second = (
        _truth(np.array([[150.0, 190.0], [300.0, 120.0]])),
        _truth(np.array([[250.0, 220.0], [220.0, 60.0]])),
    )
    calls = iter([first, second])
    worker.marker = lambda img: next(calls, first)  # type: ignore[assignment]
    outcome = worker.run(LandmarkCase("pair0000-n2", 0, (0, 1), (0, 1)))
    record = outcome.record
    assert record["steps"] == 3 and record["stopped"] == "max_steps" and record["landmarks"] == [0, 1]
    assert set(record["trackers"]) == {*TRACKERS, BASELINE}
    assert all(len(t["per_step"]) == 4 and t["per_step"][0] == 0.0 for t in record["trackers"].values())
