"""StyleGAN2 / StyleGAN2-ADA generator (Karras et al. 2020), written for dragkit.

Parameter and buffer names are NVIDIA's (``stylegan2-ada-pytorch`` / ``stylegan3`` repos), so their state_dicts load
with ``strict=True``: ``mapping.fc{i}.weight``, ``mapping.w_avg``, ``synthesis.b4.const``,
``synthesis.b{res}.conv0|conv1|torgb.*``, ``synthesis.b{res}.skip.weight`` (resnet). Computation is float32 with
the pure-PyTorch ops of :mod:`dragkit.nn.ops`.

Besides ``forward`` the generator implements dragkit's protocol (:mod:`dragkit.nn.protocol`): ``synthesize`` can
stop after any block and return that block's features, and ``resume`` finishes the image from there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dragkit.nn.configs import config_from_dict, config_to_dict
from dragkit.nn.ops import (
    ACT_GAINS,
    bias_act,
    conv2d_resample,
    modulated_conv2d,
    normalize_2nd_moment,
    setup_filter,
    upsample2d,
)
from dragkit.nn.protocol import (
    DragHints,
    FeatureLevel,
    SynthesisResult,
    WsLike,
    check_noise_mode,
    split_ws,
)

ARCHITECTURES = ("skip", "resnet", "orig")


@dataclass(frozen=True)
class StyleGAN2Config:
    """Everything needed to build a :class:`StyleGAN2Generator` (the constructor signature *is* the config)."""

    z_dim: int = 512  # input latent size (0 = unconditional-only models without z are not supported)
    c_dim: int = 0  # conditioning label size, 0 = unconditional
    w_dim: int = 512  # intermediate latent size
    img_resolution: int = 1024  # output height (= width unless ``square`` is False), a power of two ≥ 4
    img_channels: int = 3  # output channels
    mapping_layers: int = 8  # fully-connected layers in the mapping network
    mapping_lr_multiplier: float = 0.01  # equalised-lr multiplier of the mapping layers
    mapping_embed_features: int | None = None  # label embedding size (None = w_dim)
    mapping_layer_features: int | None = None  # hidden size of the mapping MLP (None = w_dim)
    mapping_activation: str = "lrelu"  # activation of the mapping layers
    channel_base: int = 32768  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512  # cap on channels per layer
    num_fp16_res: int = 0  # recorded from the checkpoint; dragkit always computes in float32
    conv_clamp: float | None = None  # clamp of conv outputs (256 in NVIDIA's released models), also in fp32
    architecture: str = "skip"  # 'skip' (default), 'resnet' or 'orig'
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)  # low-pass FIR used for upsampling
    use_noise: bool = True  # per-pixel noise inputs exist
    square: bool = True  # False = StyleGAN-Human's full-body layout: images (and every map) are half as wide as high

    def __post_init__(self) -> None:
        log2 = math.log2(self.img_resolution) if self.img_resolution > 0 else -1
        if self.img_resolution < 4 or log2 != int(log2):
            raise ValueError(f"img_resolution must be a power of two ≥ 4, got {self.img_resolution}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "channel_base", "channel_max"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.c_dim < 0:
            raise ValueError(f"c_dim must be ≥ 0, got {self.c_dim}")
        if self.mapping_activation not in ACT_GAINS:
            raise ValueError(f"mapping_activation must be one of {sorted(ACT_GAINS)}")

    @property
    def block_resolutions(self) -> list[int]:
        """[4, 8, …, img_resolution]."""
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    def describe(self) -> str:
        """One line for people: architecture, and what sets this model apart (labels, non-square layout)."""
        parts = [f"{self.architecture} architecture"]
        if self.c_dim:
            parts.append(f"conditional ({self.c_dim} classes)")
        if not self.square:
            parts.append(f"non-square {self.img_resolution}×{self.width(self.img_resolution)} (StyleGAN-Human layout)")
        return ", ".join(parts)

    def width(self, res: int) -> int:
        """Width of the maps at height ``res``: ``res``, or ``res // 2`` for non-square models."""
        return res if self.square else res // 2

    def channels(self, res: int) -> int:
        """Feature channels of the block at resolution ``res``."""
        return min(self.channel_base // res, self.channel_max)

    def key_shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """(name, shape) of the weights that pin this config's sizes — every mapping layer, ``w_avg``, the label
        embedding, the constant input, each block's ``conv1`` and filter, the last ``torgb`` — computed without
        building anything and one at a time, so that a checkpoint whose config declares sizes its stored tensors do
        not have is refused at the first difference, before any memory is spent on it."""
        embed = (self.mapping_embed_features or self.w_dim) if self.c_dim > 0 else 0
        hidden = self.mapping_layer_features or self.w_dim
        if self.c_dim > 0:
            yield "mapping.embed.weight", (embed, self.c_dim)
        for i in range(self.mapping_layers):
            fan_in = self.z_dim + embed if i == 0 else hidden
            yield f"mapping.fc{i}.weight", (self.w_dim if i == self.mapping_layers - 1 else hidden, fan_in)
        yield "mapping.w_avg", (self.w_dim,)
        yield "synthesis.b4.const", (self.channels(4), 4, self.width(4))
        taps = len(self.resample_filter)
        for res in self.block_resolutions:
            c = self.channels(res)
            yield f"synthesis.b{res}.conv1.weight", (c, c, 3, 3)
            yield f"synthesis.b{res}.conv1.affine.weight", (c, self.w_dim)
            yield f"synthesis.b{res}.resample_filter", (taps, taps)
        last = self.img_resolution
        yield f"synthesis.b{last}.torgb.weight", (self.img_channels, self.channels(last), 1, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StyleGAN2Config:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`CheckpointError`."""
        return config_from_dict(cls, d, "StyleGAN2")


# ---------------------------------------------------------------------------------------------------------------
# Layers


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer (NVIDIA ``FullyConnectedLayer``)."""

    def __init__(
        self,
        in_features: int,  # input size
        out_features: int,  # output size
        bias: bool = True,  # has a bias
        activation: str = "linear",  # 'linear' | 'lrelu' | 'relu'
        lr_multiplier: float = 1.0,  # equalised-lr multiplier
        bias_init: float = 0.0,  # initial bias value
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, in] → [N, out]."""
        w = self.weight * self.weight_gain
        b: torch.Tensor | None = self.bias
        if b is not None and self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class MappingNetwork(nn.Module):
    """z (+ c) → W+ via an MLP, then optional truncation towards ``w_avg`` (NVIDIA ``MappingNetwork``)."""

    w_avg: torch.Tensor

    def __init__(
        self,
        z_dim: int,  # input latent size
        c_dim: int,  # label size, 0 = unconditional
        w_dim: int,  # output latent size
        num_ws: int,  # how many copies of w the output holds
        num_layers: int,  # fully-connected layers
        lr_multiplier: float = 0.01,  # equalised-lr multiplier of the layers
        embed_features: int | None = None,  # label embedding size (None = w_dim)
        layer_features: int | None = None,  # hidden size (None = w_dim)
        activation: str = "lrelu",  # activation of every layer
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        embed = (embed_features or w_dim) if c_dim > 0 else 0
        hidden = layer_features or w_dim
        feats = [z_dim + embed] + [hidden] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed)
        for i in range(num_layers):
            layer = FullyConnectedLayer(feats[i], feats[i + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """z: [N, z_dim], c: [N, c_dim] → ws: [N, num_ws, w_dim]; truncation ``w_avg.lerp(w, psi)``."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {list(z.shape)}")
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.shape != (z.shape[0], self.c_dim):
                got = None if c is None else list(c.shape)
                raise ValueError(f"this model is conditional: c must be [{z.shape[0]}, {self.c_dim}], got {got}")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if psi != 1:
            w_avg = self.w_avg
            if truncation_cutoff is None:
                ws = w_avg.lerp(ws, psi)
            else:
                ws = ws.clone()
                ws[:, :truncation_cutoff] = w_avg.lerp(ws[:, :truncation_cutoff], psi)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated 3×3 convolution + noise + bias + lrelu (NVIDIA ``SynthesisLayer``)."""

    resample_filter: torch.Tensor
    noise_const: torch.Tensor

    def __init__(
        self,
        in_channels: int,  # input feature channels
        out_channels: int,  # output feature channels
        w_dim: int,  # latent size feeding the style affine
        resolution: int,  # output resolution (height)
        up: int = 1,  # 2 = upsample by 2 first
        use_noise: bool = True,  # has noise inputs
        conv_clamp: float | None = None,  # output clamp
        resample_filter: tuple[int, ...] = (1, 3, 3, 1),  # FIR for upsampling
        kernel_size: int = 3,  # convolution kernel size
        width: int | None = None,  # output width (None = resolution)
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.width = resolution if width is None else width
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = ACT_GAINS["lrelu"]
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, self.width]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", gain: float = 1.0) -> torch.Tensor:
        """x: [N, I, r/up, r/up], w: [N, w_dim] → [N, O, r, r]."""
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.width], device=x.device)
            noise = noise * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=(self.up == 1),
        )
        act_gain = self.act_gain * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act="lrelu", gain=act_gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1×1 convolution to RGB, no demodulation (NVIDIA ``ToRGBLayer``)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x: [N, I, r, r], w: [N, w_dim] → [N, C_img, r, r]."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class Conv2dLayer(nn.Module):
    """Plain equalised-lr convolution, used as the 1×1 upsampling skip of the resnet architecture."""

    resample_filter: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        up: int = 1,
        resample_filter: tuple[int, ...] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.up = up
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, padding=self.padding, flip_weight=(self.up == 1))
        return bias_act(x, self.bias, act="linear", gain=gain)


class SynthesisBlock(nn.Module):
    """One resolution level: [const | conv0 (up 2×)] → conv1 → [torgb], with the image skip path."""

    resample_filter: torch.Tensor

    def __init__(self, cfg: StyleGAN2Config, in_channels: int, out_channels: int, resolution: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.architecture = cfg.architecture
        self.is_last = resolution == cfg.img_resolution
        self.register_buffer("resample_filter", setup_filter(cfg.resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, cfg.width(resolution)]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                cfg.w_dim,
                resolution,
                up=2,
                use_noise=cfg.use_noise,
                conv_clamp=cfg.conv_clamp,
                resample_filter=cfg.resample_filter,
                width=cfg.width(resolution),
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            cfg.w_dim,
            resolution,
            use_noise=cfg.use_noise,
            conv_clamp=cfg.conv_clamp,
            resample_filter=cfg.resample_filter,
            width=cfg.width(resolution),
        )
        self.num_conv += 1
        if self.is_last or cfg.architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, cfg.img_channels, cfg.w_dim, conv_clamp=cfg.conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and cfg.architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, up=2, resample_filter=cfg.resample_filter)

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: Sequence[torch.Tensor],
        noise_mode: str = "const",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ws: [N, num_conv + num_torgb, w_dim]; x: [N, C_in, r/2, r/2] (None for the first block).

        Returns (x [N, C_out, r, r], img [N, C_img, r, r] or None).
        """
        w_iter = iter(ws)
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat(ws[0].shape[0], 1, 1, 1)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode)
        elif self.architecture == "resnet":
            assert x is not None
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, gain=math.sqrt(0.5))
            x = y + x
        else:
            assert x is not None
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, next(w_iter))
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """Blocks ``b4 … b{img_resolution}``; block ``k`` reads ws[2k−1 … 2k+1] (k > 0), b4 reads ws[0], ws[1]."""

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.block_resolutions = cfg.block_resolutions
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = cfg.channels(res // 2) if res > 4 else 0
            block = SynthesisBlock(cfg, in_ch, cfg.channels(res), res)
            self.num_ws += block.num_conv
            if block.is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        """The blocks in forward order."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def block_ws(self, ws: Sequence[torch.Tensor]) -> list[Sequence[torch.Tensor]]:
        """Split the per-layer ws (num_ws tensors [N, w_dim]) into each block's overlapping slice.

        A block gets its conv ws plus its torgb w (the first conv w of the next block).
        """
        out: list[Sequence[torch.Tensor]] = []
        idx = 0
        for block in self.blocks():
            out.append(ws[idx : idx + block.num_conv + block.num_torgb])
            idx += block.num_conv
        return out

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws: [N, num_ws, w_dim] → img [N, C_img, H, W]."""
        x = img = None
        for block, bws in zip(self.blocks(), self.block_ws(ws.unbind(1)), strict=True):
            x, img = block(x, img, bws, noise_mode=noise_mode)
        assert img is not None
        return img


@dataclass
class StyleGAN2ResumeState:
    """Where :meth:`StyleGAN2Generator.synthesize` stopped: after block ``block`` with outputs ``x``, ``img``."""

    block: int
    x: torch.Tensor
    img: torch.Tensor | None


class StyleGAN2Generator(nn.Module):
    """The full generator: ``mapping`` (z → W+) and ``synthesis`` (W+ → image), plus dragkit's protocol."""

    family = "stylegan2"

    def __init__(self, config: StyleGAN2Config | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = StyleGAN2Config(**kwargs)
        elif kwargs:
            raise TypeError("pass either a StyleGAN2Config or keyword arguments, not both")
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
            embed_features=config.mapping_embed_features,
            layer_features=config.mapping_layer_features,
            activation=config.mapping_activation,
        )

    # -- protocol ---------------------------------------------------------------------------------------------
    @property
    def w_avg(self) -> torch.Tensor:
        """[w_dim] truncation centre."""
        return self.mapping.w_avg

    @property
    def img_shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return (self.img_resolution, self.config.width(self.img_resolution))

    def feature_levels(self) -> list[FeatureLevel]:
        """One level per synthesis block: index k is block ``b{4·2^k}``, its ``x`` output (not the RGB skip)."""
        return [
            FeatureLevel(index=k, channels=self.config.channels(res), resolution=res, name=f"b{res}")
            for k, res in enumerate(self.synthesis.block_resolutions)
        ]

    def drag_hints(self) -> DragHints:
        """DragGAN's choices: features of ``b128`` (block index 5; ``b{H/2}`` for smaller models), first 6 ws."""
        res = min(128, self.img_resolution // 2) if self.img_resolution > 4 else 4
        block = self.synthesis.block_resolutions.index(res)
        return DragHints(feature_block=block, optimize_ws=tuple(range(min(6, self.num_ws))), lr=2e-3)

    def _layer_ws(self, ws: WsLike) -> list[torch.Tensor]:
        return split_ws(ws, self.num_ws, self.w_dim)

    def synthesize(
        self,
        ws: WsLike,
        feature_block: int,
        stop_after_features: bool = False,
        noise_mode: str = "const",
    ) -> SynthesisResult:
        """Run the synthesis network, tapping block ``feature_block``'s features.

        ws: [N, num_ws, w_dim], or num_ws tensors [N, w_dim] — the per-layer form lets rows that need no gradient
        skip the weight-gradient work of the layers they modulate (the drag engine's fast path).
        Returns image [N, C, H, W] in about [-1, 1] (None if ``stop_after_features``), features
        [N, C_k, r_k, r_k] and a resume state. With ``noise_mode='random'`` the result of ``resume`` is
        not reproducible (fresh noise); DragGAN uses 'const'.
        """
        layers = self._layer_ws(ws)
        check_noise_mode(noise_mode)
        blocks = self.synthesis.blocks()
        if not 0 <= feature_block < len(blocks):
            raise ValueError(f"feature_block must be in [0, {len(blocks) - 1}], got {feature_block}")
        block_ws = self.synthesis.block_ws(layers)
        x: torch.Tensor | None = None
        img: torch.Tensor | None = None
        for k in range(feature_block + 1):
            x, img = blocks[k](x, img, block_ws[k], noise_mode=noise_mode)
        assert x is not None
        features = x
        state = StyleGAN2ResumeState(block=feature_block, x=x, img=img)
        if stop_after_features:
            return SynthesisResult(image=None, features=features, state=state)
        image = self._run_from(state, block_ws, noise_mode)
        return SynthesisResult(image=image, features=features, state=state)

    def _run_from(
        self, state: StyleGAN2ResumeState, block_ws: list[Sequence[torch.Tensor]], noise_mode: str
    ) -> torch.Tensor:
        blocks = self.synthesis.blocks()
        x: torch.Tensor | None = state.x
        img = state.img
        for k in range(state.block + 1, len(blocks)):
            x, img = blocks[k](x, img, block_ws[k], noise_mode=noise_mode)
        assert img is not None
        return img

    def resume(self, state: Any, ws: WsLike, noise_mode: str = "const") -> torch.Tensor:
        """Finish the image from ``state`` (from :meth:`synthesize` with the same ``ws``), without gradients.

        Returns [N, C, H, W] float32, equal to the full forward pass.
        """
        if not isinstance(state, StyleGAN2ResumeState):
            raise TypeError(f"expected a StyleGAN2ResumeState, got {type(state).__name__}")
        layers = [w.detach() for w in self._layer_ws(ws)]
        check_noise_mode(noise_mode)
        with torch.no_grad():
            detached = StyleGAN2ResumeState(
                block=state.block, x=state.x.detach(), img=None if state.img is None else state.img.detach()
            )
            return self._run_from(detached, self.synthesis.block_ws(layers), noise_mode)

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
        check_noise_mode(noise_mode)
        return self.synthesis(ws, noise_mode=noise_mode)
