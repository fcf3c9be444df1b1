"""rosinality/stylegan2-pytorch checkpoints (``torch.save({'g_ema', 'latent_avg', ...})``) → NVIDIA names.

Read with ``torch.load(weights_only=True)`` (``argparse.Namespace`` is additionally allowed: ``train.py`` stores its
``args`` in the file). The key map below was worked out from rosinality's ``model.py`` and ``convert_weight.py``
(reading, not copying) and is proved numerically by ``tests/test_io_rosinality.py`` against an independent
re-implementation of rosinality's forward pass:

==========================================  ===============================================  ======================
rosinality                                  NVIDIA / dragkit                                 change
==========================================  ===============================================  ======================
``style.{i+1}.weight|bias``                 ``mapping.fc{i}.weight|bias``                    none (see below)
``latent_avg``                              ``mapping.w_avg``                                reshape [w_dim]
``input.input`` [1, C, 4, 4]                ``synthesis.b4.const`` [C, 4, 4]                 drop leading 1
``conv1.*``                                 ``synthesis.b4.conv1.*``
``to_rgb1.*``                               ``synthesis.b4.torgb.*``
``convs.{2k}.*`` / ``convs.{2k+1}.*``       ``synthesis.b{2^(k+3)}.conv0.*`` / ``.conv1.*``
``to_rgbs.{k}.*``                           ``synthesis.b{2^(k+3)}.torgb.*``
``….conv.weight`` [1, O, I, k, k]           ``….weight`` [O, I, k, k]                        drop leading 1
``….conv.modulation.weight|bias``           ``….affine.weight|bias``                         none
``….noise.weight`` [1]                      ``….noise_strength`` []                          reshape
``….activate.bias`` [C]                     ``….bias`` [C]                                   none
``to_rgb….bias`` [1, 3, 1, 1]               ``….torgb.bias`` [3]                             reshape
``noises.noise_{j}`` [1, 1, r, r]           ``noise_const`` [r, r] of conv j (b4.conv1, then  reshape
                                            conv0/conv1 of each block in order)
``convs.{2k}.conv.blur.kernel``             ``synthesis.b{res}.conv0.resample_filter``       ÷ 4 (up² gain)
``to_rgbs.{k}.upsample.kernel``             ``synthesis.b{res}.resample_filter``             ÷ 4 (up² gain)
==========================================  ===============================================  ======================

Why values carry over unchanged: rosinality's ``EqualLinear`` computes ``x @ (W·lr_mul/√in)ᵀ + b·lr_mul`` and
NVIDIA's ``FullyConnectedLayer`` ``x @ (W·weight_gain)ᵀ + b·bias_gain`` with ``weight_gain = lr_mul/√in``,
``bias_gain = lr_mul`` — the same stored W and b (mapping: lr_mul 0.01, rosinality's default ``lr_mlp``, which
checkpoints do not record; modulation affines: 1). ``ModulatedConv2d`` multiplies the weight by ``1/√(I·k²)``
before demodulating; NVIDIA omits that gain in ``SynthesisLayer`` because demodulation cancels it (up to where
the 1e-8 epsilon sits: relative differences ~1e-8), and applies ``1/√I`` to the styles in ``ToRGBLayer``, equal
to rosinality's weight scale for the non-demodulated 1×1 ToRGB conv. Upsampling convs need no flip: both store
the TF weight flipped and run a transposed convolution followed by the [1,3,3,1] blur (×4 gain, pads (1, 1)).
"""

from __future__ import annotations

import argparse
import logging
import math
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from dragkit.errors import CheckpointError, UnsafeCheckpointError
from dragkit.io.base import ParsedCheckpoint, filter_from_buffer, fit_channels
from dragkit.nn.ops import setup_filter

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_LR_MLP", "W_AVG_SAMPLES", "read_rosinality", "rosinality_to_nvidia", "torch_load_weights"]

DEFAULT_LR_MLP = 0.01  # rosinality Generator(lr_mlp=0.01); not stored in checkpoints
W_AVG_SAMPLES = 4096  # like rosinality's mean_latent(4096), used only when a file has no latent_avg
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def torch_load_weights(path: Path) -> Any:
    """``torch.load(path, weights_only=True, map_location='cpu')`` with errors turned into one-line messages."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        match = _GLOBAL_RE.search(str(exc))
        if match:
            raise UnsafeCheckpointError(
                f"{path}: refused global '{match.group(1)}' (torch weights-only check); "
                "nothing from the file was executed"
            ) from None
        raise CheckpointError(f"{path}: corrupt torch.save file ({str(exc).splitlines()[0][:200]})") from None
    except Exception as exc:  # torch reports damaged files with many types (RuntimeError, EOFError, AssertionError …)
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        first = first.split(". ")[0].rstrip(".")[:160]  # torch appends paragraphs of advice
        raise CheckpointError(f"{path}: truncated or corrupt torch.save file ({first})") from None


def read_rosinality(path: Path) -> ParsedCheckpoint:
    """Read a rosinality ``.pt`` checkpoint (zip or legacy ``torch.save``) as a StyleGAN2 checkpoint."""
    data = torch_load_weights(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: torch.save file holds a {type(data).__name__}, expected a dict")
    if "g_ema" in data:
        sd, key = data["g_ema"], "g_ema"
    elif any(isinstance(k, str) and k.startswith("style.") for k in data):
        sd, key = data, "<root>"
    else:
        keys = ", ".join(sorted(map(str, data))[:8])
        raise CheckpointError(f"{path}: torch.save file has no 'g_ema' generator (keys: {keys})")
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: '{key}' is not a state dict of tensors")
    latent_avg = data.get("latent_avg") if key == "g_ema" else None
    try:
        config, state, notes = rosinality_to_nvidia(sd, latent_avg, path)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as exc:  # tensors of unexpected shapes
        raise CheckpointError(f"{path}: malformed rosinality state dict ({type(exc).__name__}: {exc})") from None
    details = {
        "network": key,
        "top_level_keys": sorted(map(str, data)),
        "mapping_lr_multiplier": f"{DEFAULT_LR_MLP} (rosinality default; not stored in the file)",
        **notes,
    }
    return ParsedCheckpoint(
        path=path, format="rosinality", family="stylegan2", config=config, state_dict=state, details=details
    )


class _Keys:
    """Takes keys out of a rosinality state dict, so leftovers can be reported."""

    def __init__(self, sd: dict[str, torch.Tensor], source: Path) -> None:
        self.sd = dict(sd)
        self.source = source

    def take(self, key: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if key not in self.sd:
            raise CheckpointError(f"{self.source}: rosinality checkpoint lacks {key}")
        t = self.sd.pop(key)
        if shape is not None and tuple(t.shape) != shape:
            raise CheckpointError(f"{self.source}: {key} expected {list(shape)}, got {list(t.shape)}")
        return t

    def pop_optional(self, key: str) -> torch.Tensor | None:
        return self.sd.pop(key, None)


def _mean_w(state: dict[str, torch.Tensor], n_mlp: int, z_dim: int, lr_mul: float) -> torch.Tensor:
    """rosinality ``mean_latent``: the mean of the mapping MLP over ``W_AVG_SAMPLES`` seeded z ([w_dim])."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([W_AVG_SAMPLES, z_dim], generator=gen)
    x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    for i in range(n_mlp):
        w, b = state[f"mapping.fc{i}.weight"], state[f"mapping.fc{i}.bias"]
        x = torch.nn.functional.leaky_relu(x @ (w * (lr_mul / math.sqrt(w.shape[1]))).t() + b * lr_mul, 0.2)
        x = x * math.sqrt(2)
    return x.mean(dim=0)


def rosinality_to_nvidia(
    sd: dict[str, torch.Tensor], latent_avg: Any, source: Path
) -> tuple[Any, dict[str, torch.Tensor], dict[str, Any]]:
    """Map a rosinality ``g_ema`` state dict (+ ``latent_avg``) to (StyleGAN2Config, NVIDIA state_dict, notes)."""
    from dragkit.nn.stylegan2 import StyleGAN2Config

    keys = _Keys(sd, source)
    notes: dict[str, Any] = {}
    style_idx = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    n_mlp = len(style_idx)
    if n_mlp == 0 or style_idx != list(range(1, n_mlp + 1)):
        raise CheckpointError(f"{source}: mapping layers style.1 … style.N not found (got {style_idx[:10]})")
    z_dim = int(sd["style.1.weight"].shape[1])
    w_dim = int(sd[f"style.{n_mlp}.weight"].shape[0])
    n_rgbs = sum(1 for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    log_size = n_rgbs + 2
    resolution = 2**log_size
    out: dict[str, torch.Tensor] = {}

    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = keys.take(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = keys.take(f"style.{i + 1}.bias")
    hidden = int(out["mapping.fc0.weight"].shape[0])

    const = keys.take("input.input")
    if const.ndim != 4 or const.shape[0] != 1 or tuple(const.shape[2:]) != (4, 4):
        raise CheckpointError(f"{source}: input.input expected [1, C, 4, 4], got {list(const.shape)}")
    channels = {4: int(const.shape[1])}
    for k in range(n_rgbs):
        w = sd.get(f"convs.{2 * k}.conv.weight")
        if w is None or w.ndim != 5:
            raise CheckpointError(f"{source}: convs.{2 * k}.conv.weight missing or not [1, O, I, k, k]")
        channels[2 ** (k + 3)] = int(w.shape[1])
    channel_base, channel_max = fit_channels(channels)

    blur = sd.get("convs.0.conv.blur.kernel")
    taps = filter_from_buffer(blur / 4) if blur is not None else (1, 3, 3, 1)
    if taps is None:
        raise CheckpointError(f"{source}: convs.0.conv.blur.kernel is not a separable integer FIR")
    filt = setup_filter(taps)

    out["synthesis.b4.const"] = const[0]
    out["synthesis.b4.resample_filter"] = filt.clone()
    noise_j = 0
    missing_noise: list[str] = []

    def styled_conv(src: str, dst: str, res: int, upsample: bool) -> None:
        nonlocal noise_j
        w = keys.take(f"{src}.conv.weight")
        if w.ndim != 5 or w.shape[0] != 1:
            raise CheckpointError(f"{source}: {src}.conv.weight expected [1, O, I, k, k], got {list(w.shape)}")
        out[f"{dst}.weight"] = w[0]
        out[f"{dst}.affine.weight"] = keys.take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = keys.take(f"{src}.conv.modulation.bias")
        out[f"{dst}.noise_strength"] = keys.take(f"{src}.noise.weight", (1,)).reshape([])
        out[f"{dst}.bias"] = keys.take(f"{src}.activate.bias").reshape(-1)
        if upsample:
            out[f"{dst}.resample_filter"] = keys.take(f"{src}.conv.blur.kernel", tuple(filt.shape)) / 4
        else:
            out[f"{dst}.resample_filter"] = filt.clone()
        noise = keys.pop_optional(f"noises.noise_{noise_j}")
        if noise is None:
            missing_noise.append(f"noises.noise_{noise_j}")
            gen = torch.Generator().manual_seed(noise_j)
            noise = torch.randn([1, 1, res, res], generator=gen)
        if tuple(noise.shape) != (1, 1, res, res):
            raise CheckpointError(
                f"{source}: noises.noise_{noise_j} expected {[1, 1, res, res]}, got {list(noise.shape)}"
            )
        out[f"{dst}.noise_const"] = noise[0, 0]
        noise_j += 1

    def to_rgb(src: str, dst: str) -> None:
        w = keys.take(f"{src}.conv.weight")
        if w.ndim != 5 or w.shape[0] != 1:
            raise CheckpointError(f"{source}: {src}.conv.weight expected [1, 3, C, 1, 1], got {list(w.shape)}")
        out[f"{dst}.weight"] = w[0]
        out[f"{dst}.affine.weight"] = keys.take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = keys.take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = keys.take(f"{src}.bias").reshape(-1)

    styled_conv("conv1", "synthesis.b4.conv1", 4, upsample=False)
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    for k in range(n_rgbs):
        res = 2 ** (k + 3)
        styled_conv(f"convs.{2 * k}", f"synthesis.b{res}.conv0", res, upsample=True)
        styled_conv(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", res, upsample=False)
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
        out[f"synthesis.b{res}.resample_filter"] = keys.take(f"to_rgbs.{k}.upsample.kernel", tuple(filt.shape)) / 4
    if keys.sd:
        leftover = sorted(keys.sd)
        more = f", … ({len(leftover) - 4} more)" if len(leftover) > 4 else ""
        raise CheckpointError(f"{source}: unexpected keys in rosinality checkpoint: {', '.join(leftover[:4])}{more}")
    if missing_noise:
        logger.warning("%s: no %s; using seeded random constant noise instead", source, ", ".join(missing_noise))
        notes["noise_const"] = f"missing for {len(missing_noise)} layers; seeded random noise used"

    if isinstance(latent_avg, torch.Tensor):
        if latent_avg.numel() != w_dim:
            raise CheckpointError(f"{source}: latent_avg has {latent_avg.numel()} values, expected w_dim = {w_dim}")
        out["mapping.w_avg"] = latent_avg.reshape(w_dim).to(torch.float32)
        notes["w_avg"] = "latent_avg"
    else:
        out["mapping.w_avg"] = _mean_w(out, n_mlp, z_dim, DEFAULT_LR_MLP)
        notes["w_avg"] = f"no latent_avg in file; mean of the mapping over {W_AVG_SAMPLES} seeded z"
        logger.warning("%s: no latent_avg; truncation centre estimated from %d samples", source, W_AVG_SAMPLES)

    img_channels = int(out["synthesis.b4.torgb.weight"].shape[0])
    try:
        config = StyleGAN2Config(
            z_dim=z_dim,
            c_dim=0,
            w_dim=w_dim,
            img_resolution=resolution,
            img_channels=img_channels,
            mapping_layers=n_mlp,
            mapping_lr_multiplier=DEFAULT_LR_MLP,
            mapping_layer_features=None if hidden == w_dim else hidden,
            channel_base=channel_base,
            channel_max=channel_max,
            conv_clamp=None,
            architecture="skip",
            resample_filter=taps,
            use_noise=True,
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: unsupported rosinality configuration ({exc})") from None
    return config, out, notes
