"""Hostile checkpoints: refused (or, for ``module_src``, ignored) without running anything; errors name the global.

Every payload here would touch a sentinel file if it ran; each test asserts the file never appears.
"""

from __future__ import annotations

import io
import os
import pickle
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dragkit.errors import CheckpointError, UnsafeCheckpointError
from dragkit.io import inspect_checkpoint, load_generator
from dragkit.io.safe_pickle import ALLOWED_GLOBALS, safe_load
from dragkit.nn.stylegan2 import StyleGAN2Generator
from tests.ckpt_writers import (
    MODULE_SRC,
    child,
    nvidia_modules,
    nvidia_snapshot_with,
    raw_pickle,
    to_rosinality_state_dict,
)


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a payload ran"


def _shell(sentinel: Path) -> str:
    return f"touch {sentinel}"


def _py(sentinel: Path) -> str:
    return f"open({str(sentinel)!r}, 'w').write('x')"


# (module, name, payload builder) — what an attacker would put in a network pickle.
GADGETS = [
    ("os", "system", _shell),
    ("posix", "system", _shell),
    ("builtins", "eval", _py),
    ("builtins", "exec", _py),
    ("builtins", "getattr", lambda s: "os"),
    ("subprocess", "Popen", _shell),
    ("importlib", "import_module", lambda s: "os"),
    ("runpy", "run_path", lambda s: str(s)),
    ("numpy", "load", lambda s: str(s)),
    ("numpy.testing._private.utils", "runstring", _py),
    ("torch.serialization", "load", lambda s: str(s)),
    ("pickle", "loads", lambda s: "x"),
    ("torch_utils.persistence", "_src_to_module", _py),
    ("copyreg", "_reconstructor", lambda s: "x"),
    ("torch", "load", lambda s: str(s)),
]


@pytest.mark.parametrize(("module", "name", "payload"), GADGETS, ids=[f"{m}.{n}" for m, n, _ in GADGETS])
def test_gadget_globals_are_refused(tmp_path: Path, sentinel: Path, module: str, name: str, payload: Any) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(raw_pickle(module, name, payload(sentinel)))
    with pytest.raises(UnsafeCheckpointError, match=rf"evil\.pkl: refused global '{module}\.{name}'"):
        load_generator(path)
    with pytest.raises(UnsafeCheckpointError, match=rf"refused global '{module}\.{name}'"):
        inspect_checkpoint(path)


def test_python2_alias_is_resolved_then_refused(tmp_path: Path, sentinel: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(raw_pickle("__builtin__", "eval", _py(sentinel)))
    with pytest.raises(
        UnsafeCheckpointError, match=r"refused global 'builtins\.eval' \(written as '__builtin__\.eval'\)"
    ):
        load_generator(path)


def test_module_src_is_never_executed(tiny_g: StyleGAN2Generator, tmp_path: Path, sentinel: Path) -> None:
    """A network pickle whose module_src writes a file loads fine here — its code is kept as text only."""
    evil_src = f"import pathlib\npathlib.Path({str(sentinel)!r}).write_text('pwned')\n" + MODULE_SRC
    blob = nvidia_snapshot_with(tiny_g, "ada", 4, module_src=evil_src)
    (tmp_path / "evil.pkl").write_bytes(blob)
    G = load_generator(tmp_path / "evil.pkl")
    assert not sentinel.exists()
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), tiny_g.state_dict().values(), strict=True))

    # Control: NVIDIA's own loading (exec of module_src) would have fired the payload.
    def nvidia_like(meta: dict[str, Any]) -> Any:  # exec's the payload lines, as _src_to_module would
        if meta["module_src"].startswith("import pathlib"):
            exec("\n".join(meta["module_src"].split("\n")[:2]), types.ModuleType("_control").__dict__)

    with nvidia_modules(reconstruct=nvidia_like):
        pickle.loads(blob)
    assert sentinel.exists()
    sentinel.unlink()


def test_torch_load_gadget_inside_storage_bytes(tmp_path: Path, sentinel: Path) -> None:
    """torch.storage._load_from_bytes is allowed, but its payload goes through torch's weights-only unpickler."""
    inner = raw_pickle("os", "system", _shell(sentinel))
    outer = b"\x80\x03ctorch.storage\n_load_from_bytes\nB" + len(inner).to_bytes(4, "little") + inner + b"\x85R."
    (tmp_path / "evil.pkl").write_bytes(outer)
    with pytest.raises(UnsafeCheckpointError, match=r"refused global 'os\.system' inside a tensor storage"):
        load_generator(tmp_path / "evil.pkl")


def test_persistent_ids_are_refused(tmp_path: Path) -> None:
    (tmp_path / "evil.pkl").write_bytes(b"\x80\x02X\x0b\x00\x00\x00os.system:xQ.")
    with pytest.raises(UnsafeCheckpointError, match=r"refused pickle persistent id 'os\.system:x'"):
        load_generator(tmp_path / "evil.pkl")


def test_callable_smuggled_into_a_hook_dict(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    def patch(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        child(data["G_ema"], "mapping").meta["state"]["_forward_hooks"] = {0: print}

    (tmp_path / "evil.pkl").write_bytes(nvidia_snapshot_with(tiny_g, "sg3", 4, patch=patch))
    with pytest.raises(UnsafeCheckpointError, match=r"refused global 'builtins\.print'"):
        load_generator(tmp_path / "evil.pkl")


def test_numpy_object_arrays_are_refused(tmp_path: Path) -> None:
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": np.array([1, "a"], dtype=object)}, protocol=4))
    with pytest.raises(UnsafeCheckpointError, match="numpy object dtype"):
        load_generator(tmp_path / "evil.pkl")


def test_numpy_arrays_and_scalars_under_both_module_names() -> None:
    data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(0.5)}
    for protocol in (2, 3):
        blob = pickle.dumps(data, protocol=protocol)
        for blob_variant in (blob, blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")):
            res = safe_load(io.BytesIO(blob_variant))
            assert np.array_equal(res.obj["a"], data["a"]) and res.obj["s"] == 0.5


def test_codecs_encode_only_text_encodings(tmp_path: Path) -> None:
    blob = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x0a\x00\x00\x00zlib_codec\x86R."
    (tmp_path / "evil.pkl").write_bytes(blob)
    with pytest.raises(UnsafeCheckpointError, match=r"_codecs\.encode with encoding 'zlib_codec'"):
        load_generator(tmp_path / "evil.pkl")


def test_malformed_tensor_geometry(tmp_path: Path) -> None:
    """A tensor claiming more elements than its storage holds is an error, not an out-of-bounds view."""
    ok = pickle.dumps(torch.arange(4.0), protocol=2)
    bad = ok.replace(b"K\x00K\x04\x85", b"K\x00K\x40\x85", 1)  # offset 0, size (4,) → (64,)
    assert bad != ok
    with pytest.raises(CheckpointError, match="does not fit its storage"):
        safe_load(io.BytesIO(bad))


def test_rosinality_pt_with_gadget_is_refused(tiny_g: StyleGAN2Generator, tmp_path: Path, sentinel: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (_shell(sentinel),))

    import dataclasses

    from tests.conftest import TINY_CONFIG, make_tiny_generator

    G = make_tiny_generator(config=dataclasses.replace(TINY_CONFIG, conv_clamp=None))
    for legacy in (False, True):
        path = tmp_path / f"evil{legacy}.pt"
        torch.save(
            {"g_ema": to_rosinality_state_dict(G), "latent_avg": Evil()},
            path,
            _use_new_zipfile_serialization=not legacy,
        )
        with pytest.raises(UnsafeCheckpointError, match=rf"evil{legacy}\.pt: refused global 'posix\.system'"):
            load_generator(path)


def test_allow_list_is_exactly_the_documented_one() -> None:
    assert set(ALLOWED_GLOBALS) == {
        "torch_utils.persistence._reconstruct_persistent_obj",
        "dnnlib.util.EasyDict",
        "dnnlib.tflib.network.Network",
        "collections.OrderedDict",
        "builtins.set",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch.storage._load_from_bytes",
        "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "numpy.ndarray",
        "numpy.core.multiarray.ndarray",
        "numpy._core.multiarray.ndarray",
        "numpy.dtype",
        "_codecs.encode",
    }


def test_memo_index_bomb_is_refused_before_allocating(tmp_path: Path) -> None:
    """LONG_BINPUT 2**31 would make the C unpickler allocate and zero a 16 GiB memo array."""
    (tmp_path / "bomb.pkl").write_bytes(b"\x80\x02K\x01r\x00\x00\x00\x80.")
    with pytest.raises(CheckpointError, match="memo index 2147483648"):
        load_generator(tmp_path / "bomb.pkl")
    (tmp_path / "len.pkl").write_bytes(b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"xx.")
    with pytest.raises(CheckpointError, match="truncated or corrupt pickle"):
        load_generator(tmp_path / "len.pkl")


@pytest.mark.parametrize("fmt", ["ada", "sg3", "zip", "legacy"])
def test_random_corruption_never_escapes_as_another_error(tmp_path: Path, fmt: str) -> None:
    """Seeded byte flips: every result is a loaded generator or a DragkitError, never a crash or other type."""
    import dataclasses
    import random

    from dragkit.errors import DragkitError
    from tests.ckpt_writers import nvidia_snapshot, write_rosinality
    from tests.conftest import TINY_CONFIG, make_tiny_generator

    G = make_tiny_generator(config=dataclasses.replace(TINY_CONFIG, conv_clamp=None))
    if fmt in ("ada", "sg3"):
        blob = nvidia_snapshot(G, fmt)
    else:
        blob = write_rosinality(G, tmp_path / "r.pt", legacy=fmt == "legacy").read_bytes()
    rng = random.Random(fmt)
    for i in range(40):
        b = bytearray(blob)
        for _ in range(rng.choice([1, 3, 20])):
            b[rng.randrange(len(b))] = rng.randrange(256)
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes(b))
        try:
            load_generator(path)
        except DragkitError as exc:
            assert "\n" not in str(exc)
