"""A restricted unpickler for NVIDIA network pickles that never runs code stored in the file.

NVIDIA's ``stylegan2-ada-pytorch`` / ``stylegan3`` save networks with a plain ``pickle.dump``; each network object
is a call to ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` whose ``meta['module_src']`` holds the
source of the defining module, which NVIDIA's loader ``exec``s. Here that function is replaced by one that records
``meta`` in a :class:`PersistentStub` (the source is kept as text and never executed), and every other global the
pickle names must be on a short allow-list (docs/architecture.md §4); anything else raises
:class:`~dragkit.errors.UnsafeCheckpointError` naming ``module.name`` and the file before it is called.

Allowed globals (checked against torch's own pickling code: ``Tensor._reduce_ex_internal`` emits
``_rebuild_tensor_v2`` for float/int tensors, ``Parameter.__reduce_ex__`` emits ``_rebuild_parameter`` or
``_rebuild_parameter_with_state``, ``TypedStorage.__reduce__`` emits ``_load_from_bytes(<legacy torch.save
bytes>)``; ``torch.FloatStorage``-style names occur only *inside* those bytes, which ``torch.load(...,
weights_only=True)`` checks; ``_rebuild_tensor`` (v1) is not emitted by any torch ≥ 1.0, so it is refused):

- ``torch_utils.persistence._reconstruct_persistent_obj`` → :class:`PersistentStub` (records only);
- ``dnnlib.util.EasyDict`` → :class:`EasyDict` (a plain ``dict`` subclass);
- ``dnnlib.tflib.network.Network`` → :class:`TFNetworkStub` (TF-era pickles; records only);
- ``collections.OrderedDict``, ``builtins.set``;
- ``torch._utils._rebuild_tensor_v2``, ``torch._utils._rebuild_parameter``,
  ``torch._utils._rebuild_parameter_with_state`` (re-implemented here with argument checks; hooks must be empty);
- ``torch.storage._load_from_bytes`` → ``torch.load(BytesIO(b), weights_only=True, map_location='cpu')``;
- numpy ``_reconstruct`` / ``scalar`` under ``numpy.core.multiarray`` and ``numpy._core.multiarray``, and
  ``numpy.ndarray`` / ``numpy.dtype`` (object dtypes refused);
- ``_codecs.encode`` (text encodings only: how protocol-2 pickles store ``bytes``).

Pickle persistent ids (``persistent_load``) are refused too.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import io
import pickle
import pickletools
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from dragkit.errors import CheckpointError, UnsafeCheckpointError

try:  # numpy ≥ 2
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _np_multiarray  # type: ignore[no-redef]

__all__ = [
    "ALLOWED_GLOBALS",
    "EasyDict",
    "PersistentStub",
    "SafeLoadResult",
    "SafeUnpickler",
    "TFNetworkStub",
    "safe_load",
]


class EasyDict(dict[str, Any]):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict that also allows attribute reads."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class PersistentStub:
    """What a ``_reconstruct_persistent_obj(meta)`` call in an NVIDIA pickle becomes: recorded data, no code.

    ``module_src`` is the defining module's source text, kept only for inspection and never executed.
    ``state`` is the network object's instance ``__dict__`` (``_parameters``, ``_buffers``, ``_modules`` with
    child stubs, ``_init_args``, ``_init_kwargs``, plain attributes such as ``conv_clamp``).
    """

    __slots__ = ("class_name", "meta_type", "module_src", "state", "version")

    def __init__(self, meta_type: str, version: int, class_name: str, module_src: str, state: dict[str, Any]):
        self.meta_type = meta_type
        self.version = version
        self.class_name = class_name
        self.module_src = module_src
        self.state = state

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("malformed pickle: BUILD applied to a persistent network object")

    def __repr__(self) -> str:
        return f"PersistentStub({self.class_name!r}, version={self.version})"

    # -- conveniences for readers ---------------------------------------------------------------------------
    def children(self) -> dict[str, Any]:
        """The ``_modules`` dict (child name → stub or None)."""
        mods = self.state.get("_modules", {})
        return dict(mods) if isinstance(mods, dict) else {}

    def attr(self, name: str, default: Any = None) -> Any:
        """A plain attribute of the recorded object (``state[name]``)."""
        return self.state.get(name, default)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The constructor keyword arguments NVIDIA's persistence records (``_init_kwargs``), or {}."""
        kw = self.state.get("_init_kwargs", {})
        return dict(kw) if isinstance(kw, dict) else {}

    @property
    def init_args(self) -> tuple[Any, ...]:
        """The constructor positional arguments (``_init_args``), or ()."""
        args = self.state.get("_init_args", ())
        return tuple(args) if isinstance(args, (tuple, list)) else ()


class TFNetworkStub(dict[str, Any]):
    """Stand-in for ``dnnlib.tflib.network.Network`` of TF-era StyleGAN2 pickles; holds the pickled state."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError("malformed TF network state (expected a dict)")
        self.update(state)


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


@dataclass
class SafeLoadResult:
    """The unpickled object plus the globals the pickle named, in order of first use."""

    obj: Any
    globals_named: list[str] = field(default_factory=list)
    protocol: int | None = None


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` with an allow-list ``find_class`` and a refusing ``persistent_load``.

    ``source`` names the file in error messages. ``globals_named`` records every ``module.name`` the pickle asked
    for (allowed or not) — what ``dragkit inspect`` shows.
    """

    def __init__(self, file: IO[bytes], source: str | Path = "<bytes>") -> None:
        super().__init__(file)
        self.source = str(source)
        self.globals_named: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (``__builtin__.set``: what protocol-2 pickles written by Python 3 contain) map to Python 3
        # names first, as pickle's own find_class does.
        original = f"{module}.{name}"
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        if full not in self.globals_named:
            self.globals_named.append(full)
        factory = ALLOWED_GLOBALS.get(full)
        if factory is None:
            alias = f" (written as '{original}')" if original != full else ""
            raise UnsafeCheckpointError(
                f"{self.source}: refused global '{full}'{alias} (not on the allow-list for network pickles); "
                "nothing from the file was executed"
            )
        return factory(self)

    def persistent_load(self, pid: Any) -> Any:
        text = repr(pid)
        if len(text) > 60:
            text = text[:57] + "..."
        raise UnsafeCheckpointError(f"{self.source}: refused pickle persistent id {text} (not used by network pickles)")


# ---------------------------------------------------------------------------------------------------------------
# Replacements for the allowed globals. Each takes the unpickler (for error messages) and returns the callable.


def _reconstruct_persistent_obj(up: SafeUnpickler) -> Callable[[Any], PersistentStub]:
    def reconstruct(meta: Any) -> PersistentStub:
        if not isinstance(meta, dict):
            raise CheckpointError(f"{up.source}: malformed persistent object (meta is {type(meta).__name__})")
        state = meta.get("state")
        if state is None:
            state = {}
        class_name = meta.get("class_name")
        module_src = meta.get("module_src", "")
        if not isinstance(state, dict) or not isinstance(class_name, str) or not isinstance(module_src, str):
            raise CheckpointError(f"{up.source}: malformed persistent object meta (keys {sorted(map(str, meta))})")
        version = meta.get("version")
        return PersistentStub(
            meta_type=str(meta.get("type")),
            version=int(version) if isinstance(version, int) else -1,
            class_name=class_name,
            module_src=module_src,
            state=state,
        )

    return reconstruct


def _check_hooks(up: SafeUnpickler, hooks: Any) -> None:
    if hooks is None:
        return
    if not isinstance(hooks, dict) or len(hooks) != 0:
        raise CheckpointError(f"{up.source}: tensor with backward hooks (network pickles never have them)")


def _rebuild_tensor_v2(up: SafeUnpickler) -> Callable[..., torch.Tensor]:
    def rebuild(
        storage: Any,
        storage_offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any = False,
        backward_hooks: Any = None,
        metadata: Any = None,
    ) -> torch.Tensor:
        if not isinstance(storage, torch.storage.TypedStorage):
            raise CheckpointError(f"{up.source}: tensor rebuilt from a {type(storage).__name__}, not a storage")
        ints_ok = isinstance(storage_offset, int) and all(
            isinstance(v, tuple) and all(isinstance(i, int) for i in v) for v in (size, stride)
        )
        if not ints_ok or len(size) != len(stride):
            raise CheckpointError(f"{up.source}: malformed tensor geometry size={size!r} stride={stride!r}")
        _check_hooks(up, backward_hooks)
        if metadata:
            raise CheckpointError(f"{up.source}: tensor with unsupported metadata {metadata!r}")
        # Tensor.set_ silently *grows* a resizable storage, so bounds are checked here.
        if storage_offset < 0 or any(v < 0 for v in size) or any(v < 0 for v in stride):
            raise CheckpointError(f"{up.source}: tensor with negative size, stride or offset")
        needed = 0 if 0 in size else storage_offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            available = storage.size()
        if needed > available:
            raise CheckpointError(
                f"{up.source}: tensor does not fit its storage (needs {needed} elements, storage has {available})"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = torch.empty((0,), dtype=storage.dtype)
                t.set_(storage._untyped_storage, storage_offset, size, stride)
        except RuntimeError as exc:
            raise CheckpointError(f"{up.source}: tensor does not fit its storage ({exc})") from None
        return t

    return rebuild


def _rebuild_parameter(up: SafeUnpickler) -> Callable[..., torch.Tensor]:
    def rebuild(data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None) -> torch.Tensor:
        if not isinstance(data, torch.Tensor):
            raise CheckpointError(f"{up.source}: parameter rebuilt from a {type(data).__name__}")
        _check_hooks(up, backward_hooks)
        return data  # extra Python state on a Parameter (``state``) is ignored: it never affects values

    return rebuild


def _load_from_bytes(up: SafeUnpickler) -> Callable[[Any], Any]:
    def load(b: Any) -> Any:
        if not isinstance(b, (bytes, bytearray)):
            raise CheckpointError(f"{up.source}: storage payload is a {type(b).__name__}, not bytes")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                storage = torch.load(io.BytesIO(bytes(b)), weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as exc:
            match = _GLOBAL_RE.search(str(exc))
            what = f"global '{match.group(1)}'" if match else "content"
            raise UnsafeCheckpointError(
                f"{up.source}: refused {what} inside a tensor storage (torch weights-only check); "
                "nothing from the file was executed"
            ) from None
        except Exception as exc:  # corrupt inner bytes: torch raises a variety of types
            raise CheckpointError(f"{up.source}: corrupt tensor storage ({type(exc).__name__}: {exc})") from None
        if not isinstance(storage, torch.storage.TypedStorage):
            raise CheckpointError(f"{up.source}: storage payload holds a {type(storage).__name__}, not a storage")
        return storage

    return load


def _safe_dtype(up: SafeUnpickler) -> Callable[..., np.dtype[Any]]:
    def make(*args: Any) -> np.dtype[Any]:
        if not args or not isinstance(args[0], str):
            raise CheckpointError(f"{up.source}: malformed numpy dtype arguments")
        d = np.dtype(args[0])
        if d.hasobject:
            raise UnsafeCheckpointError(f"{up.source}: refused numpy object dtype (arrays of Python objects)")
        return np.dtype(*args)

    return make


def _codecs_encode(up: SafeUnpickler) -> Callable[..., bytes]:
    allowed = {"latin1", "latin-1", "iso8859-1", "utf-8", "utf8", "ascii"}

    def encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        if not isinstance(obj, str) or encoding.lower() not in allowed or errors != "strict":
            raise UnsafeCheckpointError(f"{up.source}: refused _codecs.encode with encoding {encoding!r}")
        return codecs.encode(obj, encoding, errors)

    return encode


def _const(value: Any) -> Callable[[SafeUnpickler], Any]:
    return lambda up: value


ALLOWED_GLOBALS: dict[str, Callable[[SafeUnpickler], Any]] = {
    "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent_obj,
    "dnnlib.util.EasyDict": _const(EasyDict),
    "dnnlib.tflib.network.Network": _const(TFNetworkStub),
    "collections.OrderedDict": _const(OrderedDict),
    "builtins.set": _const(set),
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch.storage._load_from_bytes": _load_from_bytes,
    "numpy.core.multiarray._reconstruct": _const(_np_multiarray._reconstruct),
    "numpy.core.multiarray.scalar": _const(_np_multiarray.scalar),
    "numpy._core.multiarray._reconstruct": _const(_np_multiarray._reconstruct),
    "numpy._core.multiarray.scalar": _const(_np_multiarray.scalar),
    "numpy.ndarray": _const(np.ndarray),
    "numpy.core.multiarray.ndarray": _const(np.ndarray),
    "numpy._core.multiarray.ndarray": _const(np.ndarray),
    "numpy.dtype": _safe_dtype,
    "_codecs.encode": _codecs_encode,
}
"""``module.name`` → factory(unpickler) returning the object the pickle gets instead of the real global."""


class _BoundedReader:
    """File view whose ``read(n)`` never asks for more than what is left (no huge allocations from bogus lengths)."""

    def __init__(self, file: IO[bytes], end: int) -> None:
        self._file = file
        self._end = end

    def read(self, n: int = -1) -> bytes:
        left = max(self._end - self._file.tell(), 0)
        return self._file.read(left if n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self._file.readline()

    def tell(self) -> int:
        return self._file.tell()


_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"}


def _prescan(file: IO[bytes], start: int, end: int, source: str | Path) -> None:
    """Walk the opcode stream once without building anything and reject what would make ``pickle`` allocate
    absurd amounts of memory: memo indices beyond the number of opcodes so far (the C unpickler grows its memo
    array to the index) and frames or length fields beyond the end of the file."""
    n_ops = 0
    try:
        for op, arg, pos in pickletools.genops(_BoundedReader(file, end)):  # type: ignore[arg-type]
            n_ops += 1
            if op.name in _MEMO_OPS and isinstance(arg, int) and arg > n_ops:
                raise CheckpointError(f"{source}: corrupt pickle (memo index {arg} at byte {pos})")
            if op.name == "FRAME" and isinstance(arg, int) and arg > end - (pos or 0):
                raise CheckpointError(f"{source}: truncated or corrupt pickle (frame of {arg} bytes at byte {pos})")
    except CheckpointError:
        raise
    except Exception as exc:  # pickletools raises ValueError for truncation and unknown opcodes
        raise CheckpointError(f"{source}: truncated or corrupt pickle ({exc})") from None
    finally:
        file.seek(start)


def safe_load(file: IO[bytes], source: str | Path = "<bytes>") -> SafeLoadResult:
    """Unpickle ``file`` (seekable, from its current position) with :class:`SafeUnpickler`.

    The opcode stream is checked first (:func:`_prescan`). Raises :class:`UnsafeCheckpointError` for a refused
    global or persistent id and :class:`CheckpointError` for truncated or malformed data; nothing stored in the file
    is executed either way.
    """
    start = file.tell()
    end = file.seek(0, io.SEEK_END)
    file.seek(start)
    head = file.read(2)
    protocol = head[1] if len(head) == 2 and head[0] == 0x80 else None
    file.seek(start)
    _prescan(file, start, end, source)
    up = SafeUnpickler(file, source)
    try:
        obj = up.load()
    except CheckpointError:
        raise
    except (EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{source}: truncated or corrupt pickle ({exc or type(exc).__name__})") from None
    except Exception as exc:  # malformed opcode streams raise many types (TypeError, ValueError, KeyError, ...)
        raise CheckpointError(f"{source}: corrupt pickle ({type(exc).__name__}: {exc})") from None
    return SafeLoadResult(obj=obj, globals_named=list(up.globals_named), protocol=protocol)
