"""LPIPS-VGG (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018),
version 0.1: the perceptual distance NVIDIA's projector and PTI use, for users who have its weights.

Two files, both checked by sha256 (:mod:`dragkit.io.registry`):

- the ImageNet VGG16 backbone, torchvision's ``vgg16-397923af.pth`` (528 MB), which no package on PyPI ships: put it
  in ``<cache>/weights/`` or pass its path (``WEIGHT_FILES["vgg16-imagenet"]``; downloaded from its URL where there
  is internet);
- the five linear heads, ``lpips/weights/v0.1/vgg.pth`` from the ``lpips`` wheel on PyPI, fetched once with
  ``pip download`` (nothing installed or run; ``PACKAGE_FILES["lpips-vgg"]``).

Both are read with ``torch.load(weights_only=True)``. The distance: images in [-1, 1] are shifted and scaled by
LPIPS's constants, VGG16's ReLU outputs after blocks 1–5 (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) are unit-
normalised along channels, their squared difference is weighted per channel by the heads (non-negative 1×1
convolutions), averaged over pixels and summed over the five levels → [N].
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dragkit.errors import InvalidInputError, ModelNotFoundError

__all__ = ["LPIPS", "load_lpips"]

#: VGG16's convolution widths per block (torchvision's ``features`` layout: conv+ReLU pairs, a max-pool per block).
_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """LPIPS-VGG v0.1; ``forward(a, b)``: images [N, 3, H, W] in [-1, 1] (H, W ≥ 16) → distances [N] (≥ 0).

    Parameters are frozen; gradients flow to the images. Build with :func:`load_lpips`, or from state dicts in
    torchvision's (``features.{i}.weight``) and lpips's (``lin{k}.model.1.weight``) layouts."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, vgg_state: dict[str, torch.Tensor], lin_state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self.taps: list[int] = []  # indices (in ``features``) of the ReLU outputs that are compared
        c_in = 3
        for b, widths in enumerate(_BLOCKS):
            if b:
                layers.append(nn.MaxPool2d(2, 2))
            for c in widths:
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
                c_in = c
            self.taps.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)
        self.lins = nn.ParameterList([nn.Parameter(torch.zeros(1, widths[-1], 1, 1)) for widths in _BLOCKS])
        self.register_buffer("shift", torch.tensor(_SHIFT).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).reshape(1, 3, 1, 1))
        features = {k.removeprefix("features."): v for k, v in vgg_state.items() if k.startswith("features.")}
        try:
            self.features.load_state_dict(features, strict=True)
        except RuntimeError as exc:
            raise InvalidInputError(f"not torchvision's VGG16 weights: {str(exc).splitlines()[0]}") from None
        for k, lin in enumerate(self.lins):
            w = lin_state.get(f"lin{k}.model.1.weight")
            if w is None or w.shape != lin.shape:
                raise InvalidInputError(f"not LPIPS-VGG heads: lin{k}.model.1.weight missing or not {list(lin.shape)}")
            lin.data.copy_(w)
        self.requires_grad_(False)
        self.eval()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n = a.shape[0]
        x = (torch.cat([a, b]) - self.shift) / self.scale
        total = a.new_zeros([n])
        level = 0
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.taps[level]:
                f = x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                d = (f[:n] - f[n:]).square()
                total = total + F.conv2d(d, self.lins[level]).mean(dim=(1, 2, 3))
                level += 1
                if level == len(self.taps):
                    break
        return total


def _read(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInputError(f"{path}: not a state dict of tensors")
    return state


@lru_cache(maxsize=2)
def load_lpips(vgg16: str | None = None) -> LPIPS:
    """LPIPS-VGG with verified weights: ``vgg16`` (a path to torchvision's ``vgg16-397923af.pth``) or the cached
    copy (downloaded where there is internet); the heads are fetched from PyPI's ``lpips`` wheel once.

    Raises :class:`ModelNotFoundError` saying where to put the backbone when it cannot be had."""
    from dragkit.io.registry import WEIGHT_FILES, DownloadError, fetch_package_file, fetch_weight_file, sha256_file

    entry = WEIGHT_FILES["vgg16-imagenet"]
    try:
        if vgg16 is not None:
            path = Path(vgg16).expanduser()
            if not path.is_file():
                raise ModelNotFoundError(f"{path}: no such file (torchvision's {entry.filename} is expected)")
            digest = sha256_file(path)  # a user's file: checked, never deleted
            if digest != entry.sha256:
                raise ModelNotFoundError(f"{path}: sha256 {digest}, not that of torchvision's {entry.filename}")
        else:
            path = fetch_weight_file(entry.name, progress=True)
        heads = fetch_package_file("lpips-vgg", progress=False)
    except DownloadError as exc:  # ChecksumError included
        raise ModelNotFoundError(
            f"LPIPS needs torchvision's ImageNet VGG16 ({entry.filename}, {entry.url}): {exc}. Put it at "
            f"{entry.path} or pass its path, or use the offline loss"
        ) from None
    return LPIPS(_read(path), _read(heads))
