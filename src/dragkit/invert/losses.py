"""Image distances for inversion, as pure functions of float images [N, 3, H, W] in [-1, 1].

No learned weights are needed (none reach an offline machine): the reconstruction loss is a Laplacian-pyramid L1
(Bojanowski et al. 2018: the L1 distance of each band-pass level, coarser levels weighted up by 2 per level) plus
1 − MS-SSIM (Wang et al. 2003, the five-scale weights of the paper), both on the images downsampled to at most
256 pixels per side as NVIDIA's projector does for its perceptual loss (pivotal tuning uses 512: finer texture,
measured +1.1 dB on average). :func:`psnr` and :func:`ssim` are the
report's measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from dragkit.errors import InvalidInputError

__all__ = [
    "LOSSES",
    "LossFn",
    "laplacian_l1",
    "loss_function",
    "ms_ssim",
    "psnr",
    "reconstruction_loss",
    "resolve_loss",
    "ssim",
]

#: Names the CLI and the report use: the offline loss, and LPIPS-VGG (:mod:`dragkit.invert.lpips`, the user's
#: weights). "auto" (:func:`resolve_loss`) is LPIPS where its backbone is in the cache, else the offline loss.
LOSSES = ("lap1+msssim", "lpips")

#: loss(img, target): images [N, 3, H, W] in [-1, 1] → [] (differentiable)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_C1, _C2 = 0.01**2, 0.03**2  # for images in [0, 1]


def _gauss(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    r = max(math.ceil(3 * sigma), 1)
    x = torch.arange(-r, r + 1, device=device, dtype=dtype)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur per channel, reflect-padded; x: [N, C, H, W]."""
    g = _gauss(sigma, x.device, x.dtype)
    k = g.numel()
    c = x.shape[1]
    pad = k // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect") if min(x.shape[-2:]) > pad else F.pad(x, (pad,) * 4)
    x = F.conv2d(x, g.reshape(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.reshape(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def downsample_to(x: torch.Tensor, side: int = 256) -> torch.Tensor:
    """Area-downsample [N, C, H, W] so that its longer side is at most ``side`` (unchanged when already smaller)."""
    h, w = x.shape[-2:]
    if max(h, w) <= side:
        return x
    factor = math.ceil(max(h, w) / side)
    return F.avg_pool2d(x, factor, ceil_mode=True)


def laplacian_l1(a: torch.Tensor, b: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Mean over levels of the L1 distance between the Laplacian-pyramid bands of ``a`` and ``b`` (plus the
    residual low-pass), each band weighted by 2^level so coarse structure counts as much as fine detail. → []."""
    total = a.new_zeros([])
    x, y = a, b
    for level in range(levels):
        if min(x.shape[-2:]) < 4:
            break
        xb, yb = _blur(x, 1.0), _blur(y, 1.0)
        total = total + (2.0**level) * ((x - xb) - (y - yb)).abs().mean()
        x, y = F.avg_pool2d(xb, 2), F.avg_pool2d(yb, 2)
    return (total + (2.0**levels) * (x - y).abs().mean()) / (levels + 1)


def _ssim_parts(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term of images in [0, 1]; each → [N]."""
    mx, my = _blur(x, 1.5), _blur(y, 1.5)
    sxx = _blur(x * x, 1.5) - mx * mx
    syy = _blur(y * y, 1.5) - my * my
    sxy = _blur(x * y, 1.5) - mx * my
    cs = (2 * sxy + _C2) / (sxx + syy + _C2)
    lum = (2 * mx * my + _C1) / (mx * mx + my * my + _C1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Structural similarity (Gaussian window σ = 1.5) of images in [-1, 1]; → [N] in [−1, 1] (1 = equal)."""
    return _ssim_parts((a + 1) / 2, (b + 1) / 2)[0]


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Multi-scale SSIM over up to five scales (halving each time while the image is at least 16 px); → [N]."""
    x, y = (a + 1) / 2, (b + 1) / 2
    weights = []
    values = []
    for i, w in enumerate(_MS_WEIGHTS):
        s, cs = _ssim_parts(x, y)
        last = i == len(_MS_WEIGHTS) - 1 or min(x.shape[-2:]) < 32
        values.append(s if last else cs)
        weights.append(w)
        if last:
            break
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    wt = torch.tensor(weights, dtype=a.dtype, device=a.device)
    wt = wt / wt.sum()
    stacked = torch.stack([v.clamp_min(1e-6) for v in values], dim=1)  # [N, scales]
    return torch.exp((stacked.log() * wt).sum(dim=1))


def reconstruction_loss(img: torch.Tensor, target: torch.Tensor, side: int = 256) -> torch.Tensor:
    """The offline inversion loss ("lap1+msssim"): Laplacian-pyramid L1 + (1 − MS-SSIM), on images downsampled to
    at most ``side`` px per side. img, target: [N, 3, H, W] in [-1, 1] → []."""
    x, y = downsample_to(img, side), downsample_to(target, side)
    return laplacian_l1(x, y) + (1 - ms_ssim(x, y)).mean()


def resolve_loss(name: str, vgg16: str | None = None) -> str:
    """The loss that will run for ``name`` (one of :data:`LOSSES` or "auto"): "auto" is "lpips" where VGG16's
    weights are given or in the cache, else "lap1+msssim". Unknown names raise :class:`InvalidInputError`."""
    if name == "auto":
        from dragkit.io.registry import WEIGHT_FILES

        return "lpips" if vgg16 is not None or WEIGHT_FILES["vgg16-imagenet"].path.is_file() else LOSSES[0]
    if name not in LOSSES:
        raise InvalidInputError(f"unknown loss {name!r} (choose from auto, {', '.join(LOSSES)})")
    return name


def loss_function(name: str, vgg16: str | None = None, side: int = 256) -> LossFn:
    """The distance named ``name`` (see :func:`resolve_loss`) on images downsampled to at most ``side`` px (256:
    what the projector does). LPIPS loads its weights here (once) and raises :class:`ModelNotFoundError` without
    them."""
    if resolve_loss(name, vgg16) == "lap1+msssim":
        return lambda img, target: reconstruction_loss(img, target, side)
    from dragkit.invert.lpips import load_lpips

    lpips = load_lpips(vgg16)

    def lpips_loss(img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lpips.to(img.device)(downsample_to(img, side), downsample_to(target, side)).mean()

    return lpips_loss


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (peak-to-peak 2), over the whole batch."""
    mse = float(((a.clamp(-1, 1) - b.clamp(-1, 1)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)
