"""CLI: generate / inspect / convert happy paths; user errors exit 2 with one line on stderr and no traceback."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dragkit.cli import main
from dragkit.cli.generate import parse_seeds
from dragkit.io.images import load_image, to_uint8
from dragkit.nn.seeds import z_from_seed
from tests.ckpt_writers import raw_pickle, write_nvidia_pickle
from tests.conftest import TINY_CONFIG, make_tiny_generator


@pytest.fixture(scope="module")
def pkl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nvidia_pickle(make_tiny_generator(seed=2), tmp_path_factory.mktemp("cli") / "net.pkl", "sg3")


def test_parse_seeds() -> None:
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds("5") == [5]
    assert parse_seeds("3,1-2,3") == [3, 1, 2]
    for bad in ("", "a", "3-1", "1,,2", "-1"):
        with pytest.raises(Exception, match="seed"):
            parse_seeds(bad)


def test_generate(pkl: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["generate", "--network", str(pkl), "--seeds", "0-2,7", "--trunc", "0.7", "--outdir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    G = make_tiny_generator(seed=2)
    with torch.no_grad():
        expected = to_uint8(G(z_from_seed(7, G.z_dim), psi=0.7, noise_mode="const"))[0]
    assert np.array_equal(load_image(out / "seed0007.png"), expected)


def test_generate_conditional_needs_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    G = make_tiny_generator(config=dataclasses.replace(TINY_CONFIG, c_dim=3))
    path = write_nvidia_pickle(G, tmp_path / "cond.pkl")
    args = ["generate", "--network", str(path), "--seeds", "1", "--outdir", str(tmp_path / "o")]
    assert main(args) == 2
    assert "--class: this model is conditional on 3 classes: the class must be in [0, 2]" in capsys.readouterr().err
    assert main([*args, "--class-idx", "2", "--noise-mode", "none"]) == 0
    assert (tmp_path / "o" / "seed0001.png").is_file()


def test_generate_bad_device(pkl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["generate", "--network", str(pkl), "--seeds", "0", "--outdir", str(tmp_path)]
    assert main([*args, "--device", "potato"]) == 2
    assert "invalid --device 'potato'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_inspect_text_and_json(pkl: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(pkl)]) == 0
    text = capsys.readouterr().out
    for needle in (
        "nvidia-pickle",
        "stylegan2",
        "32x32",
        "num_ws",
        "torch_utils.persistence._reconstruct_persistent_obj",
    ):
        assert needle in text
    assert main(["inspect", str(pkl), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "nvidia-pickle" and info["num_ws"] == 8 and info["resolution"] == [32, 32]


def test_convert_then_generate_same_images(pkl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "native"
    assert main(["convert", str(pkl), str(out), "--licence", "CC-BY-4.0"]) == 0
    meta = json.loads((out / "config.json").read_text())
    assert meta["provenance"]["source_format"] == "nvidia-pickle"
    assert meta["provenance"]["source_name"] == "net.pkl" and meta["provenance"]["licence"] == "CC-BY-4.0"
    for src, d in ((pkl, "a"), (out, "b")):
        assert main(["generate", "--network", str(src), "--seeds", "3", "--outdir", str(tmp_path / d)]) == 0
    assert np.array_equal(load_image(tmp_path / "a" / "seed0003.png"), load_image(tmp_path / "b" / "seed0003.png"))
    capsys.readouterr()
    assert main(["convert", str(pkl), str(out)]) == 2  # refuses to overwrite
    assert "not an empty directory" in capsys.readouterr().err
    assert main(["convert", str(pkl), str(out), "--force"]) == 0


def _bad_files(pkl: Path, d: Path) -> dict[str, tuple[Path, str]]:
    blob = pkl.read_bytes()
    files = {
        "missing": (d / "missing.pkl", "no such file"),
        "truncated": (d / "trunc.pkl", "truncated or corrupt pickle"),
        "corrupt": (d / "corrupt.pkl", "corrupt"),
        "unknown": (d / "unknown.bin", "unknown checkpoint format"),
        "refused": (d / "evil.pkl", "refused global 'os.system'"),
        "fifo": (d / "fifo.pkl", "not a regular file"),  # would block a reader forever
        "wheel": (d / "random_face.whl", "a Python wheel, not a checkpoint"),
        "zip": (d / "other.zip", "a zip archive that is not a torch.save checkpoint"),
    }
    files["truncated"][0].write_bytes(blob[: len(blob) // 3])
    files["corrupt"][0].write_bytes(b"\x80\x04" + os.urandom(64))
    files["unknown"][0].write_bytes(b"GIF89a" + b"\0" * 64)
    files["refused"][0].write_bytes(raw_pickle("os", "system", f"touch {d / 'PWNED'}"))
    os.mkfifo(files["fifo"][0])
    for name, member in (("wheel", "random_face-1.dist-info/WHEEL"), ("zip", "notes.txt")):
        with zipfile.ZipFile(files[name][0], "w") as z:
            z.writestr(member, "text")
    return files


@pytest.mark.parametrize("command", ["generate", "inspect", "convert"])
def test_user_errors_exit_2_one_line(
    pkl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    for name, (path, needle) in _bad_files(pkl, tmp_path).items():
        argv = {
            "generate": ["generate", "--network", str(path), "--seeds", "0", "--outdir", str(tmp_path / "o")],
            "inspect": ["inspect", str(path)],
            "convert": ["convert", str(path), str(tmp_path / "conv")],
        }[command]
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"dragkit {command}: error: "), (name, err)
        assert needle in err and "Traceback" not in err, (name, err)
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "conv").exists() and not (tmp_path / "o").exists()


def test_process_level_exit_code_and_stderr(pkl: Path, tmp_path: Path) -> None:
    """The real entry point (python -m dragkit): exit status 2, one stderr line, no traceback."""
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(raw_pickle("builtins", "eval", "1"))
    proc = subprocess.run(
        [sys.executable, "-m", "dragkit", "inspect", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"dragkit inspect: error: {bad}: refused global 'builtins.eval' (not on the allow-list for network "
        "pickles); nothing from the file was executed"
    ]


def test_system_errors_and_absurd_configs_are_one_line(
    pkl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output folder that cannot exist (the system's error) and a config.json nested 200,000 deep."""
    assert main(["generate", "--network", str(pkl), "--seeds", "0", "--outdir", "/dev/null/out"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dragkit generate: error: ") and "Traceback" not in err
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    (deep / "model.safetensors").write_bytes(b"")
    assert main(["inspect", str(deep)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("nested too deeply" in err or "not valid JSON" in err), err


@pytest.mark.parametrize(
    "declared",
    [
        {"z_dim": 50_000_000},
        {"z_dim": 2**40},
        {"channel_max": 2**20, "channel_base": 2**30},
        {"resample_filter": [1] * 100_000},
        {"mapping_layers": 100_000},
        {"img_resolution": 2**30},
    ],
)
def test_declared_sizes_are_checked_against_the_stored_tensors_before_anything_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], declared: dict[str, object]
) -> None:
    """A config that declares sizes its weights do not have is one line at once — no allocation, no traceback."""
    from dragkit.io import save_native

    folder = save_native(make_tiny_generator(), tmp_path / "net", {"licence": "test"})
    meta = json.loads((folder / "config.json").read_text())
    meta["config"].update(declared)
    (folder / "config.json").write_text(json.dumps(meta))
    for argv in (
        ["inspect", str(folder)],
        ["generate", "--network", str(folder), "--seeds", "0", "--outdir", str(tmp_path / "o")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert "the config declares" in err or "invalid StyleGAN2 config" in err, err
