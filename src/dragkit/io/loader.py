"""One entry point for every checkpoint: the format is sniffed from the bytes, never from the file name.

=====================================  =========================================================================
what the bytes look like               format
=====================================  =========================================================================
a directory with ``config.json``       native (``model.safetensors`` + ``config.json``)
safetensors header (u64 size + ``{``)  native, if a ``config.json`` sits beside it
``PK\\x03\\x04`` (zip)                  ``torch.save`` archive → rosinality ``.pt``
pickle + torch's legacy magic number   legacy (pre-1.6) ``torch.save`` → rosinality ``.pt``
pickle header ``\\x80`` + protocol 2–5  NVIDIA network pickle (restricted unpickler)
=====================================  =========================================================================
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from dragkit.errors import CheckpointError, ModelNotFoundError
from dragkit.io.base import ParsedCheckpoint, check_declared_sizes, instantiate
from dragkit.io.families import build_generator
from dragkit.nn.protocol import Generator

logger = logging.getLogger(__name__)

__all__ = ["CheckpointInfo", "inspect_checkpoint", "load_generator", "parse_checkpoint", "sniff_format"]

# torch.save's legacy (non-zip) files start with a pickled magic number: protocol 2, LONG1 of 10 bytes.
_TORCH_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_PATH_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".json")


def sniff_format(path: Path) -> str:
    """``'native'``, ``'torch-zip'``, ``'torch-legacy'`` or ``'pickle'`` from the first bytes (or directory).

    Raises :class:`CheckpointError` for a missing, empty, unreadable or unknown file.
    """
    if path.is_dir():
        if (path / "config.json").is_file():
            return "native"
        raise CheckpointError(f"{path}: directory without config.json (not a dragkit model directory)")
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():  # a FIFO, socket or device would block or never end
        raise CheckpointError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise CheckpointError(f"{path}: empty file")
    if head.startswith(b"PK\x03\x04"):
        _check_torch_zip(path)
        return "torch-zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch-legacy" if head[2:14] == _TORCH_LEGACY_MAGIC else "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            if (path.parent / "config.json").is_file():
                return "native"
            raise CheckpointError(
                f"{path}: safetensors file without a config.json beside it (cannot tell the network family)"
            )
    if head[:1] == b"\x80":
        raise CheckpointError(f"{path}: pickle protocol {head[1] if len(head) > 1 else '?'} is not supported")
    raise CheckpointError(f"{path}: unknown checkpoint format (first bytes {head[:8]!r})")


def _check_torch_zip(path: Path) -> None:
    """A zip archive is a torch.save file only if it holds ``<name>/data.pkl``; say what else it is."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except Exception as exc:  # corrupt archives raise many types (BadZipFile, UnicodeDecodeError, EOFError, …)
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: truncated or corrupt torch.save file ({reason})") from None
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return
    if any(n.endswith(".dist-info/WHEEL") for n in names):
        raise CheckpointError(
            f"{path}: a Python wheel, not a checkpoint (the default model's wheel is read by "
            "'dragkit models fetch default'; pass its model name 'default' instead)"
        )
    raise CheckpointError(f"{path}: a zip archive that is not a torch.save checkpoint")


def parse_checkpoint(path: str | Path) -> ParsedCheckpoint:
    """Read a checkpoint of any supported format into a :class:`ParsedCheckpoint` (no network built)."""
    path = Path(path)
    kind = sniff_format(path)
    if kind == "native":
        from dragkit.io.native import read_native

        return read_native(path if path.is_dir() else path.parent)
    if kind in ("torch-zip", "torch-legacy"):
        from dragkit.io.rosinality import read_rosinality

        return read_rosinality(path)
    from dragkit.io.nvidia import read_nvidia

    return read_nvidia(path)


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.startswith((".", "~")) or name.lower().endswith(_PATH_SUFFIXES)


def _resolve(path_or_name: str | Path) -> Path:
    """A local path for a file path or a registered model name."""
    if isinstance(path_or_name, Path):
        return path_or_name
    path = Path(path_or_name).expanduser()
    if path.exists() or _looks_like_path(path_or_name):
        return path
    try:
        registry = importlib.import_module("dragkit.io.registry")
    except ModuleNotFoundError as exc:
        if exc.name != "dragkit.io.registry":
            raise
        registry = None
    resolve = getattr(registry, "resolve", None)
    if resolve is None:
        raise ModelNotFoundError(f"{path_or_name!r} is neither an existing file nor a known model name")
    return Path(resolve(path_or_name))


def load_generator(path_or_name: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Load a generator from a checkpoint path or a registered model name; eval mode, no parameter grads.

    Supported: NVIDIA ``stylegan2-ada-pytorch`` / ``stylegan3``-repo StyleGAN2 pickles (never executing code
    stored in them), rosinality ``.pt`` files and dragkit's native directories. Errors are
    :class:`~dragkit.errors.CheckpointError` (or :class:`~dragkit.errors.ModelNotFoundError`) with one line
    naming the file and the problem.
    """
    path = _resolve(path_or_name)
    parsed = parse_checkpoint(path)
    G = instantiate(parsed, device)
    logger.debug("loaded %s (%s, %s)", path, parsed.format, parsed.family)
    return cast(Generator, G)


@dataclass
class CheckpointInfo:
    """What ``dragkit inspect`` reports about a checkpoint.

    ``resolution`` is (H, W) in pixels; ``parameters`` counts the generator's trainable weights (not buffers);
    ``globals_named`` lists every ``module.name`` a pickle asked for (empty for non-pickle formats).
    """

    path: str
    format: str
    family: str
    resolution: tuple[int, int]
    z_dim: int
    w_dim: int
    c_dim: int
    num_ws: int
    parameters: int
    sha256: str
    variant: str = ""  # the family's config in words (e.g. "config T", "skip architecture, conditional (5 classes)")
    globals_named: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        return d


def model_sha256(path_or_name: str | Path) -> str:
    """sha256 of a checkpoint file, or of a native folder's ``model.safetensors`` + ``config.json`` (a registered
    name is resolved first)."""
    return _sha256(_resolve(path_or_name))


def _sha256(path: Path) -> str:
    files = [path / "model.safetensors", path / "config.json"] if path.is_dir() else [path]
    h = hashlib.sha256()
    for p in files:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _skeleton(parsed: ParsedCheckpoint) -> nn.Module:
    try:
        with torch.device("meta"):
            return build_generator(parsed.family, parsed.config)
    except (RuntimeError, NotImplementedError):  # a family whose constructor needs real tensors
        return build_generator(parsed.family, parsed.config)


def _variant(parsed: ParsedCheckpoint) -> str:
    describe = getattr(parsed.config, "describe", None)
    text = describe() if callable(describe) else ""
    if parsed.format == "tf-pickle":
        text = f"TF-era pickle, {text}" if text else "TF-era pickle"
    return str(text)


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Describe a checkpoint (format, family, resolution, num_ws, parameter count, pickle globals) without
    loading weights into a network. Raises the same errors as :func:`load_generator`."""
    path = _resolve(path)
    parsed = parse_checkpoint(path)
    check_declared_sizes(parsed.config, parsed.state_dict, parsed.path)
    G = _skeleton(parsed)
    param_names = {name for name, _ in G.named_parameters()}
    n_params = sum(t.numel() for k, t in parsed.state_dict.items() if k in param_names)
    img_shape = getattr(G, "img_shape", None)
    res = int(getattr(G, "img_resolution", 0))
    config = parsed.config.to_dict() if hasattr(parsed.config, "to_dict") else {}
    return CheckpointInfo(
        path=str(path),
        format=parsed.format,
        family=parsed.family,
        resolution=tuple(img_shape) if img_shape is not None else (res, res),
        z_dim=int(getattr(G, "z_dim", 0)),
        w_dim=int(getattr(G, "w_dim", 0)),
        c_dim=int(getattr(G, "c_dim", 0)),
        num_ws=int(getattr(G, "num_ws", 0)),
        parameters=int(n_params),
        sha256=_sha256(path),
        variant=_variant(parsed),
        globals_named=list(parsed.globals_named),
        config=config,
        details=parsed.details,
    )
