"""dragkit's own format: a directory with ``model.safetensors`` (weights) and ``config.json``.

``config.json``::

    {"format": "dragkit-native", "format_version": 1, "family": "stylegan2",
     "config": {...the family config's to_dict()...},
     "provenance": {"source_format": ..., "source_sha256": ..., "licence": ..., "dragkit_version": ...}}

Weights are stored as float tensors under the generator's own parameter names; loading rebuilds the generator
from ``family`` + ``config`` and loads with ``strict=True``, so a save/load round trip is bit-exact.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from dragkit.errors import CheckpointError
from dragkit.io.base import ParsedCheckpoint, instantiate
from dragkit.io.families import config_from_dict

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_NAME", "FORMAT_NAME", "FORMAT_VERSION", "WEIGHTS_NAME", "load_native", "read_native", "save_native"]

FORMAT_NAME = "dragkit-native"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_native(G: Any, directory: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``G`` to ``directory`` (created if needed) as ``model.safetensors`` + ``config.json``; returns it.

    ``G`` must have ``family`` and ``config`` (with ``to_dict()``), like every generator of
    :mod:`dragkit.io.families`. ``provenance`` (source format, source sha256, licence, ...) is stored as given,
    plus ``dragkit_version``.
    """
    from dragkit import __version__

    family = getattr(G, "family", None)
    config = getattr(G, "config", None)
    if not isinstance(family, str) or config is None or not hasattr(config, "to_dict"):
        raise TypeError("save_native needs a dragkit generator (with .family and .config)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in G.state_dict().items()}
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "family": family,
        "config": config.to_dict(),
        "provenance": {**(provenance or {}), "dragkit_version": __version__},
    }
    # One metadata key only: safetensors writes its metadata map in hash order, and identical models should give
    # identical bytes (stable sha256).
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": FORMAT_NAME})
    (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    logger.info("wrote %s (%d tensors)", directory, len(tensors))
    return directory


def safetensors_complete(path: Path) -> bool:
    """Whether the safetensors file ``path`` holds every byte its header declares (a cheap check that reads only
    the header: a download or conversion cut short fails it)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if not 2 <= n <= 100 * 2**20:
                return False
            header = json.loads(f.read(n))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        return path.stat().st_size == 8 + n + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error, RecursionError):
        return False


def read_native(directory: Path) -> ParsedCheckpoint:
    """Parse a native directory (config + weights) without building the network."""
    cfg_path = directory / CONFIG_NAME
    weights = directory / WEIGHTS_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory}: no {CONFIG_NAME}")
    if not weights.is_file():
        raise CheckpointError(f"{directory}: no {WEIGHTS_NAME}")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{cfg_path}: JSON nested too deeply to be a dragkit config") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f'{cfg_path}: not a dragkit config (expected "format": "{FORMAT_NAME}")')
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: format_version {version!r}, this dragkit reads {FORMAT_VERSION}")
    family = meta.get("family")
    if not isinstance(family, str):
        raise CheckpointError(f'{cfg_path}: missing "family"')
    config = config_from_dict(family, meta.get("config"))
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: truncated or corrupt safetensors file ({exc})") from None
    provenance = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {}
    return ParsedCheckpoint(
        path=directory,
        format="native",
        family=family,
        config=config,
        state_dict=dict(state),
        details={"provenance": provenance},
    )


def load_native(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Load a generator saved by :func:`save_native` (bit-exact weights)."""
    return instantiate(read_native(Path(directory)), device)
