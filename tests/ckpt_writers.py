"""Test fixtures: tiny checkpoints written from *our* generator in other projects' on-disk layouts.

- :func:`write_nvidia_pickle` — the layout of ``stylegan2-ada-pytorch`` (``variant='ada'``: nested
  ``synthesis_kwargs``, torch-1.7-style ``OrderedDict`` module dicts, pickle protocol 3) and of the ``stylegan3``
  repo's StyleGAN2 (``variant='sg3'``: flattened synthesis kwargs, torch-2-style plain dicts, protocol 4). It is a
  plain ``pickle.dump`` of ``{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}`` in which every network
  object is a call ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
  ``meta = {type: 'class', version: 6, module_src, class_name, state}`` and ``state`` = the instance ``__dict__``
  NVIDIA's classes would have (``_parameters`` / ``_buffers`` / ``_modules``, hook dicts,
  ``_non_persistent_buffers_set``, ``_init_args``, ``_init_kwargs``, plain attributes such as ``weight_gain`` as
  numpy float64). Tensors are pickled by torch itself (``_rebuild_parameter`` / ``_rebuild_tensor_v2`` /
  ``_load_from_bytes``). The modules ``torch_utils.persistence`` and ``dnnlib.util`` exist only while writing.
- :func:`to_rosinality_state_dict` / :func:`write_rosinality` — the inverse of the rosinality key map, written out
  longhand and independently of ``dragkit.io.rosinality``.
- :func:`raw_pickle` — hand-assembled pickle opcodes naming any global (for hostile fixtures).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import pickle
import sys
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import dragkit.nn.stylegan2 as sg2
from dragkit.nn.stylegan2 import StyleGAN2Generator

MODULE_SRC = inspect.getsource(sg2)  # stands in for NVIDIA's training/networks.py source text
_TORCH17_KEYS = (
    "training",
    "_parameters",
    "_buffers",
    "_non_persistent_buffers_set",
    "_backward_hooks",
    "_forward_hooks",
    "_forward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
    "_modules",
)
_FAKE_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")


@contextlib.contextmanager
def nvidia_modules(reconstruct: Any = None) -> Iterator[types.SimpleNamespace]:
    """Throwaway ``torch_utils.persistence`` and ``dnnlib.util`` modules, registered only inside the block.

    ``reconstruct`` replaces the persistence function (tests use an ``exec``-ing one as a control).
    """
    saved = {name: sys.modules.get(name) for name in _FAKE_MODULES}
    mods = {name: types.ModuleType(name) for name in _FAKE_MODULES}

    def _reconstruct_persistent_obj(meta: Any) -> Any:
        raise RuntimeError("writer-only stand-in; never called by the code under test")

    fn = reconstruct or _reconstruct_persistent_obj
    fn.__module__, fn.__qualname__, fn.__name__ = (
        "torch_utils.persistence",
        "_reconstruct_persistent_obj",
        ("_reconstruct_persistent_obj"),
    )
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = fn  # type: ignore[attr-defined]

    class EasyDict(dict):  # type: ignore[type-arg]
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    mods["dnnlib.util"].EasyDict = EasyDict  # type: ignore[attr-defined]
    mods["torch_utils"].persistence = mods["torch_utils.persistence"]  # type: ignore[attr-defined]
    mods["dnnlib"].util = mods["dnnlib.util"]  # type: ignore[attr-defined]
    sys.modules.update(mods)
    try:
        yield types.SimpleNamespace(reconstruct=fn, EasyDict=EasyDict)
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


class Persistent:
    """Pickles exactly like an NVIDIA ``@persistent_class`` instance."""

    def __init__(self, fn: Any, class_name: str, state: dict[str, Any], module_src: str = MODULE_SRC) -> None:
        self.fn = fn
        self.meta = {"type": "class", "version": 6, "module_src": module_src, "class_name": class_name, "state": state}

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.fn, (self.meta,), None)


def _torch_state(module: nn.Module, variant: str) -> dict[str, Any]:
    """The torch-internal part of ``module.__dict__`` (torch 1.7 key set and OrderedDicts for 'ada')."""
    d = module.__dict__
    if variant == "ada":
        out: dict[str, Any] = {}
        for key in _TORCH17_KEYS:
            value = d.get(key, OrderedDict() if key != "_non_persistent_buffers_set" else set())
            out[key] = OrderedDict(value) if isinstance(value, dict) else value
        return out
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items() if k.startswith("_") or k == "training"}


def _nvidia_attrs(m: nn.Module, G: StyleGAN2Generator) -> tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]:
    """(class name, _init_args, _init_kwargs, plain attributes) NVIDIA's class would record for ``m``."""
    cfg = G.config
    sqrt2 = np.sqrt(2)
    if isinstance(m, sg2.FullyConnectedLayer):
        out_f, in_f = m.weight.shape
        lr = m.bias_gain
        kwargs = {"activation": m.activation, "lr_multiplier": lr} if m.activation != "linear" else {"bias_init": 1}
        attrs = {"activation": m.activation, "weight_gain": lr / np.sqrt(in_f), "bias_gain": lr}
        return "FullyConnectedLayer", (in_f, out_f), kwargs, attrs
    if isinstance(m, sg2.MappingNetwork):
        kw = {"z_dim": m.z_dim, "c_dim": m.c_dim, "w_dim": m.w_dim, "num_ws": m.num_ws, "num_layers": m.num_layers}
        return "MappingNetwork", (), kw, {**kw, "w_avg_beta": 0.995}
    if isinstance(m, sg2.SynthesisLayer):
        o, i = m.weight.shape[:2]
        kw = {
            "w_dim": cfg.w_dim,
            "resolution": m.resolution,
            "up": m.up,
            "resample_filter": list(cfg.resample_filter),
            "conv_clamp": cfg.conv_clamp,
            "channels_last": False,
        }
        attrs = {
            "resolution": m.resolution,
            "up": m.up,
            "use_noise": m.use_noise,
            "activation": "lrelu",
            "conv_clamp": cfg.conv_clamp,
            "padding": 1,
            "act_gain": sqrt2,
        }
        return "SynthesisLayer", (i, o), kw, attrs
    if isinstance(m, sg2.ToRGBLayer):
        o, i = m.weight.shape[:2]
        kw = {"w_dim": cfg.w_dim, "conv_clamp": cfg.conv_clamp, "channels_last": False}
        return "ToRGBLayer", (i, o), kw, {"conv_clamp": cfg.conv_clamp, "weight_gain": 1 / np.sqrt(i)}
    if isinstance(m, sg2.Conv2dLayer):
        o, i = m.weight.shape[:2]
        kw = {
            "kernel_size": 1,
            "bias": False,
            "up": 2,
            "resample_filter": list(cfg.resample_filter),
            "channels_last": False,
        }
        attrs = {
            "activation": "linear",
            "up": 2,
            "down": 1,
            "conv_clamp": None,
            "padding": 0,
            "weight_gain": 1 / np.sqrt(i),
            "act_gain": 1.0,
        }
        return "Conv2dLayer", (i, o), kw, attrs
    if isinstance(m, sg2.SynthesisBlock):
        res = m.resolution
        fp16 = res >= max(2 ** (int(np.log2(cfg.img_resolution)) + 1 - cfg.num_fp16_res), 8)
        out_ch = cfg.channels(res)
        kw = {
            "w_dim": cfg.w_dim,
            "resolution": res,
            "img_channels": cfg.img_channels,
            "is_last": m.is_last,
            "use_fp16": fp16,
            "architecture": cfg.architecture,
            "conv_clamp": cfg.conv_clamp,
        }
        attrs = {
            "in_channels": m.in_channels,
            "w_dim": cfg.w_dim,
            "resolution": res,
            "img_channels": cfg.img_channels,
            "is_last": m.is_last,
            "architecture": cfg.architecture,
            "use_fp16": fp16,
            "channels_last": False,
            "num_conv": m.num_conv,
            "num_torgb": m.num_torgb,
        }
        return "SynthesisBlock", (m.in_channels, out_ch), kw, attrs
    if isinstance(m, sg2.SynthesisNetwork):
        kw = {
            "w_dim": cfg.w_dim,
            "img_resolution": cfg.img_resolution,
            "img_channels": cfg.img_channels,
            **_synthesis_kwargs(cfg),
        }
        attrs = {
            "w_dim": cfg.w_dim,
            "img_resolution": cfg.img_resolution,
            "img_resolution_log2": int(np.log2(cfg.img_resolution)),
            "img_channels": cfg.img_channels,
            "block_resolutions": list(m.block_resolutions),
            "num_ws": m.num_ws,
        }
        return "SynthesisNetwork", (), kw, attrs
    raise TypeError(f"no NVIDIA counterpart for {type(m).__name__}")


def _synthesis_kwargs(cfg: sg2.StyleGAN2Config) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "channel_base": cfg.channel_base,
        "channel_max": cfg.channel_max,
        "num_fp16_res": cfg.num_fp16_res,
        "conv_clamp": cfg.conv_clamp,
    }
    if cfg.architecture != "skip":
        kw["architecture"] = cfg.architecture
    return kw


def _generator_kwargs(cfg: sg2.StyleGAN2Config, variant: str, easydict: type) -> dict[str, Any]:
    mapping = easydict(num_layers=cfg.mapping_layers)
    if variant == "ada":
        kw = {
            "z_dim": cfg.z_dim,
            "w_dim": cfg.w_dim,
            "mapping_kwargs": mapping,
            "synthesis_kwargs": easydict(**_synthesis_kwargs(cfg)),
        }
    else:
        kw = {
            "z_dim": cfg.z_dim,
            "w_dim": cfg.w_dim,
            "mapping_kwargs": mapping,
            **_synthesis_kwargs(cfg),
            "fused_modconv_default": "inference_only",
        }
    kw.update(c_dim=cfg.c_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels)
    return kw


def _wrap(m: nn.Module, G: StyleGAN2Generator, variant: str, ns: types.SimpleNamespace, module_src: str) -> Persistent:
    state = _torch_state(m, variant)
    state["_modules"] = type(state["_modules"])(
        (name, _wrap(child, G, variant, ns, module_src)) for name, child in m._modules.items() if child is not None
    )
    if m is G:
        cfg = G.config
        kwargs = _generator_kwargs(cfg, variant, ns.EasyDict)
        attrs = {
            "z_dim": cfg.z_dim,
            "c_dim": cfg.c_dim,
            "w_dim": cfg.w_dim,
            "img_resolution": cfg.img_resolution,
            "img_channels": cfg.img_channels,
            "num_ws": G.num_ws,
        }
        name, args = "Generator", ()
    else:
        name, args, kwargs, attrs = _nvidia_attrs(m, G)
    state.update(attrs)
    state["_init_args"] = args
    state["_init_kwargs"] = kwargs
    return Persistent(ns.reconstruct, name, state, module_src)


def _fake_discriminator(ns: types.SimpleNamespace, seed: int) -> Persistent:
    gen = torch.Generator().manual_seed(seed)
    conv = Persistent(
        ns.reconstruct,
        "Conv2dLayer",
        {
            "training": False,
            "_parameters": OrderedDict(
                weight=nn.Parameter(torch.randn([8, 3, 1, 1], generator=gen), requires_grad=False),
                bias=nn.Parameter(torch.zeros([8]), requires_grad=False),
            ),
            "_buffers": OrderedDict(resample_filter=torch.ones([4, 4]) / 16),
            "_non_persistent_buffers_set": set(),
            "_modules": OrderedDict(),
            "_init_args": (3, 8),
            "_init_kwargs": {"kernel_size": 1},
            "activation": "lrelu",
        },
    )
    return Persistent(
        ns.reconstruct,
        "Discriminator",
        {
            "training": False,
            "_parameters": OrderedDict(),
            "_buffers": OrderedDict(),
            "_non_persistent_buffers_set": set(),
            "_modules": OrderedDict(b32=conv),
            "_init_args": (),
            "_init_kwargs": {"c_dim": 0, "img_resolution": 32, "img_channels": 3},
        },
    )


def _fake_augment_pipe(ns: types.SimpleNamespace) -> Persistent:
    return Persistent(
        ns.reconstruct,
        "AugmentPipe",
        {
            "training": False,
            "_parameters": OrderedDict(),
            "_buffers": OrderedDict(p=torch.zeros([])),
            "_non_persistent_buffers_set": set(),
            "_modules": OrderedDict(),
            "_init_args": (),
            "_init_kwargs": ns.EasyDict(xflip=1, rotate90=1),
            "xflip": 1.0,
            "rotate90": 1.0,
        },
    )


def perturbed_copy(G: StyleGAN2Generator, seed: int = 1) -> StyleGAN2Generator:
    """A copy of ``G`` with every float tensor nudged (plays the non-EMA ``G`` of a snapshot)."""
    G2 = StyleGAN2Generator(G.config)
    G2.load_state_dict(G.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in G2.state_dict().values():
            t.add_(0.5 * torch.randn(t.shape, generator=gen))
    return G2.eval().requires_grad_(False)


def nvidia_snapshot(G: StyleGAN2Generator, variant: str = "ada", module_src: str = MODULE_SRC) -> bytes:
    """The bytes of an NVIDIA training snapshot pickle whose ``G_ema`` holds ``G``'s weights."""
    if variant not in ("ada", "sg3"):
        raise ValueError(variant)
    protocol = 3 if variant == "ada" else 4
    return nvidia_snapshot_with(G, variant, protocol, module_src)


def nvidia_snapshot_with(
    G: StyleGAN2Generator,
    variant: str,
    protocol: int,
    module_src: str = MODULE_SRC,
    patch: Callable[[dict[str, Any], types.SimpleNamespace], None] | None = None,
) -> bytes:
    """Like :func:`nvidia_snapshot` with an explicit pickle protocol.

    ``patch(data, ns)`` may edit the snapshot dict (of :class:`Persistent` objects) before it is pickled; ``ns``
    has ``reconstruct`` and ``EasyDict`` for building more objects.
    """
    G_train = perturbed_copy(G)
    with nvidia_modules() as ns:
        data = {
            "G": _wrap(G_train, G_train, variant, ns, module_src),
            "D": _fake_discriminator(ns, seed=3),
            "G_ema": _wrap(G, G, variant, ns, module_src),
            "augment_pipe": _fake_augment_pipe(ns),
            "training_set_kwargs": ns.EasyDict(
                class_name="training.dataset.ImageFolderDataset",
                path="/data/tiny.zip",
                use_labels=False,
                max_size=100,
                xflip=False,
                resolution=G.img_resolution,
            ),
        }
        if patch is not None:
            patch(data, ns)
        return pickle.dumps(data, protocol=protocol)


def write_nvidia_pickle(G: StyleGAN2Generator, path: Path, variant: str = "ada") -> Path:
    """Write :func:`nvidia_snapshot` to ``path``."""
    path.write_bytes(nvidia_snapshot(G, variant))
    return path


# ---------------------------------------------------------------------------------------------------------------
# rosinality


def to_rosinality_state_dict(G: StyleGAN2Generator) -> dict[str, torch.Tensor]:
    """``G``'s weights under rosinality's ``Generator`` names and shapes (the inverse key map, longhand)."""
    cfg = G.config
    assert cfg.conv_clamp is None and cfg.architecture == "skip" and cfg.c_dim == 0 and cfg.z_dim == cfg.w_dim
    s = {k: v.detach().clone() for k, v in G.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = s[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = s[f"mapping.fc{i}.bias"]
    out["input.input"] = s["synthesis.b4.const"].unsqueeze(0)
    noises: list[torch.Tensor] = []

    def styled(dst: str, src: str, blur: bool) -> None:
        out[f"{dst}.conv.weight"] = s[f"{src}.weight"].unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = s[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = s[f"{src}.affine.bias"]
        if blur:
            out[f"{dst}.conv.blur.kernel"] = s[f"{src}.resample_filter"] * 4
        out[f"{dst}.noise.weight"] = s[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = s[f"{src}.bias"]
        noises.append(s[f"{src}.noise_const"].reshape(1, 1, *s[f"{src}.noise_const"].shape))

    def rgb(dst: str, src: str) -> None:
        out[f"{dst}.conv.weight"] = s[f"{src}.weight"].unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = s[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = s[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = s[f"{src}.bias"].reshape(1, -1, 1, 1)

    styled("conv1", "synthesis.b4.conv1", blur=False)
    rgb("to_rgb1", "synthesis.b4.torgb")
    for k, res in enumerate(cfg.block_resolutions[1:]):
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0", blur=True)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", blur=False)
        out[f"to_rgbs.{k}.upsample.kernel"] = s[f"synthesis.b{res}.resample_filter"] * 4
        rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
    for j, n in enumerate(noises):
        out[f"noises.noise_{j}"] = n
    return out


def write_rosinality(
    G: StyleGAN2Generator, path: Path, *, latent_avg: bool = True, with_args: bool = True, legacy: bool = False
) -> Path:
    """A rosinality ``train.py``-style checkpoint: ``{'g_ema', 'latent_avg', 'g', 'd', 'args'}``."""
    ckpt: dict[str, Any] = {"g_ema": to_rosinality_state_dict(G), "g": to_rosinality_state_dict(perturbed_copy(G))}
    ckpt["d"] = {"convs.0.0.weight": torch.randn(8, 3, 1, 1)}
    if latent_avg:
        ckpt["latent_avg"] = G.mapping.w_avg.detach().clone()
    if with_args:
        ckpt["args"] = argparse.Namespace(
            size=G.img_resolution,
            latent=G.w_dim,
            n_mlp=G.config.mapping_layers,
            channel_multiplier=2,
            path="/data/lmdb",
        )
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


# ---------------------------------------------------------------------------------------------------------------
# hand-made pickles


def raw_pickle(module: str, name: str, *args: str) -> bytes:
    """Protocol-2 bytes that call ``module.name(*args)`` (string args) — how an attacker names any global."""
    body = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"("
    for a in args:
        enc = a.encode()
        body += b"X" + len(enc).to_bytes(4, "little") + enc
    return body + b"tR."


def child(obj: Persistent, *names: str) -> Persistent:
    """The nested :class:`Persistent` at ``obj._modules[names[0]]._modules[names[1]]…``."""
    for name in names:
        obj = obj.meta["state"]["_modules"][name]
    return obj


# ---------------------------------------------------------------------------------------------------------------
# StyleGAN3 (stylegan3 repo layout) and StyleGAN-Human (ADA layout with ``square``)


def _sg3_attrs(m: nn.Module, G: Any) -> tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]:
    """(class name, _init_args, _init_kwargs, plain attributes) the stylegan3 repo's classes record."""
    import dragkit.nn.stylegan3 as sg3

    cfg = G.config
    if isinstance(m, sg2.FullyConnectedLayer):
        out_f, in_f = m.weight.shape
        lr = m.bias_gain
        attrs = {"in_features": in_f, "out_features": out_f, "activation": m.activation}
        attrs.update(weight_gain=lr / np.sqrt(in_f), bias_gain=lr)
        return "FullyConnectedLayer", (in_f, out_f), {"activation": m.activation, "lr_multiplier": lr}, attrs
    if isinstance(m, sg2.MappingNetwork):
        kw = {"z_dim": m.z_dim, "c_dim": m.c_dim, "w_dim": m.w_dim, "num_ws": m.num_ws, "num_layers": m.num_layers}
        return "MappingNetwork", (), kw, {**kw, "w_avg_beta": 0.998}
    if isinstance(m, sg3.SynthesisInput):
        kw = {"w_dim": cfg.w_dim, "channels": m.channels, "size": m.size}
        kw.update(sampling_rate=m.sampling_rate, bandwidth=m.bandwidth)
        attrs = {**kw, "size": np.array([m.size, m.size])}
        return "SynthesisInput", (), kw, attrs
    if isinstance(m, sg3.SynthesisLayer):
        s = m.spec
        kw = {
            "w_dim": cfg.w_dim,
            "is_torgb": s.is_torgb,
            "is_critically_sampled": s.is_critically_sampled,
            "use_fp16": False,
            "in_channels": s.in_channels,
            "out_channels": s.out_channels,
            "in_size": s.in_size,
            "out_size": s.out_size,
            "in_sampling_rate": s.in_sampling_rate,
            "out_sampling_rate": s.out_sampling_rate,
            "in_cutoff": np.float64(s.in_cutoff),
            "out_cutoff": np.float64(s.out_cutoff),
            "in_half_width": np.float64(s.in_half_width),
            "out_half_width": np.float64(s.out_half_width),
            "conv_kernel": cfg.conv_kernel,
            "use_radial_filters": cfg.use_radial_filters,
            "conv_clamp": cfg.conv_clamp,
            "magnitude_ema_beta": 0.999,
        }
        attrs = {**kw, "in_size": np.array([s.in_size] * 2), "out_size": np.array([s.out_size] * 2)}
        attrs.update(
            tmp_sampling_rate=s.tmp_sampling_rate,
            conv_kernel=s.conv_kernel,
            up_factor=s.up_factor,
            up_taps=s.up_taps,
            down_factor=s.down_factor,
            down_taps=s.down_taps,
            down_radial=s.down_radial,
            padding=list(s.padding),
        )
        del attrs["use_radial_filters"]
        return "SynthesisLayer", (), kw, attrs
    if isinstance(m, sg3.SynthesisNetwork):
        kw = {"w_dim": cfg.w_dim, "img_resolution": cfg.img_resolution, "img_channels": cfg.img_channels}
        kw.update(_sg3_synthesis_kwargs(cfg))
        attrs = {
            "w_dim": cfg.w_dim,
            "num_ws": G.num_ws,
            "img_resolution": cfg.img_resolution,
            "img_channels": cfg.img_channels,
            "num_layers": cfg.num_layers,
            "num_critical": cfg.num_critical,
            "margin_size": cfg.margin_size,
            "output_scale": cfg.output_scale,
            "num_fp16_res": cfg.num_fp16_res,
            "layer_names": list(m.layer_names),
        }
        return "SynthesisNetwork", (), kw, attrs
    raise TypeError(f"no stylegan3-repo counterpart for {type(m).__name__}")


def _sg3_synthesis_kwargs(cfg: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "channel_base": cfg.channel_base,
        "channel_max": cfg.channel_max,
        "magnitude_ema_beta": 0.999,
        "num_fp16_res": cfg.num_fp16_res,
    }
    if cfg.name == "R":
        kw.update(conv_kernel=1, use_radial_filters=True)
    return kw


def _wrap_sg3(m: nn.Module, G: Any, ns: types.SimpleNamespace) -> Persistent:
    state = _torch_state(m, "sg3")
    state["_modules"] = {name: _wrap_sg3(child, G, ns) for name, child in m._modules.items() if child is not None}
    if m is G:
        cfg = G.config
        kwargs = {
            "z_dim": cfg.z_dim,
            "c_dim": cfg.c_dim,
            "w_dim": cfg.w_dim,
            "img_resolution": cfg.img_resolution,
            "img_channels": cfg.img_channels,
            "mapping_kwargs": ns.EasyDict(num_layers=cfg.mapping_layers),
            **_sg3_synthesis_kwargs(cfg),
        }
        attrs = {k: kwargs[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
        attrs["num_ws"] = G.num_ws
        name, args = "Generator", ()
    else:
        name, args, kwargs, attrs = _sg3_attrs(m, G)
    state.update(attrs)
    state["_init_args"] = args
    state["_init_kwargs"] = kwargs
    return Persistent(ns.reconstruct, name, state, "# stylegan3 networks_stylegan3.py stand-in\n")


def stylegan3_snapshot(G: Any, patch: Callable[[dict[str, Any], types.SimpleNamespace], None] | None = None) -> bytes:
    """The bytes of a stylegan3-repo training snapshot whose ``G_ema`` holds the StyleGAN3 generator ``G``."""
    with nvidia_modules() as ns:
        data = {
            "G": _wrap_sg3(G, G, ns),
            "D": None,
            "G_ema": _wrap_sg3(G, G, ns),
            "augment_pipe": None,
            "training_set_kwargs": None,
        }
        if patch is not None:
            patch(data, ns)
        return pickle.dumps(data, protocol=4)


def human_snapshot(G: StyleGAN2Generator) -> bytes:
    """A StyleGAN-Human pickle: the ADA layout plus ``square`` (False) recorded on the generator."""
    assert not G.config.square

    def patch(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        for key in ("G", "G_ema"):
            st = data[key].meta["state"]
            st["square"] = False
            st["_init_kwargs"]["square"] = False

    return nvidia_snapshot_with(G, "ada", 3, patch=patch)


# ---------------------------------------------------------------------------------------------------------------
# TF-era StyleGAN2 (dnnlib.tflib.network.Network states)

_TF_MODULES = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")


@contextlib.contextmanager
def tf_network_class() -> Iterator[type]:
    """A throwaway ``dnnlib.tflib.network.Network`` that pickles as the TF classes did: global + BUILD state."""
    saved = {name: sys.modules.get(name) for name in _TF_MODULES}
    mods = {name: types.ModuleType(name) for name in _TF_MODULES}

    class Network:
        def __init__(self, state: dict[str, Any]) -> None:
            self.state = state

        def __getstate__(self) -> dict[str, Any]:
            return self.state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mods["dnnlib.tflib.network"].Network = Network  # type: ignore[attr-defined]
    sys.modules.update(mods)
    try:
        yield Network
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def to_tf_variables(G: StyleGAN2Generator) -> dict[str, dict[str, np.ndarray]]:
    """``G``'s weights as TF-era variables, per component ('' = Gs itself, 'mapping', 'synthesis'): the inverse of
    NVIDIA's legacy conversion, written out longhand (transposes, spatial flips, ``mod_bias − 1``, noise order)."""
    cfg = G.config
    s = {k: v.detach().numpy().astype(np.float32) for k, v in G.state_dict().items()}
    top = {"lod": np.float32(0.0), "dlatent_avg": s["mapping.w_avg"]}
    mapping: dict[str, np.ndarray] = {}
    if cfg.c_dim > 0:
        mapping["LabelEmbed/weight"] = s["mapping.embed.weight"].T.copy()
        mapping["LabelEmbed/bias"] = s["mapping.embed.bias"]
    for i in range(cfg.mapping_layers):
        mapping[f"Dense{i}/weight"] = s[f"mapping.fc{i}.weight"].T.copy()
        mapping[f"Dense{i}/bias"] = s[f"mapping.fc{i}.bias"]
    syn: dict[str, np.ndarray] = {"4x4/Const/const": s["synthesis.b4.const"][None]}

    def tf_conv(w: np.ndarray, flip: bool = False) -> np.ndarray:
        w = w.transpose(2, 3, 1, 0)  # [out, in, kh, kw] → [kh, kw, in, out]
        return (w[::-1, ::-1] if flip else w).copy()

    def layer(scope: str, src: str, noise: int, flip: bool) -> None:
        syn[f"{scope}/weight"] = tf_conv(s[f"{src}.weight"], flip)
        syn[f"{scope}/bias"] = s[f"{src}.bias"]
        syn[f"{scope}/mod_weight"] = s[f"{src}.affine.weight"].T.copy()
        syn[f"{scope}/mod_bias"] = s[f"{src}.affine.bias"] - 1
        syn[f"{scope}/noise_strength"] = s[f"{src}.noise_strength"]
        syn[f"noise{noise}"] = s[f"{src}.noise_const"][None, None]

    for res in cfg.block_resolutions:
        log2 = int(np.log2(res))
        if res == 4:
            layer("4x4/Conv", "synthesis.b4.conv1", 0, False)
        else:
            layer(f"{res}x{res}/Conv0_up", f"synthesis.b{res}.conv0", log2 * 2 - 5, True)
            layer(f"{res}x{res}/Conv1", f"synthesis.b{res}.conv1", log2 * 2 - 4, False)
            if cfg.architecture == "resnet":
                syn[f"{res}x{res}/Skip/weight"] = tf_conv(s[f"synthesis.b{res}.skip.weight"], True)
        if cfg.architecture == "skip" or res == cfg.img_resolution:
            syn[f"{res}x{res}/ToRGB/weight"] = tf_conv(s[f"synthesis.b{res}.torgb.weight"])
            syn[f"{res}x{res}/ToRGB/bias"] = s[f"synthesis.b{res}.torgb.bias"]
            syn[f"{res}x{res}/ToRGB/mod_weight"] = s[f"synthesis.b{res}.torgb.affine.weight"].T.copy()
            syn[f"{res}x{res}/ToRGB/mod_bias"] = s[f"synthesis.b{res}.torgb.affine.bias"] - 1
    return {"": top, "mapping": mapping, "synthesis": syn}


def tf_static_kwargs(G: StyleGAN2Generator) -> dict[str, Any]:
    """The ``static_kwargs`` a TF-era ``Gs`` of ``G``'s configuration records."""
    cfg = G.config
    kw: dict[str, Any] = {
        "latent_size": cfg.z_dim,
        "label_size": cfg.c_dim,
        "dlatent_size": cfg.w_dim,
        "resolution": cfg.img_resolution,
        "num_channels": cfg.img_channels,
        "mapping_layers": cfg.mapping_layers,
        "fmap_base": cfg.channel_base // 2,
        "fmap_max": cfg.channel_max,
        "architecture": cfg.architecture,
        "truncation_psi": 0.5,
    }
    return kw


def tf_snapshot(
    G: StyleGAN2Generator,
    patch: Callable[[dict[str, Any]], None] | None = None,
    build_module_src: str = "def G_main(): pass\n",
) -> bytes:
    """The bytes of a TF-era ``(G, D, Gs)`` pickle whose ``Gs`` holds ``G``'s weights (``G`` is a nudged copy,
    ``D`` an empty network). ``patch(gs_state)`` may edit Gs's state before pickling."""
    variables = to_tf_variables(G)

    def net(
        Network: type, name: str, func: str, kwargs: dict[str, Any], vars_: dict[str, np.ndarray], comps: Any
    ) -> Any:
        state = {
            "version": 4,
            "name": name,
            "static_kwargs": kwargs,
            "components": comps,
            "build_module_src": build_module_src,
            "build_func_name": func,
            "variables": list(vars_.items()),
        }
        return Network(state)

    with tf_network_class() as Network:
        kwargs = tf_static_kwargs(G)

        def full(scale: float) -> Any:
            vs = {c: {k: v * scale for k, v in d.items()} for c, d in variables.items()}
            comps = {
                "mapping": net(Network, "G_mapping", "G_mapping", kwargs, vs["mapping"], {}),
                "synthesis": net(Network, "G_synthesis", "G_synthesis_stylegan2", kwargs, vs["synthesis"], {}),
            }
            return net(Network, "G" if scale != 1 else "Gs", "G_main", kwargs, vs[""], comps)

        G_tf, Gs = full(1.01), full(1.0)
        D = net(Network, "D", "D_stylegan2", {"resolution": G.img_resolution}, {}, {})
        if patch is not None:
            patch(Gs.state)
        return pickle.dumps((G_tf, D, Gs), protocol=3)
