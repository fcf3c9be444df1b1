"""Shared (de)serialisation of the frozen config dataclasses of the generator families."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

from dragkit.errors import CheckpointError

C = TypeVar("C")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A frozen config dataclass → JSON-ready dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def config_from_dict(cls: type[C], d: dict[str, Any], family: str) -> C:
    """Inverse of :func:`config_to_dict`: lists become int tuples; unknown keys or bad values raise CheckpointError."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - known)
    if unknown:
        raise CheckpointError(f"unknown {family} config keys: {unknown}")
    values = {k: tuple(int(x) for x in v) if isinstance(v, list | tuple) else v for k, v in d.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid {family} config: {exc}") from exc
