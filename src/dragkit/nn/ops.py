"""Pure-PyTorch reference ops of the StyleGAN2 family.

Written to match the numerics of NVIDIA's ``upfirdn2d``, ``bias_act`` and ``conv2d_resample`` reference paths, so
that a state_dict trained with NVIDIA's code produces the same images here. Everything is differentiable and runs
on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
# Default gains of the activations (NVIDIA ``bias_act.activation_funcs[...].def_gain``).
ACT_GAINS: dict[str, float] = {"linear": 1.0, "lrelu": math.sqrt(2.0), "relu": math.sqrt(2.0)}


def setup_filter(f: Sequence[float], normalize: bool = True) -> torch.Tensor:
    """A 1-D FIR kernel → the non-separable 2-D kernel NVIDIA's networks store as ``resample_filter``.

    [1, 3, 3, 1] becomes its 4×4 outer product divided by its sum (64). Returns float32 [k, k].
    """
    t = torch.as_tensor(list(f), dtype=torch.float32)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"filter must be a non-empty 1-D sequence, got shape {tuple(t.shape)}")
    t = torch.outer(t, t)
    if normalize:
        t = t / t.sum()
    return t


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add bias along dim 1, apply the activation, multiply by ``gain`` (default: the activation's own), clamp.

    x: [N, C, ...]; b: [C]. The clamp is symmetric, ``[-clamp, clamp]``, applied after the gain as NVIDIA does.
    """
    if act not in ACT_GAINS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACT_GAINS)}")
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif act == "relu":
        x = F.relu(x)
    g = ACT_GAINS[act] if gain is None else gain
    if g != 1:
        x = x * g
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with the 2-D FIR ``f``, downsample by dropping pixels.

    x: [N, C, H, W]; f: [k, k], or [k] for a separable filter applied along width then height (or None =
    identity); padding: (x0, x1, y0, y1), negative values crop.
    Follows NVIDIA's ``_upfirdn2d_ref`` (filter flipped, so this is a true convolution).
    """
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    n, c, h, w = x.shape
    px0, px1, py0, py1 = (int(p) for p in padding)
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype).flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    else:  # separable: along width, then along height
        x = F.conv2d(x, f.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        x = F.conv2d(x, f.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """2× (or ``up``×) upsampling with the FIR ``f`` [k, k], keeping the signal centred (NVIDIA ``upsample2d``)."""
    k = f.shape[-1]
    p0 = (k + up - 1) // 2
    p1 = (k - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    groups: int = 1,
    flip_weight: bool = True,
) -> torch.Tensor:
    """2-D convolution with optional FIR upsampling, as NVIDIA's ``conv2d_resample`` (down=1 paths only).

    x: [N, C_in, H, W]; w: [C_out, C_in // groups, kh, kw]; f: [k, k] resampling filter (needed when up > 1).
    ``flip_weight=True`` means correlation (what ``F.conv2d`` does), False a true convolution.
    """
    out_ch, in_per_group, kh, kw = w.shape
    if up == 1:
        if not flip_weight and (kh > 1 or kw > 1):
            w = w.flip([2, 3])
        return F.conv2d(x, w, padding=padding, groups=groups)
    if f is None:
        raise ValueError("upsampling needs a resampling filter")
    fk = f.shape[-1]
    px0 = padding + (fk + up - 1) // 2 - (kw - 1)
    px1 = padding + (fk - up) // 2 - (kw - up)
    py0 = padding + (fk + up - 1) // 2 - (kh - 1)
    py1 = padding + (fk - up) // 2 - (kh - up)
    if kh == 1 and kw == 1:
        # 1×1 kernel: convolve first, then upsample (NVIDIA's fast path; padding restated for that order).
        y = F.conv2d(x, w, groups=groups)
        q0 = padding + (fk + up - 1) // 2
        q1 = padding + (fk - up) // 2
        return upfirdn2d(y, f, up=up, padding=(q0, q1, q0, q1), gain=up * up)
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    pxt = max(min(-px0, -px1), 0)
    pyt = max(min(-py0, -py1), 0)
    if flip_weight and (kh > 1 or kw > 1):  # transposed conv: flip when the caller asked for correlation
        wt = wt.flip([2, 3])
    y = F.conv_transpose2d(x, wt, stride=up, padding=[pyt, pxt], groups=groups)
    return upfirdn2d(y, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up * up)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
) -> torch.Tensor:
    """StyleGAN2 weight (de)modulation (Karras et al. 2020, eq. 1–3) as one grouped convolution per batch.

    x: [N, I, H, W]; weight: [O, I, k, k]; styles: [N, I]; noise: broadcastable to [N, O, H', W'].
    Returns [N, O, H·up, W·up].
    """
    n = x.shape[0]
    _, in_ch, kh, kw = weight.shape
    if styles.shape != (n, in_ch):
        raise ValueError(f"styles must be [{n}, {in_ch}], got {list(styles.shape)}")
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = conv2d_resample(x, w, f=resample_filter, up=up, padding=padding, groups=n, flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x², dim) + eps): the pixel norm applied to z (and embedded c) before the mapping MLP."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
