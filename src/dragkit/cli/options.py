"""Command-line options built from one description: :class:`~dragkit.engine.DragConfig`'s fields and the
registered trackers' params (their ``metadata["help"]``, plus ``"flags"``/``"flag"`` and ``"choices"`` where the
option is not simply ``--field-name``). ``dragkit drag`` and the benchmarks use it, so a new setting or a new
tracker appears everywhere at once.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from typing import Any

from dragkit.engine.config import IMPLS, W_MODES, DragConfig, parse_stop_rule
from dragkit.engine.trackers import DEFAULT_TRACKER, TRACKERS
from dragkit.errors import InvalidInputError

__all__ = ["add_drag_options", "drag_config_from_args", "explicit_drag_options", "parse_optimize_ws"]

_PREFIX = "drag_option_"


def parse_optimize_ws(text: str) -> int | tuple[int, ...]:
    """``'7'`` → 7 (the first 7 rows); ``'0-6'`` / ``'0,1,4'`` / ``'0-3,8'`` → a tuple of W+ indices."""
    try:
        if "," not in text and "-" not in text:
            return int(text)
        out: list[int] = []
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-")
                out += list(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
        return tuple(out)
    except ValueError:
        raise InvalidInputError(f"--optimize-ws: expected K or indices like 0-6 or 0,1,4, got {text!r}") from None


# how each DragConfig field is typed on the command line (its help text lives on the field); "convert" runs in
# drag_config_from_args, so a bad value is the CLI's one-line error rather than argparse's usage message
_CONFIG_TYPES: dict[str, dict[str, Any]] = {
    "lr": {"type": float},
    "optimize_ws": {"convert": parse_optimize_ws, "metavar": "K|I-J"},
    "w_mode": {"choices": W_MODES},
    "feature_block": {"type": int, "metavar": "K"},
    "r1": {"type": int, "metavar": "PX"},
    "r2": {"type": int, "metavar": "PX"},
    "mask_lambda": {"type": float, "metavar": "L"},
    "latent_reg": {"type": float, "metavar": "G"},
    "tracker": {"choices": tuple(TRACKERS)},
    "stop_rule": {"convert": parse_stop_rule, "metavar": "RULE"},
    "max_steps": {"type": int, "metavar": "N", "flags": ("--steps", "--max-steps")},
    "impl": {"choices": IMPLS},
    "guard": {"flags": ("--no-guard",), "action": "store_false"},
}


def _tracker_options() -> dict[str, tuple[str, dict[str, Any], list[str]]]:
    """flag → (params field name, argparse kwargs, trackers that have it), over every registered tracker."""
    out: dict[str, tuple[str, dict[str, Any], list[str]]] = {}
    for tracker in TRACKERS.values():
        for f in dataclasses.fields(tracker.Params):
            flag = f.metadata.get("flag", _default_flag(f.name))
            if flag in out:
                out[flag][2].append(tracker.name)
                continue
            kwargs: dict[str, Any] = {"help": f.metadata.get("help", f.name)}
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            else:
                kwargs["type"] = type(f.default)
                kwargs["metavar"] = "N" if kwargs["type"] is int else "X"
            out[flag] = (f.name, kwargs, [tracker.name])
    return out


def _default_flag(name: str) -> str:
    """``optimize_ws`` → ``--optimize-ws``."""
    return "--" + name.replace("_", "-")


def _config_flags(name: str) -> tuple[str, ...]:
    """The options of DragConfig field ``name`` (the first one names its ``args`` attribute)."""
    flags: tuple[str, ...] = _CONFIG_TYPES[name].get("flags", (_default_flag(name),))
    return flags


def _dest(flag: str) -> str:
    return _PREFIX + flag.lstrip("-").replace("-", "_")


def add_drag_options(parser: argparse.ArgumentParser, skip: Iterable[str] = ()) -> None:
    """Add one option per DragConfig field (except ``skip`` and ``tracker_params``) and per tracker param.

    Every option defaults to None ("not given"), so :func:`drag_config_from_args` leaves the config's own default
    (or the model's) in place and can tell which tracker options the user set.
    """
    skipped = {"tracker_params", *skip}
    group = parser.add_argument_group("drag settings (defaults: the paper's, or the model's where noted)")
    for f in dataclasses.fields(DragConfig):
        if f.name in skipped:
            continue
        flags = _config_flags(f.name)
        kwargs = {k: v for k, v in _CONFIG_TYPES[f.name].items() if k not in ("flags", "convert")}
        if "choices" not in kwargs and "action" not in kwargs:
            kwargs.setdefault("metavar", f.name.upper())
        group.add_argument(*flags, dest=_dest(flags[0]), default=None, help=f.metadata["help"], **kwargs)
    if "tracker" in skipped:
        return
    tgroup = parser.add_argument_group("tracker settings (each applies to the trackers named)")
    for flag, (_, kwargs, trackers) in _tracker_options().items():
        help_text = f"{kwargs['help']} [{', '.join(trackers)}]"
        tgroup.add_argument(flag, dest=_dest(flag), default=None, **{**kwargs, "help": help_text})


def explicit_drag_options(args: argparse.Namespace) -> dict[str, Any]:
    """The DragConfig fields the user gave on the command line (``tracker_params`` as a dict when any tracker
    option was given). A tracker option for a tracker other than the chosen one (default: ``nn``) raises
    :class:`InvalidInputError` naming the trackers it applies to."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(DragConfig):
        if f.name == "tracker_params":
            continue
        how = _CONFIG_TYPES[f.name]
        value = getattr(args, _dest(_config_flags(f.name)[0]), None)
        if value is not None:
            values[f.name] = how["convert"](value) if "convert" in how else value
    tracker = values.get("tracker", DEFAULT_TRACKER)
    params: dict[str, Any] = {}
    for flag, (name, _, trackers) in _tracker_options().items():
        value = getattr(args, _dest(flag), None)
        if value is None:
            continue
        if tracker not in trackers:
            raise InvalidInputError(f"{flag} applies to the {' and '.join(trackers)} tracker, not {tracker!r}")
        params[name] = value
    if params:
        values["tracker_params"] = params
    return values


def drag_config_from_args(args: argparse.Namespace, **overrides: Any) -> DragConfig:
    """The :class:`DragConfig` the options of :func:`add_drag_options` describe (``overrides`` win); see
    :func:`explicit_drag_options`."""
    return DragConfig(**{**explicit_drag_options(args), **overrides})
