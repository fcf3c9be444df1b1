"""The studio's model picker: which generators a tab may choose, and loading them safely.

Three sources, listed in this order:

- ``preloaded`` — generators handed to :func:`dragkit.studio.server.create_app` already built (the CLI's
  ``--network``, the tests' tiny generator);
- ``registry`` — names known to :mod:`dragkit.io.registry` (``default``…), loaded with
  :func:`dragkit.io.load_generator`;
- ``file`` — checkpoint files (``.pkl``, ``.pt``, ``.pth``, ``.safetensors``) and native model folders
  (``config.json`` + ``model.safetensors``) inside the models folder, with ids ``file:<relative/posix/path>``;
- ``photo`` — generators tuned on a user's photo ("Open photo"), native folders in the photos folder
  (``<cache>/photos`` by default), with ids ``photo:<folder name>``.

A ``file:`` id is only accepted if it is a relative path without ``..`` that still lies inside the models folder
after resolving symlinks and that the scan lists; anything else raises, so a browser can never make the server
open an arbitrary path.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from dragkit.errors import ModelNotFoundError
from dragkit.nn.protocol import Generator
from dragkit.studio.protocol import ProtocolError

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pkl", ".pt", ".pth", ".safetensors")
FILE_PREFIX = "file:"
PHOTO_PREFIX = "photo:"
_PHOTO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MAX_SCAN_ENTRIES = 2000
_MAX_SCAN_DEPTH = 4


class ForbiddenPathError(ProtocolError):
    """A ``file:`` model id points outside the models folder."""

    def __init__(self, message: str) -> None:
        super().__init__("forbidden_path", message)


class UnknownModelError(ProtocolError, ModelNotFoundError):
    """A model id is not in the model list."""

    def __init__(self, message: str) -> None:
        super().__init__("unknown_model", message)


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the model picker. ``id`` is what ``new_image`` takes; ``label`` is shown to the user."""

    id: str
    label: str
    source: Literal["preloaded", "registry", "file", "photo"]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "source": self.source}


def _registry_names() -> list[tuple[str, str]]:
    """(name, label) of every model in :mod:`dragkit.io.registry`; models not in the cache yet say so."""
    from dragkit.io import registry

    out: list[tuple[str, str]] = []
    for entry in registry.list_models():
        label = f"{entry.name} — {entry.description}" if entry.description else entry.name
        if not registry.is_cached(entry.name):
            label += " (not downloaded yet)"
        out.append((entry.name, label))
    return out


def _default_loader(name_or_path: str, device: str) -> Generator:
    from dragkit.io import load_generator

    return load_generator(name_or_path, device=device)


class ModelStore:
    """Lists models and loads them (at most ``max_loaded`` kept in memory besides the preloaded ones).

    ``get`` is slow for checkpoints (seconds); the studio calls it on its worker thread only.
    """

    def __init__(
        self,
        preloaded: Mapping[str, Generator] | None = None,  # id -> built generator, always kept
        models_dir: Path | None = None,  # folder scanned for checkpoint files; None = no files
        device: str = "cpu",  # torch device checkpoints are loaded onto
        max_loaded: int = 2,  # LRU bound on loaded registry/file models
        use_registry: bool = True,  # list dragkit.io.registry names
        loader: Callable[[str, str], Generator] | None = None,  # (name_or_path, device) -> generator
        photos_dir: Path | None = None,  # where tuned photo generators live; None = <cache>/photos
    ) -> None:
        self.preloaded: dict[str, Generator] = dict(preloaded or {})
        self.models_dir = models_dir.expanduser().resolve() if models_dir is not None else None
        self.device = device
        self.max_loaded = max_loaded
        self.use_registry = use_registry
        self._loader = loader or _default_loader
        self._loaded: OrderedDict[str, Generator] = OrderedDict()
        self._lock = threading.Lock()
        if photos_dir is None:
            from dragkit.io.registry import cache_dir

            photos_dir = cache_dir() / "photos"
        self.photos_dir = photos_dir

    def photo_path(self, model_id: str) -> Path:
        """The folder of a ``photo:`` model (its name must be a plain folder name)."""
        name = model_id[len(PHOTO_PREFIX) :]
        if not _PHOTO_NAME.fullmatch(name):
            raise ForbiddenPathError(f"invalid photo model name {name!r}")
        return self.photos_dir / name

    def _photos(self) -> list[str]:
        root = self.photos_dir
        if not root.is_dir():
            return []
        return sorted(
            p.name
            for p in root.iterdir()
            if _PHOTO_NAME.fullmatch(p.name) and (p / "config.json").is_file() and (p / "model.safetensors").is_file()
        )

    # -- listing ---------------------------------------------------------------------------------------------
    def available(self) -> list[ModelInfo]:
        """Every model a tab may pick, preloaded first, then registry names, then files sorted by path."""
        out = [ModelInfo(k, k, "preloaded") for k in self.preloaded]
        seen = set(self.preloaded)
        if self.use_registry:
            for name, label in _registry_names():
                if name not in seen:
                    out.append(ModelInfo(name, label, "registry"))
                    seen.add(name)
        for rel in self._scan_files():
            if FILE_PREFIX + rel not in seen:
                out.append(ModelInfo(FILE_PREFIX + rel, rel, "file"))
        for name in self._photos():
            out.append(ModelInfo(PHOTO_PREFIX + name, f"photo: {name}", "photo"))
        return out

    def _scan_files(self) -> list[str]:
        root = self.models_dir
        if root is None or not root.is_dir():
            return []
        found: list[str] = []
        stack: list[tuple[Path, int]] = [(root, 0)]
        visited = 0
        while stack and visited < _MAX_SCAN_ENTRIES:
            folder, depth = stack.pop()
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                visited += 1
                if entry.name.startswith("."):
                    continue
                if not self._inside(entry):
                    continue  # a symlink leaving the models folder is never listed
                rel = entry.relative_to(root).as_posix()
                if entry.is_dir():
                    if (entry / "config.json").is_file() and (entry / "model.safetensors").is_file():
                        found.append(rel)
                    elif depth + 1 < _MAX_SCAN_DEPTH:
                        stack.append((entry, depth + 1))
                elif entry.is_file() and entry.suffix.lower() in CHECKPOINT_SUFFIXES:
                    if entry.suffix.lower() == ".safetensors" and (entry.parent / "config.json").is_file():
                        continue  # part of a native model folder, listed as the folder
                    found.append(rel)
        return sorted(found)

    def _inside(self, path: Path) -> bool:
        assert self.models_dir is not None
        try:
            path.resolve().relative_to(self.models_dir)
        except (ValueError, OSError):
            return False
        return True

    # -- resolving and loading ---------------------------------------------------------------------------
    def resolve(self, model_id: str) -> ModelInfo:
        """The picker entry for ``model_id``; raises :class:`UnknownModelError` or :class:`ForbiddenPathError`."""
        if model_id in self.preloaded:
            return ModelInfo(model_id, model_id, "preloaded")
        if model_id.startswith(FILE_PREFIX):
            rel = self._file_path(model_id)
            return ModelInfo(model_id, rel, "file")
        if model_id.startswith(PHOTO_PREFIX):
            path = self.photo_path(model_id)
            if not (path / "config.json").is_file():
                raise UnknownModelError(f"no photo model {model_id!r} (open the photo again)")
            return ModelInfo(model_id, f"photo: {path.name}", "photo")
        if self.use_registry:
            for name, label in _registry_names():
                if name == model_id:
                    return ModelInfo(name, label, "registry")
        raise UnknownModelError(f"unknown model {model_id!r}; choose one listed by GET /api/models")

    def _file_path(self, model_id: str) -> str:
        rel = model_id[len(FILE_PREFIX) :]
        if self.models_dir is None:
            raise UnknownModelError(f"unknown model {model_id!r}: the studio was started without a models folder")
        if not rel or "\\" in rel or "\x00" in rel:
            raise ForbiddenPathError(f"invalid model path {rel!r}")
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or rel.startswith("~"):
            raise ForbiddenPathError(f"model path {rel!r} is outside the models folder")
        if not self._inside(self.models_dir / pure):
            raise ForbiddenPathError(f"model path {rel!r} resolves outside the models folder")
        if pure.as_posix() not in self._scan_files():
            raise UnknownModelError(f"no model file {rel!r} in the models folder")
        return pure.as_posix()

    def forget(self, model_id: str) -> None:
        """Drop a loaded model from memory (its files changed); the next ``get`` loads it again."""
        with self._lock:
            self._loaded.pop(model_id, None)

    def sha256(self, model_id: str) -> str | None:
        """sha256 of the model's file or native folder; None for a preloaded generator (no file)."""
        from dragkit.io.loader import model_sha256

        info = self.resolve(model_id)
        if info.source == "preloaded":
            return None
        if info.source == "file":
            assert self.models_dir is not None
            return model_sha256(self.models_dir / PurePosixPath(info.label))
        if info.source == "photo":
            return model_sha256(self.photo_path(model_id))
        return model_sha256(model_id)

    def get(self, model_id: str) -> Generator:
        """The generator for ``model_id``, loading (and caching) it if needed. Call from the worker thread."""
        info = self.resolve(model_id)
        if info.source == "preloaded":
            return self.preloaded[model_id]
        with self._lock:
            if model_id in self._loaded:
                self._loaded.move_to_end(model_id)
                return self._loaded[model_id]
        if info.source == "file":
            assert self.models_dir is not None
            target = str(self.models_dir / PurePosixPath(info.label))
        elif info.source == "photo":
            target = str(self.photo_path(model_id))
        else:
            target = model_id
        log.info("loading model %s", model_id)
        G = self._loader(target, self.device)
        with self._lock:
            self._loaded[model_id] = G
            while len(self._loaded) > self.max_loaded:
                evicted, _ = self._loaded.popitem(last=False)
                log.info("unloaded model %s (keeping at most %d)", evicted, self.max_loaded)
        return G
