"""Ops of the alias-free generator (StyleGAN3, Karras et al. 2021): low-pass filter design and ``filtered_lrelu``.

``filtered_lrelu`` is the layer nonlinearity of StyleGAN3: add the bias, upsample with the low-pass FIR ``fu``,
apply a leaky ReLU (with gain and clamp) at the higher rate, low-pass with ``fd`` and downsample. Two
implementations compute the same function (a test holds them equal to float32 rounding):

- :func:`filtered_lrelu_ref` — the readable reference, written step by step with :func:`dragkit.nn.ops.upfirdn2d`
  (zero insertion, full-rate convolution, dropping samples), the same maths as NVIDIA's ``_filtered_lrelu_ref``;
- :func:`filtered_lrelu_fast` — the same filters applied polyphase: the upsampling is a strided transposed
  convolution (no multiplications by the inserted zeros) and the downsampling a strided convolution (no output
  that is thrown away), each separable filter as two 1-D passes.

Filters are 1-D (separable, applied along width then height) or 2-D (the radially symmetric downsampling filters
of config R). :func:`design_lowpass_filter` rebuilds them from a layer's sampling parameters (a Kaiser-windowed
sinc, or a Kaiser-windowed jinc when radial) so a freshly built generator has the filters a trained one stores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dragkit.nn.ops import upfirdn2d

__all__ = ["design_lowpass_filter", "filtered_lrelu", "filtered_lrelu_fast", "filtered_lrelu_ref", "kaiser_beta"]

#: The implementations of :func:`filtered_lrelu`.
IMPLS = ("fast", "ref")


def kaiser_beta(numtaps: int, width: float, fs: float) -> float:
    """Kaiser window β for a low-pass of ``numtaps`` taps and transition width ``width`` at sampling rate ``fs``
    (Kaiser's empirical attenuation formula, then his β formula)."""
    atten = 2.285 * (numtaps - 1) * math.pi * (width / (fs / 2)) + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def _kaiser_window(numtaps: int, beta: float) -> torch.Tensor:
    n = torch.arange(numtaps, dtype=torch.float64)
    alpha = (numtaps - 1) / 2
    ratio = ((n - alpha) / alpha) if alpha > 0 else torch.zeros_like(n)
    arg = beta * torch.sqrt((1 - ratio.square()).clamp_min(0))
    return torch.special.i0(arg) / torch.special.i0(torch.tensor(beta, dtype=torch.float64))


def design_lowpass_filter(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
) -> torch.Tensor | None:
    """A unit-DC-gain low-pass FIR: float32 [numtaps] (separable) or [numtaps, numtaps] (radial); None for 1 tap.

    ``cutoff`` and ``width`` (the full transition band) are in the units of the sampling rate ``fs``. The
    separable filter is a Kaiser-windowed sinc normalised to sum 1; the radial one a Kaiser-windowed jinc,
    ``J1(2π·cutoff·r) / (π·r)`` on the grid ``r`` of tap positions, normalised likewise. Computed in float64.
    """
    if numtaps < 1:
        raise ValueError(f"numtaps must be ≥ 1, got {numtaps}")
    if numtaps == 1:
        return None
    beta = kaiser_beta(numtaps, width, fs)
    window = _kaiser_window(numtaps, beta)
    pos = torch.arange(numtaps, dtype=torch.float64) - (numtaps - 1) / 2
    if not radial:
        c = cutoff / (fs / 2)  # normalised to Nyquist
        f = c * torch.sinc(c * pos) * window
        return (f / f.sum()).to(torch.float32)
    x = pos / fs
    r = torch.hypot(x[None, :], x[:, None])
    safe = torch.where(r > 0, r, torch.ones_like(r))
    f = torch.where(r > 0, torch.special.bessel_j1(2 * math.pi * cutoff * safe) / (math.pi * safe), cutoff)
    f = f * torch.outer(window, window)
    return (f / f.sum()).to(torch.float32)


def _check(x: torch.Tensor, b: torch.Tensor | None, up: int, down: int, padding: Sequence[int]) -> None:
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got {list(x.shape)}")
    if b is not None and b.shape != (x.shape[1],):
        raise ValueError(f"b must be [{x.shape[1]}], got {list(b.shape)}")
    if up < 1 or down < 1 or len(padding) != 4:
        raise ValueError(f"need up, down ≥ 1 and padding (x0, x1, y0, y1); got {up}, {down}, {list(padding)}")


def _act(x: torch.Tensor, gain: float, slope: float, clamp: float | None) -> torch.Tensor:
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def filtered_lrelu_ref(
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
) -> torch.Tensor:
    """Bias → upsample (``fu``, gain up²) → leaky ReLU · gain, clamp → low-pass (``fd``) and downsample.

    x: [N, C, H, W]; fu, fd: [k] or [k, k] or None (identity); b: [C]; padding (x0, x1, y0, y1) is applied to the
    upsampled signal before ``fu``. Returns [N, C, H', W'] with
    ``W' = (W·up + x0 + x1 − (len(fu) − 1) − (len(fd) − 1) + down − 1) // down`` (H' likewise).
    """
    _check(x, b, up, down, padding)
    if b is not None:
        x = x + b.reshape(1, -1, 1, 1)
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up * up)
    x = _act(x, gain, slope, clamp)
    return upfirdn2d(x, fd, down=down)


def _taps(f: torch.Tensor | None) -> int:
    return 1 if f is None else int(f.shape[-1])


def _pad_or_crop(x: torch.Tensor, dim: int, lo: int, hi: int) -> torch.Tensor:
    """Pad (positive) or crop (negative) ``x`` along ``dim`` (2 = height, 3 = width)."""
    pads = [0, 0, 0, 0]
    base = 0 if dim == 3 else 2
    pads[base], pads[base + 1] = lo, hi
    return F.pad(x, pads) if any(pads) else x


def _up_1d(x: torch.Tensor, f: torch.Tensor | None, up: int, lo: int, hi: int, dim: int) -> torch.Tensor:
    """Along ``dim``: what zero insertion by ``up``, padding (lo, hi) and convolution with ``f·up`` give, computed
    as a transposed convolution with stride ``up`` (output sample j sits at j + k − 1 − lo of its result)."""
    if f is None:  # one tap: only zero insertion and padding
        if up > 1:
            shape = list(x.shape)
            shape[dim] = shape[dim] * up
            y = x.new_zeros(shape)
            (y[:, :, ::up] if dim == 2 else y[:, :, :, ::up]).copy_(x)
            x = y
        return _pad_or_crop(x, dim, lo, hi)
    k = f.shape[0]
    c = x.shape[1]
    w = (f * up).to(x.dtype)
    weight = w.reshape(1, 1, 1, k) if dim == 3 else w.reshape(1, 1, k, 1)
    stride = (1, up) if dim == 3 else (up, 1)
    y = F.conv_transpose2d(x, weight.expand(c, 1, *weight.shape[2:]), stride=stride, groups=c)
    return _pad_or_crop(y, dim, lo - (k - 1), up + hi - k)


def _down_1d(x: torch.Tensor, f: torch.Tensor | None, down: int, dim: int) -> torch.Tensor:
    """Along ``dim``: convolution with ``f`` then keeping every ``down``-th sample, as one strided convolution."""
    if f is None:
        return x[:, :, ::down] if dim == 2 else x[:, :, :, ::down]
    k = f.shape[0]
    c = x.shape[1]
    w = f.flip(0).to(x.dtype)
    weight = w.reshape(1, 1, 1, k) if dim == 3 else w.reshape(1, 1, k, 1)
    stride = (1, down) if dim == 3 else (down, 1)
    return F.conv2d(x, weight.expand(c, 1, *weight.shape[2:]), stride=stride, groups=c)


def filtered_lrelu_fast(
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
) -> torch.Tensor:
    """:func:`filtered_lrelu_ref`'s function, computed polyphase (same arguments, same shapes)."""
    _check(x, b, up, down, padding)
    if fu is not None and fu.ndim != 1:
        return filtered_lrelu_ref(x, fu, fd, b, up, down, padding, gain, slope, clamp)
    px0, px1, py0, py1 = (int(p) for p in padding)
    if b is not None:
        x = x + b.reshape(1, -1, 1, 1)
    x = _up_1d(x, fu, up, px0, px1, dim=3)
    x = _up_1d(x, fu, up, py0, py1, dim=2)
    x = _act(x, gain, slope, clamp)
    if fd is not None and fd.ndim == 2:  # radial: one 2-D strided convolution
        k = fd.shape[0]
        weight = fd.flip([0, 1]).to(x.dtype).reshape(1, 1, k, k).expand(x.shape[1], 1, k, k)
        return F.conv2d(x, weight, stride=down, groups=x.shape[1])
    x = _down_1d(x, fd, down, dim=3)
    return _down_1d(x, fd, down, dim=2)


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    impl: str = "fast",
) -> torch.Tensor:
    """Dispatch to :func:`filtered_lrelu_fast` (``impl='fast'``) or :func:`filtered_lrelu_ref` (``'ref'``)."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    fn = filtered_lrelu_fast if impl == "fast" else filtered_lrelu_ref
    return fn(x, fu, fd, b, up, down, padding, gain, slope, clamp)
