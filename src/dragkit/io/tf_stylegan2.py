"""TF-era StyleGAN2 pickles (NVIDIA's ``stylegan2`` TensorFlow repo): ``(G, D, Gs)`` network states → StyleGAN2.

Such a file is a plain pickle of three ``dnnlib.tflib.network.Network`` objects. The safe unpickler
(:mod:`dragkit.io.safe_pickle`) turns each into a :class:`~dragkit.io.safe_pickle.TFNetworkStub` holding its state:
``version``, ``name``, ``static_kwargs`` (the constructor options), ``components`` (sub-networks ``mapping`` and
``synthesis``), ``build_module_src`` / ``build_func_name`` (TensorFlow graph code — kept as text, never run) and
``variables`` (``(name, numpy array)`` pairs). dragkit reads ``Gs`` (the moving average, the one to sample from)
and maps its variables onto the NVIDIA-named PyTorch StyleGAN2 (docs/checkpoints.md):

- ``mapping/Dense{i}/weight`` [in, out] → ``mapping.fc{i}.weight`` (transposed); ``mapping/LabelEmbed`` →
  ``mapping.embed``; ``dlatent_avg`` → ``mapping.w_avg``;
- ``synthesis/4x4/Const/const`` [1, C, 4, 4] → ``synthesis.b4.const``;
- convolution weights [kh, kw, in, out] → [out, in, kh, kw]; the upsampling ``Conv0_up`` and the resnet ``Skip``
  kernels are also flipped in both spatial axes (TF stored them for a transposed convolution);
- ``mod_weight`` [w_dim, in] → ``affine.weight`` (transposed); ``mod_bias`` → ``affine.bias`` + 1 (TF added the 1
  in the graph);
- ``synthesis/noise{j}`` [1, 1, r, r] → the ``noise_const`` of the j-th convolution layer;
- ``lod`` (progressive growing's level of detail) is not used.

Layouts: ``skip`` (config-f and e), ``resnet`` (``Skip`` weights) and ``orig`` (one ToRGB at the end). The older
progressive-growing layout (``ToRGB_lod*`` variables) is refused with a one-line error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dragkit.errors import CheckpointError
from dragkit.io.base import ParsedCheckpoint
from dragkit.io.safe_pickle import SafeLoadResult, TFNetworkStub

__all__ = ["is_tf_pickle", "parse_tf"]

# static_kwargs → (StyleGAN2Config field, default); fmap_base is doubled (the TF code halved channel counts).
_KWARGS: dict[str, tuple[str, Any]] = {
    "latent_size": ("z_dim", 512),
    "label_size": ("c_dim", 0),
    "dlatent_size": ("w_dim", 512),
    "resolution": ("img_resolution", 1024),
    "num_channels": ("img_channels", 3),
    "mapping_layers": ("mapping_layers", 8),
    "label_fmaps": ("mapping_embed_features", None),
    "mapping_fmaps": ("mapping_layer_features", None),
    "mapping_nonlinearity": ("mapping_activation", "lrelu"),
    "mapping_lrmul": ("mapping_lr_multiplier", 0.01),
    "fmap_base": ("channel_base", 16384),
    "fmap_max": ("channel_max", 512),
    "num_fp16_res": ("num_fp16_res", 0),
    "conv_clamp": ("conv_clamp", None),
    "architecture": ("architecture", "skip"),
    "resample_kernel": ("resample_filter", (1, 3, 3, 1)),
    "use_noise": ("use_noise", True),
}
# Options that shape training or sampling only; they change nothing in the network's weights or forward pass.
_IGNORED_KWARGS = {"truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure", "w_avg_beta"}
_MAX_DEPTH = 4
_MAX_STRING = 64


def is_tf_pickle(obj: Any) -> bool:
    """Whether an unpickled object is a TF-era ``(G, D, Gs)`` tuple (or holds TF network states)."""
    values = list(obj.values()) if isinstance(obj, dict) else list(obj) if isinstance(obj, (tuple, list)) else []
    return isinstance(obj, TFNetworkStub) or any(isinstance(v, TFNetworkStub) for v in values)


def _collect(net: TFNetworkStub, source: Path) -> dict[str, np.ndarray]:
    """Every variable of ``net`` and its components, under ``component/…/name``."""
    out: dict[str, np.ndarray] = {}

    def visit(n: Any, prefix: str, depth: int) -> None:
        if not isinstance(n, TFNetworkStub) or depth > _MAX_DEPTH:
            raise CheckpointError(f"{source}: malformed TF network tree at {prefix or 'Gs'!r}")
        variables = n.get("variables", [])
        if not isinstance(variables, (list, tuple)):
            raise CheckpointError(f"{source}: {prefix or 'Gs'} has malformed variables")
        for item in variables:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                raise CheckpointError(f"{source}: {prefix or 'Gs'} has a malformed variable entry")
            name, value = item
            if isinstance(value, np.generic):  # a 0-d variable may be stored as a numpy scalar
                value = np.asarray(value)
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
                raise CheckpointError(f"{source}: TF variable {prefix + name!r} is not a numeric array")
            out[prefix + name] = value
        components = n.get("components", {})
        if not isinstance(components, dict):
            raise CheckpointError(f"{source}: {prefix or 'Gs'} has malformed components")
        for cname, comp in components.items():
            if not isinstance(cname, str) or "/" in cname or len(cname) > _MAX_STRING:
                raise CheckpointError(f"{source}: malformed TF component name {cname!r}")
            visit(comp, f"{prefix}{cname}/", depth + 1)

    visit(net, "", 0)
    return out


def _config(kwargs: dict[str, Any], params: dict[str, np.ndarray], source: Path) -> Any:
    from dragkit.nn.stylegan2 import StyleGAN2Config

    unknown = sorted(set(kwargs) - set(_KWARGS) - _IGNORED_KWARGS)
    if unknown:
        raise CheckpointError(f"{source}: TF network option(s) dragkit does not know: {', '.join(map(str, unknown))}")
    values: dict[str, Any] = {}
    for tf_name, (field, default) in _KWARGS.items():
        value = kwargs.get(tf_name, default)
        values[field] = default if value is None else value
    values["channel_base"] = int(values["channel_base"]) * 2
    values["resample_filter"] = tuple(int(v) for v in values["resample_filter"])
    if any(name.startswith("synthesis/ToRGB_lod") for name in params):
        raise CheckpointError(
            f"{source}: progressive-growing TF generator (ToRGB_lod* variables); only the StyleGAN2 skip, resnet "
            "and orig layouts are supported"
        )
    for key in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_layers", "channel_max"):
        v = values[key]
        if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool)):
            raise CheckpointError(f"{source}: TF option for {key} is {v!r}, expected an integer")
        values[key] = int(v)
    for key in ("mapping_embed_features", "mapping_layer_features"):
        if values[key] is not None:
            values[key] = int(values[key])
    if values["conv_clamp"] is not None:
        values["conv_clamp"] = float(values["conv_clamp"])
    values["mapping_lr_multiplier"] = float(values["mapping_lr_multiplier"])
    if not isinstance(values["architecture"], str) or not isinstance(values["mapping_activation"], str):
        raise CheckpointError(f"{source}: TF architecture / nonlinearity options must be strings")
    try:
        return StyleGAN2Config(**values)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: unsupported TF StyleGAN2 configuration ({exc})") from None


def _state_dict(cfg: Any, p: dict[str, np.ndarray], source: Path) -> dict[str, torch.Tensor]:
    """The NVIDIA-named state_dict of ``cfg``'s generator from TF variables (resample filters come from the
    config; shapes are checked later against the built network)."""
    used: set[str] = {"lod"}  # progressive growing's level of detail: 0 in a finished network, unused here

    def get(name: str) -> np.ndarray:
        if name not in p:
            raise CheckpointError(f"{source}: TF variable {name!r} is missing")
        used.add(name)
        return p[name]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))

    def conv(a: np.ndarray, flip: bool = False) -> torch.Tensor:
        if a.ndim != 4:
            raise CheckpointError(f"{source}: a TF convolution weight has shape {list(a.shape)}, expected 4 dims")
        return t((a[::-1, ::-1] if flip else a).transpose(3, 2, 0, 1))

    def mat(a: np.ndarray) -> torch.Tensor:
        if a.ndim != 2:
            raise CheckpointError(f"{source}: a TF dense weight has shape {list(a.shape)}, expected 2 dims")
        return t(a.T)

    s: dict[str, torch.Tensor] = {"mapping.w_avg": t(get("dlatent_avg"))}
    if cfg.c_dim > 0:
        s["mapping.embed.weight"] = mat(get("mapping/LabelEmbed/weight"))
        s["mapping.embed.bias"] = t(get("mapping/LabelEmbed/bias"))
    for i in range(cfg.mapping_layers):
        s[f"mapping.fc{i}.weight"] = mat(get(f"mapping/Dense{i}/weight"))
        s[f"mapping.fc{i}.bias"] = t(get(f"mapping/Dense{i}/bias"))
    const = get("synthesis/4x4/Const/const")
    if const.ndim != 4:
        raise CheckpointError(f"{source}: synthesis/4x4/Const/const has shape {list(const.shape)}, expected 4 dims")
    s["synthesis.b4.const"] = t(const[0])

    def layer(dst: str, src: str, noise_index: int, flip: bool) -> None:
        s[f"{dst}.weight"] = conv(get(f"{src}/weight"), flip)
        s[f"{dst}.bias"] = t(get(f"{src}/bias"))
        s[f"{dst}.affine.weight"] = mat(get(f"{src}/mod_weight"))
        s[f"{dst}.affine.bias"] = t(get(f"{src}/mod_bias") + 1)
        if cfg.use_noise:
            noise = get(f"synthesis/noise{noise_index}")
            if noise.ndim != 4:
                raise CheckpointError(f"{source}: synthesis/noise{noise_index} has shape {list(noise.shape)}")
            s[f"{dst}.noise_const"] = t(noise[0, 0])
            s[f"{dst}.noise_strength"] = t(get(f"{src}/noise_strength"))
        s[f"{dst}.resample_filter"] = _filter(cfg)

    def torgb(dst: str, src: str) -> None:
        s[f"{dst}.weight"] = conv(get(f"{src}/weight"))
        s[f"{dst}.bias"] = t(get(f"{src}/bias"))
        s[f"{dst}.affine.weight"] = mat(get(f"{src}/mod_weight"))
        s[f"{dst}.affine.bias"] = t(get(f"{src}/mod_bias") + 1)

    for res in cfg.block_resolutions:
        log2 = int(math.log2(res))
        scope = f"synthesis/{res}x{res}"
        s[f"synthesis.b{res}.resample_filter"] = _filter(cfg)
        if res == 4:
            layer("synthesis.b4.conv1", f"{scope}/Conv", 0, flip=False)
        else:
            layer(f"synthesis.b{res}.conv0", f"{scope}/Conv0_up", log2 * 2 - 5, flip=True)
            layer(f"synthesis.b{res}.conv1", f"{scope}/Conv1", log2 * 2 - 4, flip=False)
            if cfg.architecture == "resnet":
                s[f"synthesis.b{res}.skip.weight"] = conv(get(f"{scope}/Skip/weight"), flip=True)
                s[f"synthesis.b{res}.skip.resample_filter"] = _filter(cfg)
        if cfg.architecture == "skip" or res == cfg.img_resolution:
            torgb(f"synthesis.b{res}.torgb", f"{scope}/ToRGB")
    left = sorted(set(p) - used)
    if left:
        raise CheckpointError(f"{source}: TF variables this StyleGAN2 layout does not use: {', '.join(left[:4])}")
    return s


def _filter(cfg: Any) -> torch.Tensor:
    from dragkit.nn.ops import setup_filter

    return setup_filter(cfg.resample_filter)


def parse_tf(loaded: SafeLoadResult, source: Path) -> ParsedCheckpoint:
    """Turn an unpickled TF-era ``(G, D, Gs)`` pickle (stubs) into a :class:`ParsedCheckpoint` of ``Gs``."""
    obj = loaded.obj
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, TFNetworkStub) for n in obj)):
        raise CheckpointError(f"{source}: a TF-era pickle must hold the three networks (G, D, Gs)")
    Gs = obj[2]
    version = Gs.get("version")
    if not isinstance(version, int) or version < 4:
        raise CheckpointError(f"{source}: TF network pickle version {version!r} is too old (need ≥ 4)")
    kwargs = Gs.get("static_kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CheckpointError(f"{source}: malformed TF static_kwargs")
    params = _collect(Gs, source)
    config = _config(dict(kwargs), params, source)
    state = _state_dict(config, params, source)
    src = Gs.get("build_module_src", "")
    details = {
        "network": "Gs",
        "tf_name": str(Gs.get("name", ""))[:_MAX_STRING],
        "tf_build_func": str(Gs.get("build_func_name", ""))[:_MAX_STRING],
        "tf_version": version,
        "pickle_protocol": loaded.protocol,
        "kwargs_layout": "TF static_kwargs (legacy)",
        "module_src_chars": len(src) if isinstance(src, str) else 0,
        "tf_variables": len(params),
    }
    return ParsedCheckpoint(
        path=source,
        format="tf-pickle",
        family="stylegan2",
        config=config,
        state_dict=state,
        globals_named=list(loaded.globals_named),
        details=details,
    )
