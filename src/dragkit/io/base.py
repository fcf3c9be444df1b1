"""What every checkpoint reader returns, and how a parsed checkpoint becomes a loaded generator."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dragkit.errors import CheckpointError
from dragkit.io.families import build_generator

logger = logging.getLogger(__name__)

__all__ = ["ParsedCheckpoint", "check_state_dict", "instantiate"]


@dataclass
class ParsedCheckpoint:
    """A checkpoint read into memory, before any network is built.

    ``format``: ``'nvidia-pickle'`` | ``'rosinality'`` | ``'native'``. ``family``: key of
    :data:`dragkit.io.families.FAMILIES`. ``config``: the family's config object. ``state_dict``: tensors under
    the family generator's parameter names (CPU). ``globals_named``: globals a pickle named (``[]`` otherwise).
    ``details``: format-specific facts for ``dragkit inspect`` (which network was used, provenance, ...).
    """

    path: Path
    format: str
    family: str
    config: Any
    state_dict: dict[str, torch.Tensor]
    globals_named: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def _short(items: list[str], n: int = 4) -> str:
    head = ", ".join(items[:n])
    return head + (f", … ({len(items) - n} more)" if len(items) > n else "")


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Raise :class:`CheckpointError` (expected vs actual) unless ``state`` has exactly ``model``'s keys/shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} expected {list(v.shape)}, got {list(state[k].shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if mismatched:
        problems.append("shape mismatch: " + _short(mismatched, 2))
    if missing:
        problems.append("missing: " + _short(missing))
    if unexpected:
        problems.append("unexpected: " + _short(unexpected))
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the network ({'; '.join(problems)})")
    for k, v in state.items():
        if not v.is_floating_point() and expected[k].is_floating_point():
            raise CheckpointError(f"{source}: {k} has dtype {v.dtype}, expected a floating-point tensor")


def check_declared_sizes(config: Any, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Before anything is built: the sizes a config declares (its ``key_shapes()``, for families that provide it)
    must be those of the stored tensors, else :class:`CheckpointError` naming the first tensor that differs."""
    key_shapes = getattr(config, "key_shapes", None)
    if key_shapes is None:
        return
    for key, shape in key_shapes():
        stored = state.get(key)
        if stored is None:
            raise CheckpointError(f"{source}: the config declares {key} {list(shape)}, which the file does not hold")
        if tuple(stored.shape) != tuple(shape):
            raise CheckpointError(
                f"{source}: the config declares {key} {list(shape)}, the file stores {list(stored.shape)}"
            )


def instantiate(parsed: ParsedCheckpoint, device: str | torch.device = "cpu") -> nn.Module:
    """Build the family's generator, load ``parsed.state_dict`` with ``strict=True``, eval mode, no grads.

    The config's declared sizes are checked against the stored tensors first (:func:`check_declared_sizes`)."""
    check_declared_sizes(parsed.config, parsed.state_dict, parsed.path)
    G = build_generator(parsed.family, parsed.config)
    check_state_dict(G, parsed.state_dict, parsed.path)
    G.load_state_dict(parsed.state_dict, strict=True)
    G.eval().requires_grad_(False)
    return G.to(device)


def fit_channels(
    channels: dict[int, int], hint_base: int | None = None, hint_max: int | None = None
) -> tuple[int, int]:
    """(channel_base, channel_max) with ``min(channel_base // res, channel_max) == channels[res]`` for every res.

    ``channels``: resolution → feature channels read from weight shapes. The hints (from recorded constructor
    arguments) are used when they reproduce the shapes; otherwise the smallest consistent pair is returned.
    Raises :class:`CheckpointError` when no pair fits (e.g. channels that grow with resolution).
    """

    def fits(base: int, cmax: int) -> bool:
        return all(min(base // r, cmax) == c for r, c in channels.items())

    if hint_base is not None and hint_max is not None and fits(int(hint_base), int(hint_max)):
        return int(hint_base), int(hint_max)
    cmax = max(channels.values())
    # Levels below the cap pin the base: base // r == c  ⇔  c·r ≤ base ≤ (c+1)·r − 1; capped levels need
    # base ≥ cmax·r.
    lo = max(c * r for r, c in channels.items())
    his = [(c + 1) * r - 1 for r, c in channels.items() if c < cmax]
    hi = min(his) if his else None
    base = lo
    if hint_base is not None and lo <= int(hint_base) and (hi is None or int(hint_base) <= hi):
        base = int(hint_base)
    if not fits(base, cmax):
        layout = ", ".join(f"{r}: {c}" for r, c in sorted(channels.items()))
        raise CheckpointError(f"channel layout {{{layout}}} is not min(channel_base // res, channel_max)")
    return base, cmax


def filter_from_buffer(t: torch.Tensor) -> tuple[int, ...] | None:
    """The integer 1-D FIR (e.g. (1, 3, 3, 1)) whose normalised outer product is ``t`` [k, k], or None."""
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] == 0:
        return None
    f = t.double().sum(dim=1)
    if not bool((f > 0).all()):
        return None
    f = f / f.min()
    ints = f.round()
    if not torch.allclose(f, ints, atol=1e-4):
        return None
    taps = tuple(int(v) for v in ints.tolist())
    rebuilt = torch.outer(ints, ints)
    rebuilt = rebuilt / rebuilt.sum()
    return taps if torch.allclose(rebuilt, t.double(), atol=1e-6) else None
