"""DragConfig: validation names the field, expected and actual value; dict round trip; model defaults."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from dragkit.engine import DragConfig
from dragkit.engine.config import parse_stop_rule
from dragkit.errors import InvalidInputError


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", 0.0),
        ("lr", math.nan),
        ("lr", "fast"),
        ("optimize_ws", 0),
        ("optimize_ws", ()),
        ("optimize_ws", (1, 1)),
        ("optimize_ws", (-1,)),
        ("w_mode", "z"),
        ("feature_block", -1),
        ("feature_block", 1.5),
        ("r1", 0),
        ("r2", 2.0),
        ("mask_lambda", -1.0),
        ("latent_reg", math.inf),
        ("tracker_params", 3),
        ("stop_rule", "never"),
        ("stop_rule", 0.0),
        ("stop_rule", True),
        ("max_steps", 0),
        ("impl", "cuda"),
    ],
)
def test_invalid_fields_raise_naming_field_and_value(field: str, value: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        DragConfig(**{field: value})
    message = str(info.value)
    assert f"DragConfig.{field}" in message and "expected" in message and repr(value) in message


def test_dict_round_trip_is_json_ready() -> None:
    cfg = DragConfig(lr=1e-3, optimize_ws=(0, 2, 3), stop_rule=2.5, impl="reference", w_mode="w")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert DragConfig.from_dict(d) == cfg
    assert DragConfig.from_dict(DragConfig().to_dict()) == DragConfig()


def test_unknown_keys_raise() -> None:
    with pytest.raises(InvalidInputError, match=r"unknown keys \['learning_rate'\]"):
        DragConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(InvalidInputError, match="unknown keys"):
        DragConfig().replace(radius=3)


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        DragConfig().lr = 1.0  # type: ignore[misc]


def _resolve(cfg: DragConfig, H: int = 512) -> Any:
    return cfg.resolve(
        image_shape=(H, H),
        num_ws=16,
        num_feature_levels=8,
        hint_feature_block=5,
        hint_optimize_ws=(0, 1, 2, 3, 4, 5),
        hint_lr=2e-3,
    )


def test_resolve_fills_model_defaults() -> None:
    r = _resolve(DragConfig())
    assert (r.lr, r.optimize_ws, r.feature_block, r.r1, r.r2) == (2e-3, (0, 1, 2, 3, 4, 5), 5, 3, 12)
    assert (r.mask_lambda, r.latent_reg, r.tracker_params.norm, r.stop_rule, r.max_steps, r.impl) == (
        20.0,
        0.0,
        "l2",
        "paper",
        300,
        "fast",
    )
    assert (_resolve(DragConfig(), 256).r1, _resolve(DragConfig(), 256).r2) == (2, 6)
    r = _resolve(DragConfig(lr=1e-3, optimize_ws=4, feature_block=6, r1=5, r2=9))
    assert (r.lr, r.optimize_ws, r.feature_block, r.r1, r.r2) == (1e-3, (0, 1, 2, 3), 6, 5, 9)
    assert (
        r.as_config().resolve(
            image_shape=(512, 512),
            num_ws=16,
            num_feature_levels=8,
            hint_feature_block=0,
            hint_optimize_ws=(0,),
            hint_lr=1.0,
        )
        == r
    )


def test_tracker_and_its_params() -> None:
    from dragkit.engine.trackers.freedrag import FreeDragParams
    from dragkit.engine.trackers.nn import NNParams
    from dragkit.engine.trackers.patch import PatchParams

    r = _resolve(DragConfig())
    assert (r.tracker, r.tracker_params) == ("nn", NNParams())
    assert _resolve(DragConfig(r1=2)).r1 == 2  # the user's value wins over the default
    cfg = DragConfig(tracker="patch", tracker_params={"patch": 0})
    assert cfg.tracker_params == PatchParams(patch=0) and _resolve(cfg).tracker_params == PatchParams(patch=0)
    assert DragConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # another tracker starts from its own defaults unless params come along
    assert cfg.replace(tracker="freedrag").tracker_params == FreeDragParams()
    assert cfg.replace(tracker="hybrid", tracker_params={"patch": 3}).tracker_params.patch == 3
    assert cfg.replace(lr=1e-3).tracker_params == PatchParams(patch=0)
    for bad, match in (
        ({"tracker": "lk"}, "tracker"),
        ({"tracker": "flow"}, "tracker"),
        ({"tracker": "patch", "tracker_params": {"patch": -1}}, "patch"),
        ({"tracker": "patch", "tracker_params": {"patch": 1.5}}, "patch"),
        ({"tracker": "patch", "tracker_params": {"size": 1}}, r"unknown keys \['size'\]"),
        ({"tracker": "nn", "tracker_params": PatchParams()}, "tracker_params"),
        ({"tracker": "nn", "tracker_params": {"norm": "cosine"}}, "norm"),
        ({"tracker": "freedrag", "tracker_params": {"sub_motion_steps": 0}}, "sub_motion_steps"),
    ):
        with pytest.raises(InvalidInputError, match=match):
            DragConfig(**bad)  # type: ignore[arg-type]
    for removed in ("track_prior", "motion_step", "track_patch"):
        with pytest.raises(InvalidInputError, match="unknown keys"):
            DragConfig.from_dict({removed: 1})


def test_resolve_checks_indices_against_the_model() -> None:
    with pytest.raises(InvalidInputError, match="optimize_ws"):
        _resolve(DragConfig(optimize_ws=(3, 16)))
    with pytest.raises(InvalidInputError, match="feature_block"):
        _resolve(DragConfig(feature_block=8))


def test_parse_stop_rule() -> None:
    assert parse_stop_rule("paper") == "paper"
    assert parse_stop_rule("official") == "official"
    assert parse_stop_rule("1.5") == 1.5
    for bad in ("x", "-2", "nan"):
        with pytest.raises(InvalidInputError, match="stop_rule"):
            parse_stop_rule(bad)
