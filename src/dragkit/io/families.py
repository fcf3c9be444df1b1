"""Generator families: name → (config class, generator class), so every checkpoint format builds through one table.

A family is registered by import path and imported only when used. Its config class must provide ``to_dict()``
and ``from_dict(d)`` (raising on unknown keys); its generator class is built as ``GeneratorClass(config)``, has a
``config`` attribute and ``family`` equal to the registered name, and implements :mod:`dragkit.nn.protocol`.

Adding a family (e.g. ``"stylegan3"``) is one entry in :data:`FAMILIES` or one call to :func:`register_family` —
the loader, ``dragkit inspect`` and the native format need nothing else.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from torch import nn

from dragkit.errors import CheckpointError

__all__ = ["FAMILIES", "Family", "build_generator", "config_from_dict", "get_family", "register_family"]


@dataclass(frozen=True)
class Family:
    """Where a family's config and generator classes live (imported lazily)."""

    name: str
    module: str
    config_class: str
    generator_class: str

    def classes(self) -> tuple[Any, Any]:
        """(ConfigClass, GeneratorClass), importing the module on first use."""
        mod = importlib.import_module(self.module)
        return getattr(mod, self.config_class), getattr(mod, self.generator_class)


FAMILIES: dict[str, Family] = {
    "stylegan2": Family("stylegan2", "dragkit.nn.stylegan2", "StyleGAN2Config", "StyleGAN2Generator"),
    "stylegan3": Family("stylegan3", "dragkit.nn.stylegan3", "StyleGAN3Config", "StyleGAN3Generator"),
    "mobilestylegan": Family(
        "mobilestylegan", "dragkit.nn.mobilestylegan", "MobileStyleGANConfig", "MobileStyleGANGenerator"
    ),
}


def register_family(name: str, module: str, config_class: str, generator_class: str) -> None:
    """Add (or replace) a family entry."""
    FAMILIES[name] = Family(name, module, config_class, generator_class)


def get_family(name: str) -> tuple[Any, Any]:
    """(ConfigClass, GeneratorClass) of ``name``; unknown names raise :class:`CheckpointError`."""
    fam = FAMILIES.get(name)
    if fam is None:
        raise CheckpointError(f"unknown generator family {name!r} (known: {', '.join(sorted(FAMILIES))})")
    return fam.classes()


def config_from_dict(family: str, d: Any) -> Any:
    """The family's config object from its ``to_dict()`` form."""
    config_cls, _ = get_family(family)
    if not isinstance(d, dict):
        raise CheckpointError(f"{family} config must be a JSON object, got {type(d).__name__}")
    try:
        return config_cls.from_dict(d)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid {family} config: {exc}") from None


def build_generator(family: str, config: Any) -> nn.Module:
    """A freshly initialised generator of ``family`` built from ``config`` (weights still random)."""
    _, gen_cls = get_family(family)
    try:
        G = gen_cls(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot build a {family} generator from this config: {exc}") from None
    if not isinstance(G, nn.Module):  # pragma: no cover - a registration error, not a user error
        raise TypeError(f"{family} generator class did not build an nn.Module")
    return G
