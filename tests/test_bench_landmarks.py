"""The pure helpers of benchmarks/landmarks.py (the face-landmark protocol); the protocol itself is a benchmark."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def lm() -> ModuleType:
    return load_benchmark("landmarks")


def test_eval_grid_mapping_round_trips_and_matches_pixel_centres(lm: ModuleType) -> None:
    pts = np.array([[0.0, 0.0], [255.5, 100.0], [511.0, 511.0]])
    img = lm.eval_to_image(pts, (1024, 1024))
    assert img[0] == (0.5, 0.5)  # the centre of 512-pixel 0 is between 1024-pixels 0 and 1
    assert img[2] == (1022.5, 1022.5)
    np.testing.assert_allclose(lm.image_to_eval(img, (1024, 1024)), pts)
    np.testing.assert_allclose(lm.image_to_eval(lm.eval_to_image(pts, (256, 256)), (256, 256)), pts)


def test_mean_dist_and_image_change(lm: ModuleType) -> None:
    a = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert lm.mean_dist(a, a + np.array([3.0, 4.0])) == pytest.approx(5.0)
    img = np.zeros((512, 512, 3), dtype=np.uint8)
    other = img.copy()
    other[:256] = 100  # half the image changed by 100
    assert lm.image_change(img, img) == 0.0
    assert lm.image_change(img, other) == pytest.approx(50.0)


def test_summarise(lm: ModuleType) -> None:
    base = {"drift": 1.0, "tracked_to_target": 0.5, "steps": 10, "seconds": 1.0, "arrived": True, "image_change": 2.0}
    records = [
        {**base, "points": 1, "md": 2.0, "md_no_edit": 10.0},
        {**base, "points": 1, "md": 4.0, "md_no_edit": 10.0, "image_change": 6.0},
        {**base, "points": 1, "md": None, "md_no_edit": 30.0, "drift": None},  # face lost: not in the MD means
        {**base, "points": 5, "md": 1.0, "md_no_edit": 4.0, "arrived": False},
    ]
    s = lm.summarise(records, [1, 5, 68])
    assert set(s) == {"1", "5"}
    assert (s["1"]["md"], s["1"]["md_no_edit"], s["1"]["ratio"]) == (3.0, 10.0, 0.3)
    assert (s["1"]["edits"], s["1"]["face_lost"], s["1"]["arrived"]) == (3, 1, 3)
    assert s["1"]["ratio_lost_as_no_edit"] == pytest.approx((2 + 4 + 30) / 50, abs=1e-3)
    assert (s["1"]["image_change"], s["1"]["image_change_max"]) == (pytest.approx(3.33, abs=0.01), 6.0)
    assert (s["5"]["ratio"], s["5"]["arrived"]) == (0.25, 0)


def test_draw_subsets_depend_on_the_draw_order_only(lm: ModuleType) -> None:
    full = lm.draw_subsets(3, [1, 5, 68])
    assert full[1].shape == (1,) and full[5].shape == (5,) and list(full[68]) == list(range(68))
    assert list(lm.draw_subsets(3, [1, 5])[5]) == list(full[5])  # what '--points 5 --draw-points 1 5' edits
    assert len(set(full[5].tolist())) == 5 and list(full[5]) == sorted(full[5])
    assert lm.draw_subsets(4, [1, 5])[5].tolist() != full[5].tolist()  # another pair, another subset


def test_face_pairs_skip_faceless_seeds_and_resume_at_first_pair(lm: ModuleType) -> None:
    asked: list[tuple[int, int]] = []

    def find(seeds: tuple[int, int]) -> str | None:
        asked.append(seeds)
        return None if seeds[0] in (2, 8) else f"faces {seeds}"  # no face in seeds (2, 3) and (8, 9)

    full = list(lm.face_pairs(find, 0, 4))
    assert [(i, s) for i, s, _ in full] == [(0, (0, 1)), (1, (4, 5)), (2, (6, 7)), (3, (10, 11))]
    assert full[1][2] == "faces (4, 5)"
    asked.clear()
    tail = list(lm.face_pairs(find, 0, 4, first_pair=2))
    assert tail == full[2:]  # same indices, seeds and data: the same subsets get drawn
    assert asked == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)]
    assert list(lm.face_pairs(find, 100, 0)) == []
    with pytest.raises(RuntimeError, match="only 0 of 2"):
        list(lm.face_pairs(lambda seeds: None, 0, 2))  # no face anywhere: an error, not an endless search
