"""Contract tests run on every registered tracker (kornia-style: one family of tests, parametrised over the
registry), plus a tracker registered from this file to show that adding one needs no change to DragSession."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from dragkit.engine import DragConfig, DragSession
from dragkit.engine.sampling import sample_at_pixels, window_offsets
from dragkit.engine.trackers import TRACKERS, TrackContext, Tracker, tracker_choices
from dragkit.errors import InvalidInputError
from dragkit.nn.stylegan2 import StyleGAN2Generator


@dataclass(frozen=True)
class GlobalParams:
    """reach: search radius in image pixels (the whole image by default)."""

    reach: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.reach, bool) or not isinstance(self.reach, int) or self.reach < 0:
            raise InvalidInputError(f"tracker 'global' reach: expected an int ≥ 0, got {self.reach!r}")


@dataclass(frozen=True)
class GlobalState:
    templates: torch.Tensor  # [N, C]


class GlobalSearch(Tracker[GlobalParams, GlobalState]):
    """A tracker written here, outside the package: L2 nearest neighbour over a large window."""

    name = "global"
    label = "Global search (test)"
    description = "nearest neighbour over the whole image"
    Params = GlobalParams
    State = GlobalState
    state_shapes = (("templates", ("N", "C")),)

    def start(self, ctx: TrackContext) -> GlobalState:
        return GlobalState(sample_at_pixels(ctx.features.detach(), ctx.handles.round(), ctx.image_shape))

    def track(self, ctx: TrackContext, state: GlobalState) -> tuple[torch.Tensor, GlobalState]:
        H, W = ctx.image_shape
        reach = min(self.params.reach, max(H, W))
        with torch.no_grad():
            cand = ctx.handles.round().unsqueeze(1) + window_offsets(reach, ctx.device)  # [N, K, 2]
            cand = torch.stack([cand[..., 0].clamp(0, W - 1), cand[..., 1].clamp(0, H - 1)], dim=-1)
            values = sample_at_pixels(ctx.features.detach(), cand, ctx.image_shape)  # [N, K, C]
            best = (values - state.templates.unsqueeze(1)).norm(dim=-1).argmin(dim=1)
            return cand[torch.arange(cand.shape[0]), best], state


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    """The test tracker is in the registry for every test of this file, and only for them."""
    TRACKERS[GlobalSearch.name] = GlobalSearch
    try:
        yield
    finally:
        del TRACKERS[GlobalSearch.name]


ALL = [*TRACKERS, GlobalSearch.name]
HANDLES = [(10.0, 12.0), (20.0, 8.0)]
TARGETS = [(16.0, 14.0), (14.0, 4.0)]
CFG = DragConfig(lr=0.02, r1=2, r2=5)


def _context(
    G: StyleGAN2Generator, shift: tuple[int, int], handles: torch.Tensor, targets: torch.Tensor
) -> TrackContext:
    """The tiny generator's features and image at seed 0, moved by ``shift`` feature cells (x, y)."""
    sess = DragSession.from_seed(G, 0, config=CFG)
    block = sess.settings.feature_block
    with torch.no_grad():
        out = G.synthesize(sess.ws, block)
    assert out.image is not None
    H, W = sess.image_shape
    cell = H // out.features.shape[-2]
    dx, dy = shift
    return TrackContext(
        torch.roll(out.features, shifts=(dy, dx), dims=(2, 3)),
        handles,
        targets,
        image_shape=(H, W),
        r1=2,
        r2=5,
        impl="fast",
        stop_distance=1.0,
        image=torch.roll(out.image, shifts=(dy * cell, dx * cell), dims=(2, 3)),
    )


def test_the_registry_offers_every_tracker_with_its_description() -> None:
    choices = tracker_choices()
    assert [c["name"] for c in choices] == ALL
    assert all(c["label"] and c["description"] and isinstance(c["experimental"], bool) for c in choices)
    assert choices[0]["name"] == "nn" and not choices[0]["experimental"]


@pytest.mark.parametrize("name", ALL)
def test_starts_and_follows_a_known_shift(tiny_g: StyleGAN2Generator, name: str) -> None:
    """Content moved by (2, 1) feature cells = (4, 2) image pixels, the targets where it went: every tracker
    reports the handles at least half-way there (the matchers exactly; FreeDrag plans its first sub-motion)."""
    tracker = TRACKERS[name]()
    handles = torch.tensor(HANDLES)
    truth = handles + torch.tensor([4.0, 2.0])
    state = tracker.start(_context(tiny_g, (0, 0), handles, truth))
    found, state = tracker.track(_context(tiny_g, (2, 1), handles, truth), state)
    assert found.shape == (2, 2) and not found.requires_grad
    before = (truth - handles).norm(dim=-1)
    after = (truth - found).norm(dim=-1)
    assert (after <= 0.5 * before).all(), (name, found.tolist())
    assert dataclasses.is_dataclass(state) and isinstance(state, tracker.State)


@pytest.mark.parametrize("name", ALL)
def test_a_session_with_it_survives_undo_redo_and_save_load(
    tiny_g: StyleGAN2Generator, tmp_path: Path, name: str
) -> None:
    def session() -> DragSession:
        s = DragSession.from_seed(tiny_g, 0, config=CFG.replace(tracker=name), model_id="tiny")
        s.set_points(HANDLES, TARGETS)
        return s

    whole, part = session(), session()
    whole.run(max_steps=7)
    part.run(max_steps=4)
    assert part.step_count == 4
    loaded = DragSession.load(part.save(tmp_path / "s.pt"), tiny_g)
    assert loaded.config == part.config and loaded.settings.tracker == name
    loaded.run(max_steps=3)
    assert loaded.trajectory == whole.trajectory and torch.equal(loaded.ws, whole.ws)
    # undo two steps and take them again: the restored tracker state gives the same steps
    whole.undo(2)
    again = [whole.step() for _ in range(2)]
    assert [r.handles for r in again] == [r.handles for r in loaded.trajectory[-2:]]
    assert torch.equal(whole.ws, loaded.ws)
    whole.undo(2)
    whole.redo(2)
    assert torch.equal(whole.ws, loaded.ws)


@pytest.mark.parametrize("name", ALL)
def test_bad_params_raise_a_clear_error(name: str) -> None:
    tracker = TRACKERS[name]
    with pytest.raises(InvalidInputError, match="params"):
        tracker(object())
    with pytest.raises(InvalidInputError, match=r"unknown keys \['no_such_setting'\]"):
        DragConfig(tracker=name, tracker_params={"no_such_setting": 1})
    for f in dataclasses.fields(tracker.Params):
        for bad in (object(), -1, math.nan):
            if bad == -1 and isinstance(f.default, str):
                continue
            with pytest.raises(InvalidInputError, match=f.name):
                tracker.Params(**{f.name: bad})
    assert tracker.Params() == tracker().params  # defaults are valid


@pytest.mark.parametrize("name", ALL)
def test_its_state_passes_its_own_check_and_a_damaged_one_does_not(tiny_g: StyleGAN2Generator, name: str) -> None:
    sess = DragSession.from_seed(tiny_g, 0, config=CFG.replace(tracker=name))
    sess.set_points(HANDLES, TARGETS)
    sess.run(max_steps=3)
    state = sess._history.current.tracking
    channels = tiny_g.feature_levels()[sess.settings.feature_block].channels
    sess.tracker.check_state(state, 2, channels)
    with pytest.raises(ValueError):
        sess.tracker.check_state(state, 3, channels)  # made for two points, not three
    tensors = [f.name for f in dataclasses.fields(state) if isinstance(getattr(state, f.name), torch.Tensor)]
    damaged = dataclasses.replace(state, **{tensors[0]: torch.full((1,), math.nan)})
    with pytest.raises(ValueError):
        sess.tracker.check_state(damaged, 2, channels)
