"""MobileStyleGAN generator (Belousov 2021, arXiv 2104.04767) — dragkit's offline default model.

The network is the one shipped as OpenVINO IR in the PyPI wheel ``random-face==2021.7.21.1`` (FFHQ 1024×1024,
distilled from NVIDIA's StyleGAN2); :mod:`dragkit.io.openvino_ir` maps the IR constants onto this module. The
export folded two things into constants, and this module keeps them folded:

- demodulation: MobileStyleGAN demodulates with a fixed ``style_inv`` buffer at inference, so it is a constant
  per-output-channel factor, already multiplied into the (pointwise) convolution weights;
- noise: ``noise_strength · noise`` is one constant map per layer (``noise_const``, [r, r]).

Architecture (channels of the default model in brackets)::

    const [512, 4, 4] → b4.conv (modulated 3×3)                                       → level 0: b4   512×4²
    for res in 8 … 512:                                                               → level k: b{res}
        up:    x·affine(w) → inverse Haar transform (4·C channels at r/2 → C at r)
        conv0: modulated depthwise 3×3 + pointwise 1×1, + noise + bias, lrelu(0.2)
        conv1: the same
    to_img: modulated 1×1 → 12 Haar coefficient maps at 512² → inverse Haar transform → RGB 1024²

Levels: b4 512×4², b8 … b64 512×{8…64}², b128 256×128², b256 128×256², b512 64×512² (then the final inverse
wavelet step). ``b128`` plays the role of DragGAN's ``b128`` choice for StyleGAN2.

W+ (``num_ws = 23``): the exported graph has one style input feeding 23 style affines; dragkit gives each affine its
own w, ordered by the level it modulates::

    ws[0]                      b4.conv
    ws[3k−2], ws[3k−1], ws[3k]  b{4·2^k}.up, .conv0, .conv1     (k = 1 … 7: b8 … b512)
    ws[22]                     to_img

A W-space latent repeated 23 times reproduces the original model exactly. Images are float32 NCHW RGB in about
[-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dragkit.errors import InvalidInputError
from dragkit.nn.configs import config_from_dict, config_to_dict
from dragkit.nn.mobilestylegan_ops import IMPLS, haar_idwt
from dragkit.nn.protocol import (
    DragHints,
    FeatureLevel,
    SynthesisResult,
    WsLike,
    check_noise_mode,
    split_ws,
)

LRELU_SLOPE = 0.2


@dataclass(frozen=True)
class MobileStyleGANConfig:
    """Everything needed to build a :class:`MobileStyleGANGenerator` (defaults: the released FFHQ-1024 model)."""

    z_dim: int = 512  # input latent size
    w_dim: int = 512  # intermediate latent size (the IR's ``style``)
    mapping_layers: int = 8  # fully-connected layers of the mapping network
    channels: tuple[int, ...] = (512, 512, 512, 512, 512, 256, 128, 64)  # feature channels of b4, b8, …
    img_channels: int = 3  # output channels (RGB)

    def __post_init__(self) -> None:
        for name in ("z_dim", "w_dim", "mapping_layers", "img_channels"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if len(self.channels) < 2:
            raise ValueError(f"channels needs at least 2 levels, got {self.channels}")
        for c in self.channels:
            if c <= 0 or c % 4 != 0:
                raise ValueError(f"every level's channels must be a positive multiple of 4, got {self.channels}")

    @property
    def block_resolutions(self) -> list[int]:
        """[4, 8, …] — the resolution of each level (one per entry of ``channels``)."""
        return [4 * 2**k for k in range(len(self.channels))]

    @property
    def img_resolution(self) -> int:
        """Output height = width: twice the last level (the final inverse wavelet step)."""
        return 2 * self.block_resolutions[-1]

    @property
    def num_ws(self) -> int:
        """One w per style affine: b4.conv, 3 per later level, to_img."""
        return 2 + 3 * (len(self.channels) - 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MobileStyleGANConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`CheckpointError`."""
        return config_from_dict(cls, d, "MobileStyleGAN")


# ---------------------------------------------------------------------------------------------------------------
# Layers


def _noise(layer: nn.Module, x: torch.Tensor, noise_mode: str) -> torch.Tensor | None:
    """The noise map to add ([1 or N, 1, r, r]) or None.

    'const' uses the stored ``noise_strength · noise``; 'random' draws fresh N(0, 1) noise scaled by the RMS of the
    stored map (its noise was N(0, 1), so the RMS estimates ``|noise_strength|``); 'none' adds nothing.
    """
    noise_const: torch.Tensor = layer.noise_const  # type: ignore[assignment]
    if noise_mode == "const":
        return noise_const.view(1, 1, *noise_const.shape)
    if noise_mode == "random":
        strength = noise_const.square().mean().sqrt()
        return torch.randn([x.shape[0], 1, *noise_const.shape], device=x.device, dtype=x.dtype) * strength
    return None


def _add_noise_bias_lrelu(
    x: torch.Tensor, noise: torch.Tensor | None, bias: torch.Tensor | None, inplace: bool
) -> torch.Tensor:
    """x + noise + bias[C], then leaky ReLU(0.2) (the IR's Add, Add, PReLU). ``inplace`` only without autograd."""
    if inplace:
        if noise is not None:
            x.add_(noise)
        if bias is not None:
            x.add_(bias.view(1, -1, 1, 1))
        return F.leaky_relu_(x, LRELU_SLOPE)
    if noise is not None:
        x = x + noise
    if bias is not None:
        x = x + bias.view(1, -1, 1, 1)
    return F.leaky_relu(x, LRELU_SLOPE)


class ModulatedConv(nn.Module):
    """Modulated dense 3×3 convolution + noise + bias + lrelu (the first layer, ``b4.conv``)."""

    noise_const: torch.Tensor

    def __init__(
        self,
        in_channels: int,  # input feature channels
        out_channels: int,  # output feature channels
        w_dim: int,  # latent size feeding the style affine
        resolution: int,  # spatial size (noise map is [resolution, resolution])
    ) -> None:
        super().__init__()
        self.affine = nn.Linear(w_dim, in_channels)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))  # demodulation folded in
        self.register_buffer("noise_const", torch.zeros([resolution, resolution]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.style_gain = 1.0 / math.sqrt(in_channels * 9)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", impl: str = "fast") -> torch.Tensor:
        """x: [N or 1, I, r, r], w: [N, w_dim] → [N, O, r, r]."""
        s = self.affine(w) * self.style_gain  # [N, I]
        x = x * s[:, :, None, None]
        if impl == "fast":
            x = F.conv2d(x, self.weight, self.bias, padding=1)
            return _add_noise_bias_lrelu(x, _noise(self, x, noise_mode), None, inplace=not torch.is_grad_enabled())
        x = F.conv2d(x, self.weight, padding=1)
        return _add_noise_bias_lrelu(x, _noise(self, x, noise_mode), self.bias, inplace=False)


class ModulatedSeparableConv(nn.Module):
    """Modulated depthwise 3×3 + pointwise 1×1 convolution, + noise + bias + lrelu (``conv0`` / ``conv1``).

    MobileStyleGAN's ``ModulatedDWConv2d``: ``pw(dw(x · s))`` with ``s = affine(w) / √(9·I)``; the fast path folds
    ``s`` into the depthwise kernel (``dw(x·s) = s·dw(x)`` per channel) and the bias into the pointwise convolution.
    """

    noise_const: torch.Tensor

    def __init__(
        self,
        in_channels: int,  # input feature channels
        out_channels: int,  # output feature channels
        w_dim: int,  # latent size feeding the style affine
        resolution: int,  # spatial size (noise map is [resolution, resolution])
    ) -> None:
        super().__init__()
        self.affine = nn.Linear(w_dim, in_channels)
        self.weight_dw = nn.Parameter(torch.randn([in_channels, 1, 3, 3]))
        self.weight_pw = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))  # demodulation folded in
        self.register_buffer("noise_const", torch.zeros([resolution, resolution]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.style_gain = 1.0 / math.sqrt(in_channels * 9)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", impl: str = "fast") -> torch.Tensor:
        """x: [N, I, r, r], w: [N, w_dim] → [N, O, r, r]."""
        s = self.affine(w) * self.style_gain  # [N, I]
        C = x.shape[1]
        if impl == "fast":
            if x.shape[0] == 1:
                x = F.conv2d(x, self.weight_dw * s.view(C, 1, 1, 1), padding=1, groups=C)
            else:
                x = F.conv2d(x * s[:, :, None, None], self.weight_dw, padding=1, groups=C)
            x = F.conv2d(x, self.weight_pw, self.bias)
            return _add_noise_bias_lrelu(x, _noise(self, x, noise_mode), None, inplace=not torch.is_grad_enabled())
        x = x * s[:, :, None, None]
        x = F.conv2d(x, self.weight_dw, padding=1, groups=C)
        x = F.conv2d(x, self.weight_pw)
        return _add_noise_bias_lrelu(x, _noise(self, x, noise_mode), self.bias, inplace=False)


class IDWTUpsample(nn.Module):
    """Modulate (no gain), then one inverse Haar step: [N, 4·C, r, r] → [N, C, 2r, 2r] (``IDWTUpsaplme``)."""

    def __init__(self, in_channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = nn.Linear(w_dim, in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, impl: str = "fast") -> torch.Tensor:
        """x: [N, 4C, r, r], w: [N, w_dim] → [N, C, 2r, 2r]."""
        s = self.affine(w)
        if impl == "fast":  # the transform's 1/2 rides on the modulation
            return haar_idwt(x * (0.5 * s)[:, :, None, None], impl=impl, halved=True)
        return haar_idwt(x * s[:, :, None, None], impl=impl)


class ToImage(nn.Module):
    """Modulated 1×1 convolution (no demodulation) to ``4·img_channels`` Haar coefficient maps + bias."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = nn.Linear(w_dim, in_channels)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.style_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, impl: str = "fast", gain: float = 1.0) -> torch.Tensor:
        """x: [N, I, r, r], w: [N, w_dim] → ``gain`` · [N, 4·img_channels, r, r]."""
        s = self.affine(w) * (self.style_gain * gain)
        bias = self.bias * gain if gain != 1 else self.bias
        if impl == "fast" and x.shape[0] == 1:
            return F.conv2d(x, self.weight * s.view(1, -1, 1, 1), bias)
        return F.conv2d(x * s[:, :, None, None], self.weight, bias)


class MappingNetwork(nn.Module):
    """z → w: normalise the 2nd moment, then ``mapping_layers`` × (linear, lrelu(0.2)·√2); truncation to W+."""

    w_avg: torch.Tensor

    def __init__(self, cfg: MobileStyleGANConfig, num_ws: int) -> None:
        super().__init__()
        self.z_dim = cfg.z_dim
        self.w_dim = cfg.w_dim
        self.num_ws = num_ws
        self.num_layers = cfg.mapping_layers
        for i in range(cfg.mapping_layers):
            setattr(self, f"fc{i}", nn.Linear(cfg.z_dim if i == 0 else cfg.w_dim, cfg.w_dim))
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def map_w(self, z: torch.Tensor) -> torch.Tensor:
        """z: [N, z_dim] → w: [N, w_dim] (no truncation)."""
        x = z.to(torch.float32)
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = F.leaky_relu(getattr(self, f"fc{i}")(x), LRELU_SLOPE) * math.sqrt(2.0)
        return x

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """z: [N, z_dim] → ws: [N, num_ws, w_dim]; truncation ``w_avg.lerp(w, psi)`` on the first ``cutoff`` ws.

        The model is unconditional: ``c`` must be None or empty ([N, 0]).
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InvalidInputError(f"z must be [N, {self.z_dim}], got {list(z.shape)}")
        if c is not None and c.numel() != 0:
            raise InvalidInputError(f"this model is unconditional (c_dim = 0), got c of shape {list(c.shape)}")
        ws = self.map_w(z).unsqueeze(1).repeat(1, self.num_ws, 1)
        if psi != 1:
            if truncation_cutoff is None:
                ws = self.w_avg.lerp(ws, psi)
            else:
                ws = ws.clone()
                ws[:, :truncation_cutoff] = self.w_avg.lerp(ws[:, :truncation_cutoff], psi)
        return ws


class Block4(nn.Module):
    """The first level: learned constant input and one modulated 3×3 convolution."""

    def __init__(self, cfg: MobileStyleGANConfig) -> None:
        super().__init__()
        c = cfg.channels[0]
        self.const = nn.Parameter(torch.randn([1, c, 4, 4]))
        self.conv = ModulatedConv(c, c, cfg.w_dim, 4)


class UpBlock(nn.Module):
    """A later level: inverse-Haar upsampling (4·C → C channels, 2× size), then two separable convolutions."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int) -> None:
        super().__init__()
        self.up = IDWTUpsample(in_channels, w_dim)
        self.conv0 = ModulatedSeparableConv(in_channels // 4, out_channels, w_dim, resolution)
        self.conv1 = ModulatedSeparableConv(out_channels, out_channels, w_dim, resolution)

    def forward(
        self, x: torch.Tensor, ws: Sequence[torch.Tensor], noise_mode: str = "const", impl: str = "fast"
    ) -> torch.Tensor:
        """x: [N, I, r/2, r/2], ws: 3 tensors [N, w_dim] (up, conv0, conv1) → [N, O, r, r]."""
        x = self.up(x, ws[0], impl=impl)
        x = self.conv0(x, ws[1], noise_mode=noise_mode, impl=impl)
        return self.conv1(x, ws[2], noise_mode=noise_mode, impl=impl)


class SynthesisNetwork(nn.Module):
    """``b4``, ``b8 … b{img_resolution/2}`` and ``to_img`` (see the module docstring for the ws each one reads)."""

    def __init__(self, cfg: MobileStyleGANConfig) -> None:
        super().__init__()
        self.block_resolutions = cfg.block_resolutions
        self.b4 = Block4(cfg)
        for k in range(1, len(cfg.channels)):
            res = cfg.block_resolutions[k]
            setattr(self, f"b{res}", UpBlock(cfg.channels[k - 1], cfg.channels[k], cfg.w_dim, res))
        self.to_img = ToImage(cfg.channels[-1], 4 * cfg.img_channels, cfg.w_dim)

    def up_blocks(self) -> list[UpBlock]:
        """b8 … in forward order."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions[1:]]

    def run_level(
        self, level: int, x: torch.Tensor | None, ws: Sequence[torch.Tensor], noise_mode: str, impl: str
    ) -> torch.Tensor:
        """Compute level ``level`` from the previous level's output ``x`` (None for level 0)."""
        if level == 0:
            y = self.b4.conv(self.b4.const, ws[0], noise_mode=noise_mode, impl=impl)
            if impl == "fast":
                y = y.contiguous(memory_format=torch.channels_last)
            return y
        assert x is not None
        return self.up_blocks()[level - 1](x, ws[3 * level - 2 : 3 * level + 1], noise_mode=noise_mode, impl=impl)

    def finish(self, x: torch.Tensor, ws: Sequence[torch.Tensor], impl: str) -> torch.Tensor:
        """Last level's output → image [N, img_channels, H, W] (to_img + the final inverse wavelet step)."""
        if impl == "fast":  # the transform's 1/2 rides on to_img's modulation and bias
            img = haar_idwt(self.to_img(x, ws[-1], impl=impl, gain=0.5), impl=impl, halved=True)
        else:
            img = haar_idwt(self.to_img(x, ws[-1], impl=impl), impl=impl)
        return img.contiguous()


@dataclass
class MobileStyleGANResumeState:
    """Where :meth:`MobileStyleGANGenerator.synthesize` stopped: after level ``level`` with output ``x``."""

    level: int
    x: torch.Tensor


class MobileStyleGANGenerator(nn.Module):
    """MobileStyleGAN: ``mapping`` (z → W+) and ``synthesis`` (W+ → image), plus dragkit's generator protocol.

    ``impl``: 'fast' (channels-last activations, modulation folded into kernels, arithmetic inverse Haar) or
    'reference' (the exported graph's literal op sequence). Both compute the same function.
    """

    family = "mobilestylegan"

    def __init__(self, config: MobileStyleGANConfig | None = None, impl: str = "fast", **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = MobileStyleGANConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a MobileStyleGANConfig or keyword arguments, not both")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.config = config
        self.impl = impl
        self.z_dim = config.z_dim
        self.c_dim = 0
        self.w_dim = config.w_dim
        self.num_ws = config.num_ws
        self.img_resolution = config.img_resolution
        self.img_channels = config.img_channels
        self.synthesis = SynthesisNetwork(config)
        self.mapping = MappingNetwork(config, self.num_ws)

    # -- protocol ---------------------------------------------------------------------------------------------
    @property
    def w_avg(self) -> torch.Tensor:
        """[w_dim] truncation centre (the IR has none: see :func:`compute_w_avg`)."""
        return self.mapping.w_avg

    @property
    def img_shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return (self.img_resolution, self.img_resolution)

    def feature_levels(self) -> list[FeatureLevel]:
        """One level per resolution: index k is ``b{4·2^k}``'s output (after its last convolution)."""
        return [
            FeatureLevel(index=k, channels=c, resolution=res, name=f"b{res}")
            for k, (c, res) in enumerate(zip(self.config.channels, self.config.block_resolutions, strict=True))
        ]

    def ws_levels(self) -> list[int]:
        """For each of the ``num_ws`` style inputs, the feature level it modulates (to_img: the last level)."""
        levels = [0]
        for k in range(1, len(self.config.channels)):
            levels += [k, k, k]
        return [*levels, len(self.config.channels) - 1]

    def drag_hints(self) -> DragHints:
        """Features of ``b128`` (level 5; ``b{H/4}`` for smaller models), the ws of levels b4…b32, lr 2e-3.

        b4…b32 are the levels whose style inputs move dlib's face landmarks most per unit of appearance change
        (``benchmarks/style_inputs.py``; b64 half as much, finer levels texture only); chosen with
        ``dragkit eval landmarks`` (docs/default_model.md).
        """
        resolutions = self.config.block_resolutions
        level = resolutions.index(min(128, resolutions[-2]))
        coarse = [i for i, lv in enumerate(self.ws_levels()) if lv <= min(3, level)]
        return DragHints(feature_block=level, optimize_ws=tuple(coarse), lr=2e-3)

    def _layer_ws(self, ws: WsLike) -> list[torch.Tensor]:
        return split_ws(ws, self.num_ws, self.w_dim)

    def synthesize(
        self,
        ws: WsLike,
        feature_block: int,
        stop_after_features: bool = False,
        noise_mode: str = "const",
    ) -> SynthesisResult:
        """Run the synthesis network, tapping level ``feature_block``'s features.

        ws: [N, 23, w_dim] or 23 tensors [N, w_dim] (see ``WsLike``). Returns image [N, 3, 1024, 1024] in about
        [-1, 1] (None if ``stop_after_features``), features [N, C_k, r_k, r_k] (contiguous) and a resume state.
        """
        layers = self._layer_ws(ws)
        check_noise_mode(noise_mode)
        n_levels = len(self.config.channels)
        if not 0 <= feature_block < n_levels:
            raise InvalidInputError(f"feature_block must be in [0, {n_levels - 1}], got {feature_block}")
        x: torch.Tensor | None = None
        for level in range(feature_block + 1):
            x = self.synthesis.run_level(level, x, layers, noise_mode, self.impl)
        assert x is not None
        state = MobileStyleGANResumeState(level=feature_block, x=x)
        features = x.contiguous()
        if stop_after_features:
            return SynthesisResult(image=None, features=features, state=state)
        image = self._run_from(state, layers, noise_mode)
        return SynthesisResult(image=image, features=features, state=state)

    def _run_from(self, state: MobileStyleGANResumeState, ws: Sequence[torch.Tensor], noise_mode: str) -> torch.Tensor:
        x = state.x
        for level in range(state.level + 1, len(self.config.channels)):
            x = self.synthesis.run_level(level, x, ws, noise_mode, self.impl)
        return self.synthesis.finish(x, ws, self.impl)

    def resume(self, state: Any, ws: WsLike, noise_mode: str = "const") -> torch.Tensor:
        """Finish the image from ``state`` (from :meth:`synthesize` with the same ``ws``), without gradients.

        Returns [N, 3, H, W] float32, equal to the full forward pass.
        """
        if not isinstance(state, MobileStyleGANResumeState):
            raise TypeError(f"expected a MobileStyleGANResumeState, got {type(state).__name__}")
        layers = [w.detach() for w in self._layer_ws(ws)]
        check_noise_mode(noise_mode)
        with torch.no_grad():
            detached = MobileStyleGANResumeState(level=state.level, x=state.x.detach())
            return self._run_from(detached, layers, noise_mode)

    # -- plain nn.Module use ----------------------------------------------------------------------------------
    def synthesis_forward(self, ws: WsLike, noise_mode: str = "const") -> torch.Tensor:
        """ws: [N, 23, w_dim] or 23 tensors [N, w_dim] → image [N, 3, H, W] in about [-1, 1]."""
        last = len(self.config.channels) - 1
        result = self.synthesize(ws, feature_block=last, noise_mode=noise_mode)
        assert result.image is not None
        return result.image

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """z: [N, z_dim] → image [N, 3, H, W] in about [-1, 1]."""
        ws = self.mapping(z, c, psi=psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis_forward(ws, noise_mode=noise_mode)


def compute_w_avg(
    G: MobileStyleGANGenerator,
    num_samples: int = 65536,
    seed: int = 0,
    batch_size: int = 8192,
) -> torch.Tensor:
    """The truncation centre as the mean of ``mapping(z)`` over ``num_samples`` latents.

    The released IR has no ``w_avg`` constant (``random-face`` averages 4096 unseeded samples at start-up); dragkit
    computes it once, deterministically, when converting: ``z = np.random.RandomState(seed).randn(num_samples,
    z_dim)`` (float64 → float32), mapped in batches, averaged in float64. Returns [w_dim] float32.
    """
    rng = np.random.RandomState(seed)
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    done = 0
    device = G.mapping.w_avg.device
    with torch.no_grad():
        while done < num_samples:
            n = min(batch_size, num_samples - done)
            z = torch.from_numpy(rng.randn(n, G.z_dim)).to(device=device, dtype=torch.float32)
            total += G.mapping.map_w(z).to(torch.float64).sum(dim=0).cpu()
            done += n
    return (total / num_samples).to(torch.float32)
