"""LPIPS-VGG with the user's weights: the distance's arithmetic on random weights in the published layouts, the
weight checks, "auto" choosing the loss, and the pipeline reporting the loss that ran."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dragkit.errors import InvalidInputError, ModelNotFoundError
from dragkit.invert import lpips as lpips_mod
from dragkit.invert.losses import loss_function, resolve_loss
from dragkit.invert.lpips import LPIPS, load_lpips
from dragkit.invert.pipeline import invert_photo, write_outputs
from dragkit.invert.project import InvertConfig
from dragkit.io import registry
from dragkit.nn.images import to_uint8
from tests.conftest import make_tiny_generator

# torchvision's VGG16 ``features`` indices of the 13 convolutions, and the ReLUs LPIPS compares (relu1_2 … relu5_3)
CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
TAP_AFTER = (2, 7, 14, 21, 28)  # the last convolution of each block


def random_weights(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    vgg: dict[str, torch.Tensor] = {}
    c_in = 3
    for i, c in zip(CONVS, WIDTHS, strict=True):
        vgg[f"features.{i}.weight"] = torch.randn([c, c_in, 3, 3], generator=g) * (2 / (9 * c_in)) ** 0.5
        vgg[f"features.{i}.bias"] = torch.randn([c], generator=g) * 0.1
        c_in = c
    vgg["classifier.0.weight"] = torch.zeros([4, 4])  # torchvision's head: present in the file, not used
    lin = {
        f"lin{k}.model.1.weight": torch.rand([1, c, 1, 1], generator=g) for k, c in enumerate((64, 128, 256, 512, 512))
    }
    return vgg, lin


def by_hand(
    vgg: dict[str, torch.Tensor], lin: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """LPIPS written out from the paper, one image at a time."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)
    out = []
    for x, y in zip(a, b, strict=True):
        feats = []
        for img in (x[None], y[None]):
            h = (img - shift) / scale
            taps = []
            for i in CONVS:
                if i in (5, 10, 17, 24):
                    h = F.max_pool2d(h, 2)
                h = F.relu(F.conv2d(h, vgg[f"features.{i}.weight"], vgg[f"features.{i}.bias"], padding=1))
                if i in TAP_AFTER:
                    taps.append(h)
            feats.append(taps)
        total = torch.zeros([])
        for k, (fx, fy) in enumerate(zip(*feats, strict=True)):
            nx = fx / (fx.norm(dim=1, keepdim=True) + 1e-10)
            ny = fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
            total = total + ((nx - ny) ** 2 * lin[f"lin{k}.model.1.weight"]).sum(dim=1).mean()
        out.append(total)
    return torch.stack(out)


def test_lpips_matches_the_formula_and_is_a_distance() -> None:
    vgg, lin = random_weights()
    model = LPIPS(vgg, lin)
    g = torch.Generator().manual_seed(1)
    a = torch.rand([2, 3, 32, 32], generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn([2, 3, 32, 32], generator=g)).clamp(-1, 1)
    d = model(a, b)
    assert d.shape == (2,)
    torch.testing.assert_close(d, by_hand(vgg, lin, a, b), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model(b, a), d)
    assert float(model(a, a).abs().max()) < 1e-6 and bool((d > 0).all())
    x = a.clone().requires_grad_(True)
    model(x, b).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(not p.requires_grad for p in model.parameters())


def test_lpips_refuses_other_weights() -> None:
    vgg, lin = random_weights()
    with pytest.raises(InvalidInputError, match="not torchvision's VGG16 weights"):
        LPIPS({k: v for k, v in vgg.items() if k != "features.28.weight"}, lin)
    with pytest.raises(InvalidInputError, match=r"not LPIPS-VGG heads: lin2.model.1.weight"):
        LPIPS(vgg, {**lin, "lin2.model.1.weight": torch.zeros([1, 3, 1, 1])})


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(registry.ENV_HOME, str(tmp_path / "home"))
    load_lpips.cache_clear()
    return tmp_path / "home"


def test_auto_picks_lpips_only_where_the_backbone_is(home: Path) -> None:
    assert resolve_loss("auto") == "lap1+msssim"
    assert resolve_loss("auto", vgg16="/some/vgg16.pth") == "lpips"
    registry.WEIGHT_FILES["vgg16-imagenet"].path.parent.mkdir(parents=True)
    registry.WEIGHT_FILES["vgg16-imagenet"].path.write_bytes(b"x")
    assert resolve_loss("auto") == "lpips"
    assert resolve_loss("lap1+msssim") == "lap1+msssim"
    with pytest.raises(InvalidInputError, match="unknown loss 'lpip'"):
        InvertConfig(loss="lpip")


def test_lpips_without_weights_says_where_to_put_them(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = tmp_path / "vgg16-397923af.pth"
    torch.save(random_weights()[0], wrong)
    with pytest.raises(ModelNotFoundError, match=r"sha256 [0-9a-f]{64}, not that of torchvision's vgg16-397923af.pth"):
        load_lpips(str(wrong))
    assert wrong.is_file()  # the user's file is never deleted
    with pytest.raises(ModelNotFoundError, match="no such file"):
        load_lpips(str(tmp_path / "missing.pth"))
    entry = registry.WEIGHT_FILES["vgg16-imagenet"]
    monkeypatch.setitem(registry.WEIGHT_FILES, entry.name, dataclasses.replace(entry, url="http://127.0.0.1:9/v.pth"))
    with pytest.raises(ModelNotFoundError, match=r"Put it at .*weights/vgg16-397923af.pth or pass its path"):
        loss_function("lpips")


def test_pipeline_runs_and_reports_lpips(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vgg, lin = random_weights()
    files = {}
    for name, state in (("vgg", vgg), ("lin", lin)):
        files[name] = tmp_path / f"{name}.pth"
        torch.save(state, files[name])
    # the weights are random stand-ins recorded as the registry's: everything else runs as with the real ones
    vgg_entry = registry.WEIGHT_FILES["vgg16-imagenet"]
    sha = hashlib.sha256(files["vgg"].read_bytes()).hexdigest()
    monkeypatch.setitem(registry.WEIGHT_FILES, vgg_entry.name, dataclasses.replace(vgg_entry, sha256=sha))
    heads = registry.PACKAGE_FILES["lpips-vgg"]
    heads.path.parent.mkdir(parents=True)
    heads.path.write_bytes(files["lin"].read_bytes())
    data = heads.path.read_bytes()
    monkeypatch.setitem(
        registry.PACKAGE_FILES,
        heads.name,
        dataclasses.replace(heads, size=len(data), sha256=hashlib.sha256(data).hexdigest()),
    )
    G = make_tiny_generator()
    photo = to_uint8(torch.rand([1, 3, *G.img_shape], generator=torch.Generator().manual_seed(3)) * 2 - 1)[0]
    config = InvertConfig(steps_w=3, steps_wplus=3, steps_pti=2, w_avg_samples=64, vgg16=str(files["vgg"]))
    result = invert_photo(G, photo, config, align=False)
    assert result.report["loss"] == "lpips" and result.report["config"]["loss"] == "lpips"
    out = write_outputs(result, tmp_path / "out", "tiny", "0" * 64, None)
    assert '"loss": "lpips"' in (out / "generator" / "config.json").read_text()
    assert lpips_mod.load_lpips.cache_info().currsize == 1  # loaded once for all three stages


def test_lpips_heads_come_from_pypi(home: Path) -> None:
    try:
        path = registry.fetch_package_file("lpips-vgg", progress=False)
    except registry.DownloadError as exc:
        pytest.skip(f"the lpips wheel is unavailable (needs PyPI access once): {exc}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert [tuple(state[f"lin{k}.model.1.weight"].shape)[1] for k in range(5)] == [64, 128, 256, 512, 512]
    assert all(float(v.min()) >= 0 for v in state.values())  # LPIPS's heads are non-negative
