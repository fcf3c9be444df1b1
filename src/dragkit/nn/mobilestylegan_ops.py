"""Wavelet ops of MobileStyleGAN: the inverse Haar transform (``db1``, one level), fast and reference.

MobileStyleGAN (Belousov 2021, arXiv 2104.04767) predicts Haar wavelet coefficients instead of pixels and upsamples
by inverse wavelet transforms (``pytorch_wavelets.DWTInverse(wave='db1', mode='zero')``). Its exported graph does
each 2-D inverse transform as six grouped 1×2 / 2×1 transposed convolutions — slow on CPU. For the Haar wavelet the
whole step is a 4-point butterfly per pixel followed by a 2×2 pixel shuffle, which is what :func:`haar_idwt` does.

Channel layout (the one MobileStyleGAN uses): for ``C`` output channels the input has ``4·C`` channels,
``[LL_0 … LL_{C-1}, H_{0,0}, H_{0,1}, H_{0,2}, H_{1,0}, …]`` — first the C low-pass maps, then the three high-pass
bands of channel 0, of channel 1, … (``pytorch_wavelets``' ``yh[0]`` of shape [N, C, 3, h, w] flattened, bands in
its order LH, HL, HH).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IMPLS = ("fast", "reference")


def haar_idwt(x: torch.Tensor, impl: str = "fast", halved: bool = False) -> torch.Tensor:
    """One level of the 2-D inverse Haar transform.

    x: [N, 4·C, h, w] float (layout in the module docstring) → [N, C, 2h, 2w]. With ``a, b ∈ {0, 1}`` the row and
    column parity, ``y[2i+a, 2j+b] = (LL + (-1)^a·LH + (-1)^b·HL + (-1)^(a+b)·HH) / 2``.

    ``impl='fast'`` computes that butterfly directly and interleaves the four results in place of a pixel shuffle
    (channels-last friendly: the output is channels-last when the input is); ``impl='reference'`` is the exported
    graph's literal sequence of grouped transposed convolutions with the ``1/√2`` filters, kept for parity tests.
    ``halved=True`` says the caller already multiplied ``x`` by 1/2 (so the factor can ride on a modulation or a
    weight the caller scales anyway).
    """
    if x.ndim != 4 or x.shape[1] % 4 != 0:
        raise ValueError(f"x must be [N, 4*C, h, w], got {list(x.shape)}")
    if impl == "fast":
        return _haar_idwt_fast(x if halved else x * 0.5)
    if impl == "reference":
        return _haar_idwt_reference(x * 2.0 if halved else x)
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")


def _haar_idwt_fast(x: torch.Tensor) -> torch.Tensor:
    """The butterfly on ``x / 2`` (the caller halved it)."""
    N, C4, h, w = x.shape
    C = C4 // 4
    xh = x.permute(0, 2, 3, 1)  # [N, h, w, 4C]; a free view when x is channels-last
    ll = xh[..., :C]
    lh, hl, hh = xh[..., C:].unflatten(-1, (C, 3)).unbind(-1)
    p, m = ll + lh, ll - lh  # columns' low/high part for even / odd rows
    q, r = hl + hh, hl - hh
    if torch.is_grad_enabled() and x.requires_grad:
        top = torch.stack((p + q, p - q), dim=3)  # rows 2i: columns 2j, 2j+1 → [N, h, w, 2, C]
        bottom = torch.stack((m + r, m - r), dim=3)  # rows 2i+1
        y = torch.stack((top, bottom), dim=2)  # [N, h, 2, w, 2, C]
    else:  # write the four phases straight into the interleaved output (no autograd through out=)
        y = x.new_empty((N, h, 2, w, 2, C))
        torch.add(p, q, out=y[:, :, 0, :, 0])
        torch.sub(p, q, out=y[:, :, 0, :, 1])
        torch.add(m, r, out=y[:, :, 1, :, 0])
        torch.sub(m, r, out=y[:, :, 1, :, 1])
    out = y.view(N, 2 * h, 2 * w, C).permute(0, 3, 1, 2)  # [N, C, 2h, 2w], channels-last memory
    if not x.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous()
    return out


def _haar_idwt_reference(x: torch.Tensor) -> torch.Tensor:
    # pytorch_wavelets.DWTInverse(wave='db1', mode='zero') as exported: sfb1d along rows, then along columns.
    N, C4, h, w = x.shape
    C = C4 // 4
    s = 1.0 / math.sqrt(2.0)
    g0 = x.new_tensor([s, s])  # db1 rec_lo
    g1 = x.new_tensor([s, -s])  # db1 rec_hi
    g0_col, g1_col = g0.view(1, 1, 2, 1).repeat(C, 1, 1, 1), g1.view(1, 1, 2, 1).repeat(C, 1, 1, 1)
    g0_row, g1_row = g0.view(1, 1, 1, 2).repeat(C, 1, 1, 1), g1.view(1, 1, 1, 2).repeat(C, 1, 1, 1)
    ll = x[:, :C]
    lh, hl, hh = x[:, C:].reshape(N, C, 3, h, w).unbind(2)

    def up_h(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(a, g, stride=(2, 1), groups=C)

    def up_w(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(a, g, stride=(1, 2), groups=C)

    lo = up_h(ll, g0_col) + up_h(lh, g1_col)
    hi = up_h(hl, g0_col) + up_h(hh, g1_col)
    return up_w(lo, g0_row) + up_w(hi, g1_row)
