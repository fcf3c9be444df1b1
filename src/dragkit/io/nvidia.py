"""NVIDIA network pickles (``stylegan2-ada-pytorch``, ``stylegan3``): stub tree → (family, config, state_dict).

The pickle is read by :mod:`dragkit.io.safe_pickle`, so every network object arrives as a
:class:`~dragkit.io.safe_pickle.PersistentStub` holding its instance ``__dict__``. This module picks the
generator (``G_ema``, else ``G``), tells the family from the data (synthesis children ``b4 …`` → StyleGAN2;
``input`` + ``L0_…`` → StyleGAN3; TF ``Network`` states → TF-era), rebuilds the state_dict from the stubs'
``_parameters`` / ``_buffers`` with dotted names, and reads the config from what the layers really used (child
attributes such as ``conv_clamp``, ``architecture``, ``bias_gain``, weight shapes) with the recorded constructor
arguments (``_init_kwargs``: ADA nests ``synthesis_kwargs``/``mapping_kwargs``; the stylegan3 repo's copy of
StyleGAN2 flattens the synthesis ones) as hints and defaults.
"""

from __future__ import annotations

import logging
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dragkit.errors import CheckpointError
from dragkit.io.base import ParsedCheckpoint, filter_from_buffer, fit_channels
from dragkit.io.safe_pickle import PersistentStub, SafeLoadResult, safe_load

logger = logging.getLogger(__name__)

__all__ = ["PERSISTENCE_VERSION", "collect_state_dict", "parse_nvidia", "read_nvidia"]

PERSISTENCE_VERSION = 6  # torch_utils.persistence._version in both NVIDIA repos
_MAX_DEPTH = 32
# Constructor arguments of NVIDIA's Generator itself; every other top-level kwarg of the stylegan3 repo's
# StyleGAN2 Generator is a (flattened) synthesis kwarg.
_G_ARGS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"}


def read_nvidia(path: Path) -> ParsedCheckpoint:
    """Read an NVIDIA network pickle without executing anything stored in it."""
    with open(path, "rb") as f:
        loaded = safe_load(f, path)
    return parse_nvidia(loaded, path)


def _as_int(value: Any, what: str, source: Path) -> int:
    """``value`` as an int if it is an integral number (Python or numpy), else CheckpointError."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():  # np.float64 is a float
        return int(value)
    raise CheckpointError(f"{source}: {what} is {value!r}, expected an integer")


def _pick_network(obj: Any, source: Path) -> tuple[PersistentStub, str]:
    if isinstance(obj, PersistentStub):
        return obj, "<root>"
    if isinstance(obj, dict):
        for key in ("G_ema", "G"):
            if isinstance(obj.get(key), PersistentStub):
                return obj[key], key
        keys = ", ".join(sorted(map(str, obj))[:8])
        raise CheckpointError(f"{source}: no 'G_ema' or 'G' network in this pickle (top-level keys: {keys})")
    raise CheckpointError(f"{source}: pickle holds an object of type {type(obj).__name__}, not NVIDIA networks")


def _check_stub(stub: PersistentStub, source: Path) -> None:
    if stub.meta_type != "class" or stub.version != PERSISTENCE_VERSION:
        raise CheckpointError(
            f"{source}: persistent object {stub.class_name!r} has type {stub.meta_type!r} version {stub.version}, "
            f"expected 'class' version {PERSISTENCE_VERSION}"
        )


def collect_state_dict(root: PersistentStub, source: Path) -> dict[str, torch.Tensor]:
    """``_parameters`` and persistent ``_buffers`` of ``root`` and its children, under dotted names."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def visit(stub: PersistentStub, prefix: str, depth: int) -> None:
        if id(stub) in seen or depth > _MAX_DEPTH:
            raise CheckpointError(f"{source}: malformed network tree (cycle or depth > {_MAX_DEPTH} at {prefix!r})")
        seen.add(id(stub))
        _check_stub(stub, source)
        non_persistent = stub.state.get("_non_persistent_buffers_set") or set()
        for section in ("_parameters", "_buffers"):
            entries = stub.state.get(section, {})
            if not isinstance(entries, dict):
                raise CheckpointError(f"{source}: {prefix or 'network'} has a malformed {section}")
            for name, value in entries.items():
                if value is None or (section == "_buffers" and name in non_persistent):
                    continue
                if not isinstance(name, str) or "." in name or not isinstance(value, torch.Tensor):
                    raise CheckpointError(f"{source}: malformed entry {name!r} in {prefix or 'network'}.{section}")
                out[prefix + name] = value
        for name, child in stub.children().items():
            if child is None:
                continue
            if not isinstance(name, str) or "." in name or not isinstance(child, PersistentStub):
                raise CheckpointError(f"{source}: child {name!r} of {prefix or 'network'} is not a network object")
            visit(child, f"{prefix}{name}.", depth + 1)

    visit(root, "", 0)
    return out


def _detect_family(G: PersistentStub, source: Path) -> str:
    synthesis = G.children().get("synthesis")
    if not isinstance(synthesis, PersistentStub) or not isinstance(G.children().get("mapping"), PersistentStub):
        raise CheckpointError(
            f"{source}: network {G.class_name!r} has no 'mapping' and 'synthesis' children — not a generator"
        )
    names = set(synthesis.children())
    if "input" in names and any(n.startswith("L0_") for n in names):
        return "stylegan3"
    if "b4" in names:
        return "stylegan2"
    raise CheckpointError(
        f"{source}: unknown synthesis network {synthesis.class_name!r} with children {sorted(names)[:6]}"
    )


def _kwargs_layout(G: PersistentStub) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(layout name, synthesis kwargs, mapping kwargs) recorded at the Generator level."""
    kw = G.init_kwargs
    mapping_kw = dict(kw.get("mapping_kwargs") or {})
    nested = kw.get("synthesis_kwargs")
    if isinstance(nested, dict):
        return "nested synthesis_kwargs (stylegan2-ada-pytorch)", dict(nested), mapping_kw
    flat = {k: v for k, v in kw.items() if k not in _G_ARGS}
    if flat:
        return "flattened synthesis kwargs (stylegan3 repo)", flat, mapping_kw
    return "no recorded kwargs", {}, mapping_kw


def _stylegan2_config(G: PersistentStub, state: dict[str, torch.Tensor], source: Path) -> tuple[Any, str]:
    from dragkit.nn.stylegan2 import StyleGAN2Config

    children = G.children()
    mapping: PersistentStub = children["mapping"]
    synthesis: PersistentStub = children["synthesis"]
    layout, syn_kw, map_kw = _kwargs_layout(G)
    syn_kw.update(synthesis.init_kwargs)  # the synthesis network's own record wins over the Generator's
    map_kw.update({k: v for k, v in mapping.init_kwargs.items() if k not in ("z_dim", "c_dim", "w_dim", "num_ws")})
    gkw = G.init_kwargs

    def top(name: str) -> int:
        value = G.attr(name, gkw.get(name))
        if value is None:
            raise CheckpointError(f"{source}: generator records no {name}")
        return _as_int(value, name, source)

    z_dim, c_dim, w_dim = top("z_dim"), top("c_dim"), top("w_dim")
    img_resolution, img_channels = top("img_resolution"), top("img_channels")

    # Mapping network: what its layers used.
    num_layers = mapping.attr("num_layers", map_kw.get("num_layers"))
    if num_layers is None:
        num_layers = sum(1 for n in mapping.children() if n.startswith("fc"))
    num_layers = _as_int(num_layers, "mapping num_layers", source)
    fc0 = mapping.children().get("fc0")
    if not isinstance(fc0, PersistentStub) or "mapping.fc0.weight" not in state:
        raise CheckpointError(f"{source}: mapping network has no fc0 layer")
    lr_mul = fc0.attr("bias_gain", map_kw.get("lr_multiplier", 0.01))
    activation = fc0.attr("activation", map_kw.get("activation", "lrelu"))
    layer_features = int(state["mapping.fc0.weight"].shape[0]) if num_layers > 1 else None
    embed_features = (
        int(state["mapping.embed.weight"].shape[0]) if c_dim > 0 and "mapping.embed.weight" in state else None
    )

    # Synthesis network: channels from weight shapes, layer options from the layers themselves.
    block_res = [2**i for i in range(2, img_resolution.bit_length())]
    channels: dict[int, int] = {}
    for res in block_res:
        key = f"synthesis.b{res}.conv1.weight"
        if key not in state:
            raise CheckpointError(f"{source}: missing {key} (expected blocks b4 … b{img_resolution})")
        channels[res] = int(state[key].shape[0])
    hint_base, hint_max = syn_kw.get("channel_base", 32768), syn_kw.get("channel_max", 512)
    channel_base, channel_max = fit_channels(channels, hint_base, hint_max)
    if (channel_base, channel_max) != (hint_base, hint_max):
        logger.debug(
            "%s: channel_base/max %s from weight shapes (recorded: %s)",
            source,
            (channel_base, channel_max),
            (hint_base, hint_max),
        )

    b4: PersistentStub = synthesis.children()["b4"]
    layer = b4.children().get("conv1")
    if not isinstance(layer, PersistentStub):
        raise CheckpointError(f"{source}: synthesis.b4 has no conv1 layer")
    layer_act = layer.attr("activation", "lrelu")
    if layer_act != "lrelu":
        raise CheckpointError(f"{source}: synthesis layers use activation {layer_act!r}; only 'lrelu' is supported")
    conv_clamp = layer.attr("conv_clamp", syn_kw.get("conv_clamp"))
    architecture = b4.attr("architecture", syn_kw.get("architecture", "skip"))
    use_noise = layer.attr("use_noise", syn_kw.get("use_noise", "synthesis.b4.conv1.noise_const" in state))
    fp16 = syn_kw.get("num_fp16_res")
    if fp16 is None:
        fp16 = sum(1 for b in synthesis.children().values() if isinstance(b, PersistentStub) and b.attr("use_fp16"))
    resample = syn_kw.get("resample_filter")
    if resample is None and "synthesis.b4.resample_filter" in state:
        resample = filter_from_buffer(state["synthesis.b4.resample_filter"])

    kwargs: dict[str, Any] = {
        "z_dim": z_dim,
        "c_dim": c_dim,
        "w_dim": w_dim,
        "img_resolution": img_resolution,
        "img_channels": img_channels,
        "mapping_layers": num_layers,
        "mapping_lr_multiplier": float(lr_mul),
        "mapping_embed_features": None if embed_features in (None, w_dim) else embed_features,
        "mapping_layer_features": None if layer_features in (None, w_dim) else layer_features,
        "mapping_activation": str(activation),
        "channel_base": channel_base,
        "channel_max": channel_max,
        "num_fp16_res": _as_int(fp16, "num_fp16_res", source),
        "conv_clamp": None if conv_clamp is None else float(conv_clamp),
        "architecture": str(architecture),
        "use_noise": bool(use_noise),
        "square": bool(G.attr("square", gkw.get("square", True))),
    }
    if resample is not None:
        kwargs["resample_filter"] = tuple(int(v) for v in resample)
    try:
        return StyleGAN2Config(**kwargs), layout
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: unsupported StyleGAN2 configuration ({exc})") from None


def _number(value: Any, what: str, source: Path) -> float:
    """``value`` as a finite float if it is a real number (Python or numpy), else CheckpointError."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)):
        return float(value)
    raise CheckpointError(f"{source}: {what} is {value!r}, expected a number")


def _size(value: Any, what: str, source: Path) -> int:
    """A recorded spatial size: an int, or NVIDIA's [width, height] array of a square layer."""
    if isinstance(value, np.ndarray) and value.shape == (2,) and value[0] == value[1]:
        value = value[0]
    return _as_int(value, what, source)


# The recorded layer attributes that must agree with the geometry dragkit computes from the config.
_SG3_CHECKS = (
    ("in_size", "in_size"),
    ("out_size", "out_size"),
    ("in_sampling_rate", "in_sampling_rate"),
    ("out_sampling_rate", "out_sampling_rate"),
    ("up_factor", "up_factor"),
    ("down_factor", "down_factor"),
    ("up_taps", "up_taps"),
    ("down_taps", "down_taps"),
    ("down_radial", "down_radial"),
    ("is_torgb", "is_torgb"),
    ("conv_kernel", "conv_kernel"),
)


def _stylegan3_config(G: PersistentStub, state: dict[str, torch.Tensor], source: Path) -> tuple[Any, str]:
    """StyleGAN3's config from the Generator's recorded kwargs (flattened synthesis kwargs, nested
    ``mapping_kwargs``), the synthesis network's and its layers' attributes; then every layer's recorded geometry
    (sizes, sampling rates, resampling factors, taps, padding, cutoffs) is checked against the one computed."""
    from dragkit.nn.stylegan3 import StyleGAN3Config, layer_specs

    children = G.children()
    mapping: PersistentStub = children["mapping"]
    synthesis: PersistentStub = children["synthesis"]
    gkw = G.init_kwargs
    syn_kw = {k: v for k, v in gkw.items() if k not in _G_ARGS}
    syn_kw.update(synthesis.init_kwargs)
    map_kw = dict(gkw.get("mapping_kwargs") or {})
    map_kw.update(mapping.init_kwargs)

    def top(name: str) -> int:
        value = G.attr(name, gkw.get(name))
        if value is None:
            raise CheckpointError(f"{source}: generator records no {name}")
        return _as_int(value, name, source)

    names = synthesis.attr("layer_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{source}: StyleGAN3 synthesis network records no layer_names")
    layers: list[PersistentStub] = []
    for n in names:
        layer = synthesis.children().get(n)
        if not isinstance(layer, PersistentStub):
            raise CheckpointError(f"{source}: StyleGAN3 layer_names names {n!r}, which the network does not have")
        layers.append(layer)
    first, last = layers[0], layers[-1]
    num_layers = len(names) - 1
    fc0 = mapping.children().get("fc0")
    lr_mul = fc0.attr("bias_gain", map_kw.get("lr_multiplier", 0.01)) if isinstance(fc0, PersistentStub) else 0.01
    up = _as_int(first.attr("up_factor", 1), "L0 up_factor", source)
    lrelu_up = _number(first.attr("tmp_sampling_rate"), "L0 tmp_sampling_rate", source) / max(
        _number(first.attr("in_sampling_rate"), "L0 in_sampling_rate", source),
        _number(first.attr("out_sampling_rate"), "L0 out_sampling_rate", source),
    )
    radial = any(bool(layer.attr("down_radial", False)) for layer in layers)
    conv_clamp = first.attr("conv_clamp", syn_kw.get("conv_clamp", 256))
    kwargs: dict[str, Any] = {
        "z_dim": top("z_dim"),
        "c_dim": top("c_dim"),
        "w_dim": top("w_dim"),
        "img_resolution": top("img_resolution"),
        "img_channels": top("img_channels"),
        "mapping_layers": _as_int(mapping.attr("num_layers", map_kw.get("num_layers", 2)), "num_layers", source),
        "mapping_lr_multiplier": _number(lr_mul, "mapping lr_multiplier", source),
        "channel_base": _as_int(syn_kw.get("channel_base", 32768), "channel_base", source),
        "channel_max": _as_int(syn_kw.get("channel_max", 512), "channel_max", source),
        "num_layers": num_layers,
        "num_critical": _as_int(synthesis.attr("num_critical", syn_kw.get("num_critical", 2)), "num_critical", source),
        "first_cutoff": _number(syn_kw.get("first_cutoff", 2), "first_cutoff", source),
        "first_stopband": _number(syn_kw.get("first_stopband", 2**2.1), "first_stopband", source),
        "last_stopband_rel": _number(syn_kw.get("last_stopband_rel", 2**0.3), "last_stopband_rel", source),
        "margin_size": _as_int(synthesis.attr("margin_size", syn_kw.get("margin_size", 10)), "margin_size", source),
        "output_scale": _number(
            synthesis.attr("output_scale", syn_kw.get("output_scale", 0.25)), "output_scale", source
        ),
        "num_fp16_res": _as_int(synthesis.attr("num_fp16_res", syn_kw.get("num_fp16_res", 4)), "num_fp16_res", source),
        "conv_kernel": _as_int(first.attr("conv_kernel", syn_kw.get("conv_kernel", 3)), "conv_kernel", source),
        "filter_size": _as_int(first.attr("up_taps", 6 * up), "L0 up_taps", source) // up if up > 1 else 6,
        "lrelu_upsampling": _as_int(lrelu_up, "lrelu_upsampling", source),
        "use_radial_filters": radial,
        "conv_clamp": None if conv_clamp is None else _number(conv_clamp, "conv_clamp", source),
    }
    if not bool(last.attr("is_torgb", True)):
        raise CheckpointError(f"{source}: the last StyleGAN3 layer {names[-1]!r} is not the ToRGB layer")
    try:
        config = StyleGAN3Config(**kwargs)
        specs = layer_specs(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: unsupported StyleGAN3 configuration ({exc})") from None
    for spec, name, layer in zip(specs, names, layers, strict=True):
        if spec.name != name:
            raise CheckpointError(f"{source}: layer {name!r} should be {spec.name!r} for this configuration")
        for attr, field_name in _SG3_CHECKS:
            recorded = layer.attr(attr)
            if recorded is None:
                continue
            expected = getattr(spec, field_name)
            got = bool(recorded) if isinstance(expected, bool) else _size(recorded, f"{name}.{attr}", source)
            if got != expected:
                raise CheckpointError(f"{source}: {name}.{attr} is {got}, this configuration computes {expected}")
        padding = layer.attr("padding")
        if padding is not None and [int(p) for p in padding] != list(spec.padding):
            raise CheckpointError(f"{source}: {name}.padding is {padding}, this configuration computes {spec.padding}")
        for attr in ("in_cutoff", "out_cutoff"):
            recorded = layer.attr(attr)
            if recorded is not None and not math.isclose(
                _number(recorded, f"{name}.{attr}", source), getattr(spec, attr), rel_tol=1e-9
            ):
                raise CheckpointError(
                    f"{source}: {name}.{attr} is {recorded}, this configuration computes a different one"
                )
    return config, "flattened synthesis kwargs (stylegan3 repo)"


def parse_nvidia(loaded: SafeLoadResult, source: Path) -> ParsedCheckpoint:
    """Turn an unpickled NVIDIA pickle (stubs) into a :class:`ParsedCheckpoint` (TF-era pickles are handed to
    :func:`dragkit.io.tf_stylegan2.parse_tf`)."""
    from dragkit.io.tf_stylegan2 import is_tf_pickle, parse_tf

    if is_tf_pickle(loaded.obj):
        return parse_tf(loaded, source)
    G, key = _pick_network(loaded.obj, source)
    _check_stub(G, source)
    family = _detect_family(G, source)
    state = collect_state_dict(G, source)
    try:
        if family == "stylegan3":
            config, layout = _stylegan3_config(G, state, source)
        else:
            config, layout = _stylegan2_config(G, state, source)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:  # odd attribute types/shapes
        raise CheckpointError(f"{source}: malformed generator record ({type(exc).__name__}: {exc})") from None
    top_keys = sorted(map(str, loaded.obj)) if isinstance(loaded.obj, dict) else []
    details = {
        "network": key,
        "class_name": G.class_name,
        "pickle_protocol": loaded.protocol,
        "top_level_keys": top_keys,
        "kwargs_layout": layout,
        "module_src_chars": len(G.module_src),
    }
    return ParsedCheckpoint(
        path=source,
        format="nvidia-pickle",
        family=family,
        config=config,
        state_dict=state,
        globals_named=list(loaded.globals_named),
        details=details,
    )
