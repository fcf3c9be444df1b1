"""Shared (de)serialisation of the frozen config dataclasses of the generator families."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import asdict, fields
from typing import Any, TypeVar

from dragkit.errors import CheckpointError

C = TypeVar("C")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A frozen config dataclass → JSON-ready dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a config field's annotation (int, float, bool, str, None, unions of them, and
    tuples of ints, which JSON writes as lists of at most 64 items)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        return isinstance(value, list | tuple) and 0 < len(value) <= 64 and all(_fits(v, int) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str) and len(value) <= 256
    return True  # an annotation this check does not know: the constructor validates it


def config_from_dict(cls: type[C], d: dict[str, Any], family: str) -> C:
    """Inverse of :func:`config_to_dict`: every value must fit its field's type (lists become int tuples); unknown
    keys or bad values raise :class:`CheckpointError` naming the key, the expected type and the value."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - known)
    if unknown:
        raise CheckpointError(f"unknown {family} config keys: {unknown}")
    hints = typing.get_type_hints(cls)
    for key, value in d.items():
        if not _fits(value, hints[key]):
            shown = repr(value)[:80] + ("…" if len(repr(value)) > 80 else "")
            wanted = "a list of 1 to 64 integers" if typing.get_origin(hints[key]) is tuple else f"a {hints[key]}"
            raise CheckpointError(f"invalid {family} config: {key} = {shown} is not {wanted}")
    values = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in d.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"invalid {family} config: {exc}") from exc
