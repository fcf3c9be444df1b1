"""dragkit — DragGAN (Pan et al., SIGGRAPH 2023) as a library, a CLI and a web studio.

Quick use::

    import dragkit
    G = dragkit.load_generator("default")          # or a path to a checkpoint
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public names, imported lazily so ``import dragkit`` stays cheap.
_LAZY = {
    "load_generator": "dragkit.io",
    "inspect_checkpoint": "dragkit.io",
    "save_native": "dragkit.io",
    "DragSession": "dragkit.engine",
    "DragConfig": "dragkit.engine",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dragkit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["__version__", *_LAZY]
