"""StyleGAN3 generator ("Alias-Free Generative Adversarial Networks", Karras et al. 2021), written for dragkit.

Configs T (3×3 convolutions, separable filters) and R (1×1 convolutions, radially symmetric downsampling filters)
at any resolution. Parameter and buffer names are NVIDIA's (``stylegan3`` repo), so a pickle's ``G_ema`` state
loads with ``strict=True``: ``mapping.fc{i}.*``, ``mapping.embed.*``, ``mapping.w_avg``; ``synthesis.input.{weight,
affine.*, transform, freqs, phases}``; ``synthesis.L{i}_{size}_{channels}.{weight, bias, magnitude_ema, up_filter,
down_filter, affine.*}``. The layer geometry (sampling rates, cutoffs, sizes, paddings) follows the paper's
geometric progression and is computed by :func:`layer_specs`; the loader checks it against what a pickle's
layers recorded.

Feature taps for the drag (``feature_levels``): index 0 is the Fourier-feature input, index ``i + 1`` the output of
layer ``L{i}``. Each layer computes ``margin_size`` extra pixels around the image; the taps return only the part
over the image (``sampling_rate`` pixels per side), so feature pixels line up with image pixels as they do for
StyleGAN2.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dragkit.nn.configs import config_from_dict, config_to_dict
from dragkit.nn.protocol import (
    DragHints,
    FeatureLevel,
    SynthesisResult,
    WsLike,
    check_noise_mode,
    split_ws,
)
from dragkit.nn.stylegan2 import FullyConnectedLayer, MappingNetwork
from dragkit.nn.stylegan3_ops import IMPLS, design_lowpass_filter, filtered_lrelu


@dataclass(frozen=True)
class StyleGAN3Config:
    """Everything needed to build a :class:`StyleGAN3Generator` (NVIDIA's constructor arguments, flattened)."""

    z_dim: int = 512  # input latent size
    c_dim: int = 0  # conditioning label size, 0 = unconditional
    w_dim: int = 512  # intermediate latent size
    img_resolution: int = 1024  # output height = width
    img_channels: int = 3  # output channels
    mapping_layers: int = 2  # fully-connected layers in the mapping network
    mapping_lr_multiplier: float = 0.01  # equalised-lr multiplier of the mapping layers
    channel_base: int = 32768  # channels of layer i: rint(min(channel_base / 2 / cutoff_i, channel_max))
    channel_max: int = 512  # cap on channels per layer
    num_layers: int = 14  # synthesis layers, not counting the input and the final ToRGB
    num_critical: int = 2  # critically sampled layers at the end
    first_cutoff: float = 2.0  # cutoff frequency of the first layer
    first_stopband: float = 2**2.1  # minimum stopband of the first layer
    last_stopband_rel: float = 2**0.3  # minimum stopband of the last layer, relative to its cutoff
    margin_size: int = 10  # extra pixels computed around the image in the inner layers
    output_scale: float = 0.25  # the ToRGB output is multiplied by this
    num_fp16_res: int = 4  # recorded from the checkpoint; dragkit always computes in float32
    conv_kernel: int = 3  # 3 (config T) or 1 (config R)
    filter_size: int = 6  # low-pass taps per unit of the resampling factor
    lrelu_upsampling: int = 2  # the leaky ReLU runs at this multiple of the layer's sampling rate
    use_radial_filters: bool = False  # radially symmetric downsampling filters (config R)
    conv_clamp: float | None = 256.0  # clamp of every layer's output

    def __post_init__(self) -> None:
        for name in ("z_dim", "w_dim", "img_resolution", "img_channels", "mapping_layers", "channel_base"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.img_resolution < 4:
            raise ValueError(f"img_resolution must be ≥ 4, got {self.img_resolution}")
        if self.c_dim < 0 or self.channel_max <= 0 or self.margin_size < 0:
            raise ValueError("c_dim and margin_size must be ≥ 0 and channel_max > 0")
        if not 0 <= self.num_critical < self.num_layers:
            raise ValueError(f"need 0 ≤ num_critical < num_layers, got {self.num_critical}, {self.num_layers}")
        if self.conv_kernel not in (1, 3, 5) or self.filter_size < 1 or self.lrelu_upsampling < 1:
            raise ValueError("conv_kernel must be 1, 3 or 5; filter_size and lrelu_upsampling ≥ 1")
        if not (self.first_cutoff > 0 and self.first_stopband > 0 and self.last_stopband_rel > 0):
            raise ValueError("cutoffs and stopbands must be > 0")

    @property
    def name(self) -> str:
        """'T', 'R', or 'custom' (NVIDIA's two configs differ in kernel size and radial filters)."""
        if self.conv_kernel == 3 and not self.use_radial_filters:
            return "T"
        if self.conv_kernel == 1 and self.use_radial_filters:
            return "R"
        return "custom"

    def describe(self) -> str:
        """One line for people: NVIDIA's config name (T or R) and labels."""
        filters = ", radial filters" if self.use_radial_filters else ""
        label = f", conditional ({self.c_dim} classes)" if self.c_dim else ""
        return f"config {self.name} ({self.conv_kernel}×{self.conv_kernel} convolutions{filters}){label}"

    @property
    def num_ws(self) -> int:
        """One w for the input, one per layer, one for ToRGB."""
        return self.num_layers + 2

    def key_shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """(name, shape) of the weights that pin this config's sizes (the mapping layers, ``w_avg``, the input
        and every layer's weight and filters), yielded one at a time without building anything."""
        if self.c_dim > 0:
            yield "mapping.embed.weight", (self.w_dim, self.c_dim)
        for i in range(self.mapping_layers):
            fan_in = self.z_dim + (self.w_dim if self.c_dim > 0 else 0) if i == 0 else self.w_dim
            yield f"mapping.fc{i}.weight", (self.w_dim, fan_in)
        yield "mapping.w_avg", (self.w_dim,)
        specs = layer_specs(self)
        c0 = specs[0].in_channels
        yield "synthesis.input.weight", (c0, c0)
        yield "synthesis.input.freqs", (c0, 2)
        for s in specs:
            k = s.conv_kernel
            yield f"synthesis.{s.name}.weight", (s.out_channels, s.in_channels, k, k)
            if s.up_taps > 1:
                yield f"synthesis.{s.name}.up_filter", (s.up_taps,)
            if s.down_taps > 1:
                yield f"synthesis.{s.name}.down_filter", (s.down_taps,) * (2 if s.down_radial else 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StyleGAN3Config:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`CheckpointError`."""
        return config_from_dict(cls, d, "StyleGAN3")


@dataclass(frozen=True)
class LayerSpec:
    """The geometry of one synthesis layer ``L{index}`` (sizes and rates per side, in pixels)."""

    index: int
    name: str  # 'L{index}_{out_size}_{out_channels}'
    is_torgb: bool
    is_critically_sampled: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]  # (x0, x1, y0, y1) of the upsampled signal

    @property
    def tmp_sampling_rate(self) -> int:
        """The rate the leaky ReLU runs at."""
        return self.in_sampling_rate * self.up_factor

    @property
    def crop(self) -> int:
        """Pixels of margin on each side of the output (0 for the last two layers)."""
        return max((self.out_size - self.out_sampling_rate) // 2, 0)


def layer_specs(cfg: StyleGAN3Config) -> list[LayerSpec]:
    """Every layer's geometry, L0 … L{num_layers} (the last is ToRGB).

    Cutoffs and minimum stopbands grow geometrically from the first layer to the last non-critical one; a layer's
    sampling rate is the next power of two above twice its stopband (capped at the resolution); its size adds
    ``margin_size`` on each side except for the last two layers; channels fall as ``channel_base / 2 / cutoff``.
    """
    n, res = cfg.num_layers, cfg.img_resolution
    last_cutoff = res / 2
    last_stopband = last_cutoff * cfg.last_stopband_rel
    cutoffs, rates, half_widths, sizes, channels = [], [], [], [], []
    for i in range(n + 1):
        e = min(i / (n - cfg.num_critical), 1.0)
        cutoff = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** e
        stopband = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** e
        rate = 2.0 ** math.ceil(math.log2(min(stopband * 2, res)))
        cutoffs.append(cutoff)
        rates.append(rate)
        half_widths.append(max(stopband, rate / 2) - cutoff)
        sizes.append(int(rate + cfg.margin_size * 2) if i < n - 1 else res)
        channels.append(round(min((cfg.channel_base / 2) / cutoff, cfg.channel_max)) if i < n else 0)
    channels[n] = cfg.img_channels
    specs = []
    for i in range(n + 1):
        p = max(i - 1, 0)
        is_torgb = i == n
        in_rate, out_rate = int(rates[p]), int(rates[i])
        tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else cfg.lrelu_upsampling)
        up, down = round(tmp_rate / in_rate), round(tmp_rate / out_rate)
        if in_rate * up != tmp_rate or out_rate * down != tmp_rate:
            raise ValueError(f"layer {i}: sampling rates {in_rate} → {tmp_rate} → {out_rate} are not integer ratios")
        up_taps = cfg.filter_size * up if up > 1 and not is_torgb else 1
        down_taps = cfg.filter_size * down if down > 1 and not is_torgb else 1
        critical = i >= n - cfg.num_critical
        kernel = 1 if is_torgb else cfg.conv_kernel
        pad_total = (sizes[i] - 1) * down + 1 - (sizes[p] + kernel - 1) * up + up_taps + down_taps - 2
        pad_lo = (pad_total + up) // 2
        pad_hi = pad_total - pad_lo
        specs.append(
            LayerSpec(
                index=i,
                name=f"L{i}_{sizes[i]}_{channels[i]}",
                is_torgb=is_torgb,
                is_critically_sampled=critical,
                in_channels=channels[p],
                out_channels=channels[i],
                in_size=sizes[p],
                out_size=sizes[i],
                in_sampling_rate=in_rate,
                out_sampling_rate=out_rate,
                in_cutoff=cutoffs[p],
                out_cutoff=cutoffs[i],
                in_half_width=half_widths[p],
                out_half_width=half_widths[i],
                conv_kernel=kernel,
                up_factor=up,
                down_factor=down,
                up_taps=up_taps,
                down_taps=down_taps,
                down_radial=cfg.use_radial_filters and not critical,
                padding=(pad_lo, pad_hi, pad_lo, pad_hi),
            )
        )
    return specs


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool,
    padding: int,
    input_gain: torch.Tensor,
) -> torch.Tensor:
    """StyleGAN3's modulated convolution: weight and styles pre-normalised (per sample), modulate, demodulate,
    scale by ``input_gain`` (a scalar tensor), one grouped convolution.

    x: [N, I, H, W]; weight: [O, I, k, k]; styles: [N, I] → [N, O, H + 2·padding − k + 1, …].
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if styles.shape != (n, in_ch):
        raise ValueError(f"styles must be [{n}, {in_ch}], got {list(styles.shape)}")
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean(1, keepdim=True).rsqrt()
    w = weight.unsqueeze(0) * styles.reshape(n, 1, in_ch, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, out_ch, 1, 1, 1)
    w = w * input_gain
    x = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, in_ch, kh, kw), padding=padding, groups=n)
    return x.reshape(n, -1, *x.shape[2:])


class SynthesisInput(nn.Module):
    """Fourier features on a grid of ``size`` pixels, rotated and translated by an affine transform of w."""

    transform: torch.Tensor
    freqs: torch.Tensor
    phases: torch.Tensor

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.channels = channels
        self.size = size
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth
        freqs = torch.randn([channels, 2])  # random frequencies, uniform-ish on a disc of radius bandwidth
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))  # type: ignore[union-attr]
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """w: [N, w_dim] → [N, channels, size, size]."""
        n = w.shape[0]
        t = self.affine(w)  # (cos, sin, tx, ty) up to scale
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).unsqueeze(0).repeat(n, 1, 1)
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = torch.eye(3, device=w.device).unsqueeze(0).repeat(n, 1, 1)
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ self.transform.unsqueeze(0)
        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size / self.sampling_rate
        theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [N, H, W, C]
        x = torch.sin((x + phases.unsqueeze(1).unsqueeze(2)) * (math.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated convolution, then ``filtered_lrelu`` (upsample → bias → leaky ReLU → clamp → downsample)."""

    magnitude_ema: torch.Tensor
    up_filter: torch.Tensor | None
    down_filter: torch.Tensor | None

    def __init__(self, spec: LayerSpec, w_dim: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.spec = spec
        self.conv_clamp = conv_clamp
        self.impl = "fast"
        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1)
        k = spec.conv_kernel
        self.weight = nn.Parameter(torch.randn([spec.out_channels, spec.in_channels, k, k]))
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        rate = spec.tmp_sampling_rate
        self.register_buffer(
            "up_filter", design_lowpass_filter(spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, rate)
        )
        self.register_buffer(
            "down_filter",
            design_lowpass_filter(
                spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, rate, radial=spec.down_radial
            ),
        )

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x: [N, I, in_size, in_size], w: [N, w_dim] → [N, O, out_size, out_size]."""
        s = self.spec
        styles = self.affine(w)
        if s.is_torgb:
            styles = styles * (1 / math.sqrt(s.in_channels * s.conv_kernel**2))
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            demodulate=not s.is_torgb,
            padding=s.conv_kernel - 1,
            input_gain=self.magnitude_ema.rsqrt(),
        )
        return filtered_lrelu(
            x,
            self.up_filter,
            self.down_filter,
            self.bias,
            up=s.up_factor,
            down=s.down_factor,
            padding=s.padding,
            gain=1.0 if s.is_torgb else math.sqrt(2),
            slope=1.0 if s.is_torgb else 0.2,
            clamp=self.conv_clamp,
            impl=self.impl,
        )


class SynthesisNetwork(nn.Module):
    """``input`` then layers ``L0 … L{num_layers}``; ws[0] drives the input, ws[i + 1] layer ``L{i}``."""

    def __init__(self, cfg: StyleGAN3Config) -> None:
        super().__init__()
        self.specs = layer_specs(cfg)
        self.output_scale = cfg.output_scale
        first = self.specs[0]
        self.input = SynthesisInput(
            cfg.w_dim, first.in_channels, first.in_size, first.in_sampling_rate, first.in_cutoff
        )
        self.layer_names = [s.name for s in self.specs]
        for spec in self.specs:
            setattr(self, spec.name, SynthesisLayer(spec, cfg.w_dim, cfg.conv_clamp))
        self.num_ws = len(self.specs) + 1

    def layers(self) -> list[SynthesisLayer]:
        """L0 … L{num_layers} in forward order."""
        return [getattr(self, name) for name in self.layer_names]

    def run(self, x: torch.Tensor | None, ws: list[torch.Tensor], start: int, stop: int) -> torch.Tensor:
        """Feature level ``start − 1``'s map x (None when start is 0) → level ``stop``'s map (uncropped); level 0
        is the input, level i + 1 the output of ``L{i}``; the last level is the image before ``output_scale``."""
        layers = self.layers()
        for level in range(start, stop + 1):
            x = self.input(ws[0]) if level == 0 else layers[level - 1](x, ws[level])
        assert x is not None
        return x

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws: [N, num_ws, w_dim] → img [N, C_img, H, W]."""
        check_noise_mode(noise_mode)
        return self.run(None, list(ws.unbind(1)), 0, len(self.specs)) * self.output_scale


@dataclass
class StyleGAN3ResumeState:
    """Where :meth:`StyleGAN3Generator.synthesize` stopped: feature level ``level`` with its uncropped map ``x``."""

    level: int
    x: torch.Tensor


class StyleGAN3Generator(nn.Module):
    """``mapping`` (z → W+, NVIDIA's StyleGAN2 mapping network with 2 layers) and ``synthesis``, plus dragkit's
    protocol. ``set_impl('ref')`` switches every layer to the reference ``filtered_lrelu`` (for tests and
    benchmarks); the default is the fast one."""

    family = "stylegan3"

    def __init__(self, config: StyleGAN3Config | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = StyleGAN3Config(**kwargs)
        elif kwargs:
            raise TypeError("pass either a StyleGAN3Config or keyword arguments, not both")
        self.config = config
        self.z_dim = config.z_dim
        self.c_dim = config.c_dim
        self.w_dim = config.w_dim
        self.img_resolution = config.img_resolution
        self.img_channels = config.img_channels
        self.synthesis = SynthesisNetwork(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            config.z_dim,
            config.c_dim,
            config.w_dim,
            self.num_ws,
            num_layers=config.mapping_layers,
            lr_multiplier=config.mapping_lr_multiplier,
        )

    def set_impl(self, impl: str) -> None:
        """Use ``'fast'`` (default) or ``'ref'`` ``filtered_lrelu`` in every layer."""
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        for layer in self.synthesis.layers():
            layer.impl = impl

    # -- protocol ---------------------------------------------------------------------------------------------
    @property
    def w_avg(self) -> torch.Tensor:
        """[w_dim] truncation centre."""
        return self.mapping.w_avg

    @property
    def img_shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return (self.img_resolution, self.img_resolution)

    def feature_levels(self) -> list[FeatureLevel]:
        """Level 0: the input; level i + 1: layer ``L{i}`` (not ToRGB). Resolutions are of the cropped maps."""
        specs = self.synthesis.specs
        first = specs[0]
        levels = [FeatureLevel(0, first.in_channels, first.in_sampling_rate, "input")]
        for s in specs[:-1]:
            levels.append(FeatureLevel(s.index + 1, s.out_channels, s.out_size - 2 * s.crop, s.name))
        return levels

    def drag_hints(self) -> DragHints:
        """Features of the last layer sampled at min(128, H/2) pixels — the scale of DragGAN's StyleGAN2 choice
        (block ``b128``) — and the first 6 ws."""
        target = min(128, self.img_resolution // 2)
        levels = self.feature_levels()
        best = max((lv for lv in levels if lv.resolution <= target), key=lambda lv: lv.index, default=levels[0])
        return DragHints(feature_block=best.index, optimize_ws=tuple(range(min(6, self.num_ws))), lr=2e-3)

    def _crop(self, level: int, x: torch.Tensor) -> torch.Tensor:
        """Level ``level``'s map without its margin (the part over the image)."""
        if level == 0:
            first = self.synthesis.specs[0]
            c = max((first.in_size - first.in_sampling_rate) // 2, 0)
        else:
            c = self.synthesis.specs[level - 1].crop
        return x[:, :, c : x.shape[2] - c, c : x.shape[3] - c] if c else x

    def synthesize(
        self,
        ws: WsLike,
        feature_block: int,
        stop_after_features: bool = False,
        noise_mode: str = "const",
    ) -> SynthesisResult:
        """Run the synthesis network, tapping feature level ``feature_block`` (see :meth:`feature_levels`).

        ws: [N, num_ws, w_dim] or num_ws tensors [N, w_dim]. Returns image [N, C, H, W] in about [-1, 1] (None if
        ``stop_after_features``), features [N, C_k, r_k, r_k] (the margin cropped) and a resume state.
        StyleGAN3 has no noise inputs; ``noise_mode`` is accepted for the protocol and checked.
        """
        layers = split_ws(ws, self.num_ws, self.w_dim)
        check_noise_mode(noise_mode)
        n_levels = len(self.synthesis.specs)
        if not 0 <= feature_block < n_levels:
            raise ValueError(f"feature_block must be in [0, {n_levels - 1}], got {feature_block}")
        x = self.synthesis.run(None, layers, 0, feature_block)
        state = StyleGAN3ResumeState(level=feature_block, x=x)
        features = self._crop(feature_block, x)
        if stop_after_features:
            return SynthesisResult(image=None, features=features, state=state)
        image = self.synthesis.run(x, layers, feature_block + 1, n_levels) * self.synthesis.output_scale
        return SynthesisResult(image=image, features=features, state=state)

    def resume(self, state: Any, ws: WsLike, noise_mode: str = "const") -> torch.Tensor:
        """Finish the image from ``state`` (from :meth:`synthesize` with the same ``ws``), without gradients.

        Returns [N, C, H, W] float32, equal to the full forward pass.
        """
        if not isinstance(state, StyleGAN3ResumeState):
            raise TypeError(f"expected a StyleGAN3ResumeState, got {type(state).__name__}")
        layers = [w.detach() for w in split_ws(ws, self.num_ws, self.w_dim)]
        check_noise_mode(noise_mode)
        with torch.no_grad():
            n_levels = len(self.synthesis.specs)
            return self.synthesis.run(state.x.detach(), layers, state.level + 1, n_levels) * self.synthesis.output_scale

    # -- plain nn.Module use ----------------------------------------------------------------------------------
    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """z: [N, z_dim] → image [N, C, H, W] in about [-1, 1]."""
        ws = self.mapping(z, c, psi=psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)
