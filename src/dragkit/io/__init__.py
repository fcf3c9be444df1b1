"""Checkpoint formats → generators, never executing anything stored in a file; images in and out.

Public API::

    from dragkit.io import load_generator, inspect_checkpoint, save_native
    G = load_generator("stylegan2-ffhq-512x512.pkl")        # NVIDIA pickle, rosinality .pt or native dir
    info = inspect_checkpoint("model.pt")                    # format, family, resolution, num_ws, ...
    save_native(G, "out/ffhq512", provenance={"licence": "..."})
"""

from __future__ import annotations

from dragkit.io.loader import CheckpointInfo, inspect_checkpoint, load_generator
from dragkit.io.native import load_native, save_native

__all__ = ["CheckpointInfo", "inspect_checkpoint", "load_generator", "load_native", "save_native"]
