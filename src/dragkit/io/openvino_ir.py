"""Read OpenVINO IR (``.xml`` graph + ``.bin`` weights) and map MobileStyleGAN's IR onto our PyTorch module.

Only reads: nothing in an IR is executed. :class:`IRGraph` is a small, generic view of an IR v10/v11 file (layers,
edges, constants as numpy arrays); :func:`mobilestylegan_from_ir` walks the two graphs of the ``random-face`` wheel
(``MappingNetwork`` and ``SynthesisNetwork``) structurally — by op types and edges, never by layer names — and
returns a :class:`~dragkit.nn.mobilestylegan.MobileStyleGANConfig` and a state_dict for
:class:`~dragkit.nn.mobilestylegan.MobileStyleGANGenerator`. Every constant the module hard-codes (activation slope,
gains, epsilon, Haar filters) is checked against the IR, so a different export fails loudly instead of producing
wrong images.
"""

from __future__ import annotations

import heapq
import math
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import torch

from dragkit.errors import CheckpointError
from dragkit.nn.mobilestylegan import MobileStyleGANConfig, MobileStyleGANGenerator

_DTYPES: dict[str, type[np.generic]] = {
    "f32": np.float32,
    "f16": np.float16,
    "f64": np.float64,
    "i64": np.int64,
    "i32": np.int32,
    "i8": np.int8,
    "u8": np.uint8,
    "boolean": np.bool_,
}


@dataclass(frozen=True)
class IRLayer:
    """One ``<layer>`` of an IR file.

    ``attrs``: the ``<data>`` attributes as strings; ``out_shapes``: the static shape of each output port.
    """

    id: int
    name: str
    type: str
    attrs: dict[str, str] = field(hash=False)
    out_shapes: tuple[tuple[int, ...], ...]


class IRGraph:
    """A parsed IR: layers, edges and read-only access to constants.

    ``xml``: the graph text; ``weights``: the ``.bin`` bytes; ``source``: a name for error messages.
    """

    def __init__(self, xml: bytes, weights: bytes, source: str = "<memory>") -> None:
        self.source = source
        self._weights = weights
        if b"<!DOCTYPE" in xml[:4096] or b"<!ENTITY" in xml:
            raise CheckpointError(f"{source}: IR xml with a DOCTYPE/ENTITY declaration is refused")
        try:
            root = ElementTree.fromstring(xml)
        except ElementTree.ParseError as exc:
            raise CheckpointError(f"{source}: not a valid IR xml ({exc})") from exc
        if root.tag != "net":
            raise CheckpointError(f"{source}: root element is <{root.tag}>, expected <net>")
        self.name = root.get("name", "")
        self.version = int(root.get("version", "0"))
        layers_el, edges_el = root.find("layers"), root.find("edges")
        if layers_el is None or edges_el is None:
            raise CheckpointError(f"{source}: IR xml has no <layers> or <edges>")
        self.layers: dict[int, IRLayer] = {}
        for el in layers_el:
            data = el.find("data")
            out_el = el.find("output")
            shapes = tuple(
                tuple(int(d.text or 0) for d in port.findall("dim")) for port in (out_el if out_el is not None else [])
            )
            lid = int(el.get("id", "-1"))
            self.layers[lid] = IRLayer(
                id=lid,
                name=el.get("name", ""),
                type=el.get("type", ""),
                attrs=dict(data.attrib) if data is not None else {},
                out_shapes=shapes,
            )
        inputs: dict[int, dict[int, tuple[int, int]]] = defaultdict(dict)
        self._consumers: dict[int, list[int]] = defaultdict(list)
        for e in edges_el:
            src, src_port = int(e.get("from-layer", "-1")), int(e.get("from-port", "-1"))
            dst, dst_port = int(e.get("to-layer", "-1")), int(e.get("to-port", "-1"))
            if src not in self.layers or dst not in self.layers:
                raise CheckpointError(f"{source}: edge {src}→{dst} names a missing layer")
            inputs[dst][dst_port] = (src, src_port)
            self._consumers[src].append(dst)
        self._inputs = {lid: [ports[p] for p in sorted(ports)] for lid, ports in inputs.items()}

    @classmethod
    def from_files(cls, xml_path: str | Path, bin_path: str | Path | None = None) -> IRGraph:
        """Read ``NAME.xml`` and ``NAME.bin`` (default: beside the xml)."""
        xml_path = Path(xml_path)
        bin_path = xml_path.with_suffix(".bin") if bin_path is None else Path(bin_path)
        for p in (xml_path, bin_path):
            if not p.is_file():
                raise CheckpointError(f"IR file not found: {p}")
        return cls(xml_path.read_bytes(), bin_path.read_bytes(), source=str(xml_path))

    @classmethod
    def from_zip(cls, zip_path: str | Path, xml_member: str) -> IRGraph:
        """Read an IR pair stored inside a zip archive (e.g. a wheel): ``xml_member`` and its ``.bin`` sibling."""
        bin_member = xml_member[: -len(".xml")] + ".bin" if xml_member.endswith(".xml") else xml_member + ".bin"
        try:
            with zipfile.ZipFile(zip_path) as zf:
                xml, weights = zf.read(xml_member), zf.read(bin_member)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise CheckpointError(f"cannot read {xml_member} from {zip_path}: {exc}") from exc
        return cls(xml, weights, source=f"{zip_path}!{xml_member}")

    # -- navigation -----------------------------------------------------------------------------------------
    def inputs(self, layer: int | IRLayer) -> list[IRLayer]:
        """The producers of ``layer``'s inputs, in input-port order."""
        lid = layer if isinstance(layer, int) else layer.id
        return [self.layers[src] for src, _ in self._inputs.get(lid, [])]

    def consumers(self, layer: int | IRLayer) -> list[IRLayer]:
        """The layers reading any output of ``layer``."""
        lid = layer if isinstance(layer, int) else layer.id
        return [self.layers[d] for d in self._consumers.get(lid, [])]

    def of_type(self, op_type: str) -> list[IRLayer]:
        """Layers of one type in topological order."""
        return [layer for layer in self.topological() if layer.type == op_type]

    def op_counts(self) -> dict[str, int]:
        """How many layers of each type the graph has."""
        counts: dict[str, int] = defaultdict(int)
        for layer in self.layers.values():
            counts[layer.type] += 1
        return dict(counts)

    def topological(self) -> list[IRLayer]:
        """Every layer, producers before consumers (ties broken by id)."""
        if not hasattr(self, "_topo"):
            indeg = {lid: len(self._inputs.get(lid, [])) for lid in self.layers}
            ready = sorted(lid for lid, d in indeg.items() if d == 0)
            order: list[int] = []
            heapq.heapify(ready)
            while ready:
                lid = heapq.heappop(ready)
                order.append(lid)
                for d in self._consumers.get(lid, []):
                    indeg[d] -= 1
                    if indeg[d] == 0:
                        heapq.heappush(ready, d)
            if len(order) != len(self.layers):
                raise CheckpointError(f"{self.source}: the IR graph has a cycle")
            self._topo = [self.layers[lid] for lid in order]
        return list(self._topo)

    def const(self, layer: int | IRLayer) -> np.ndarray:
        """The value of a ``Const`` layer as a (copied) numpy array of its declared shape."""
        lay = self.layers[layer] if isinstance(layer, int) else layer
        if lay.type != "Const":
            raise CheckpointError(f"{self.source}: layer {lay.id} ({lay.name}) is {lay.type}, not Const")
        a = lay.attrs
        try:
            dtype = np.dtype(_DTYPES[a["element_type"]])
            offset, size = int(a["offset"]), int(a["size"])
            shape = tuple(int(s) for s in a.get("shape", "").split(",") if s.strip())
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{self.source}: Const {lay.id} has bad attributes {a}") from exc
        count = math.prod(shape)
        if size != count * dtype.itemsize or offset < 0 or offset + size > len(self._weights):
            raise CheckpointError(
                f"{self.source}: Const {lay.id} needs bytes [{offset}, {offset + size}) of a "
                f"{len(self._weights)}-byte .bin for shape {shape} {dtype} — truncated or mismatched weights"
            )
        return np.frombuffer(self._weights, dtype=dtype, count=count, offset=offset).reshape(shape).copy()


# ---------------------------------------------------------------------------------------------------------------
# MobileStyleGAN: IR → (config, state_dict)


def _fail(g: IRGraph, msg: str) -> CheckpointError:
    return CheckpointError(f"{g.source}: not the MobileStyleGAN export dragkit knows — {msg}")


def _check_close(g: IRGraph, what: str, got: float, expected: float, rtol: float = 1e-5) -> None:
    if not math.isclose(got, expected, rel_tol=rtol, abs_tol=1e-12):
        raise _fail(g, f"{what} is {got!r}, expected {expected!r}")


def _scalar(g: IRGraph, layer: IRLayer) -> float:
    v = g.const(layer)
    if v.size != 1:
        raise _fail(g, f"layer {layer.id} ({layer.name}) should be a scalar constant, has shape {v.shape}")
    return float(v.reshape(()))


def _const_through_reshape(g: IRGraph, layer: IRLayer) -> np.ndarray:
    """A Const, or a Reshape whose data input is a Const (the IR's way of storing biases) → its flat values."""
    if layer.type == "Reshape":
        layer = g.inputs(layer)[0]
    if layer.type != "Const":
        raise _fail(g, f"expected a constant (bias) input, found {layer.type} {layer.name}")
    return g.const(layer).reshape(-1)


def _only_consumer(g: IRGraph, layer: IRLayer, op_type: str) -> IRLayer:
    cons = [c for c in g.consumers(layer) if c.type not in ("ShapeOf",)]
    if len(cons) != 1 or cons[0].type != op_type:
        raise _fail(g, f"{layer.type} {layer.name} should feed one {op_type}, feeds {[c.type for c in cons]}")
    return cons[0]


def _other_input(g: IRGraph, layer: IRLayer, known: IRLayer) -> IRLayer:
    ins = g.inputs(layer)
    others = [x for x in ins if x.id != known.id]
    if len(ins) != 2 or len(others) != 1:
        raise _fail(g, f"{layer.type} {layer.name} should have two different inputs")
    return others[0]


@dataclass
class _Style:
    weight: np.ndarray  # [C, w_dim]
    bias: np.ndarray  # [C]
    gain: float  # scalar multiplied after the affine (1 if none)


def _trace_style(g: IRGraph, layer: IRLayer, style_param: IRLayer) -> _Style | None:
    """If ``layer`` computes ``gain · (style @ Wᵀ + b)`` (optionally reshaped to [1, C, 1, 1]), return it."""
    gain = 1.0
    if layer.type == "Multiply":
        ins = g.inputs(layer)
        consts = [x for x in ins if x.type == "Const"]
        if len(consts) != 1:
            return None
        gain = _scalar(g, consts[0])
        layer = _other_input(g, layer, consts[0])
    if layer.type == "Reshape":
        layer = g.inputs(layer)[0]
    if layer.type != "Add":
        return None
    ins = g.inputs(layer)
    mm = [x for x in ins if x.type == "MatMul"]
    if len(mm) != 1:
        return None
    bias = _const_through_reshape(g, _other_input(g, layer, mm[0]))
    mm_in = g.inputs(mm[0])
    if len(mm_in) != 2 or mm_in[0].id != style_param.id or mm_in[1].type != "Const":
        return None
    if mm[0].attrs.get("transpose_b") != "true" or mm[0].attrs.get("transpose_a", "false") != "false":
        raise _fail(g, f"style MatMul {mm[0].name} has unexpected transposes {mm[0].attrs}")
    weight = g.const(mm_in[1])
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise _fail(g, f"style affine {mm[0].name} has weight {weight.shape} and bias {bias.shape}")
    return _Style(weight=weight, bias=bias, gain=gain)


def _modulated_input(g: IRGraph, mul: IRLayer, style_param: IRLayer) -> tuple[_Style, IRLayer]:
    """``mul`` = modulation · data: return (the modulation's affine, the data producer)."""
    if mul.type != "Multiply":
        raise _fail(g, f"expected a modulation Multiply, found {mul.type} {mul.name}")
    ins = g.inputs(mul)
    for a, b in ((ins[0], ins[1]), (ins[1], ins[0])):
        st = _trace_style(g, a, style_param)
        if st is not None:
            return st, b
    raise _fail(g, f"Multiply {mul.name} is not modulated by a style affine")


def _post_conv(g: IRGraph, conv: IRLayer, channels: int, res: int) -> tuple[np.ndarray, np.ndarray, IRLayer]:
    """conv → Add(noise [1,1,r,r]) → Add(bias [1,C,1,1]) → PReLU(0.2): return (noise, bias, the PReLU layer)."""
    add_noise = _only_consumer(g, conv, "Add")
    noise = g.const(_other_input(g, add_noise, conv))
    if noise.shape != (1, 1, res, res):
        raise _fail(g, f"noise after {conv.name} has shape {noise.shape}, expected (1, 1, {res}, {res})")
    add_bias = _only_consumer(g, add_noise, "Add")
    bias = g.const(_other_input(g, add_bias, add_noise))
    if bias.shape != (1, channels, 1, 1):
        raise _fail(g, f"bias after {conv.name} has shape {bias.shape}, expected (1, {channels}, 1, 1)")
    act = _only_consumer(g, add_bias, "PReLU")
    slope = g.const(g.inputs(act)[1]).reshape(-1)
    if slope.shape != (1,):
        raise _fail(g, f"PReLU {act.name} has per-channel slopes; expected one leaky-ReLU slope")
    _check_close(g, f"slope of {act.name}", float(slope[0]), 0.2)
    return noise.reshape(res, res), bias.reshape(-1), act


def _check_conv_attrs(g: IRGraph, conv: IRLayer, pad: int) -> None:
    a = conv.attrs
    want = {"strides": "1, 1", "dilations": "1, 1", "pads_begin": f"{pad}, {pad}", "pads_end": f"{pad}, {pad}"}
    for k, v in want.items():
        if a.get(k, "").replace(" ", "") != v.replace(" ", ""):
            raise _fail(g, f"{conv.type} {conv.name} has {k}={a.get(k)!r}, expected {v!r}")


def _put_style(sd: dict[str, torch.Tensor], prefix: str, st: _Style) -> None:
    sd[f"{prefix}.affine.weight"] = torch.from_numpy(st.weight.astype(np.float32))
    sd[f"{prefix}.affine.bias"] = torch.from_numpy(st.bias.astype(np.float32))


def _check_haar(g: IRGraph, n_transforms: int) -> None:
    """Every transposed convolution must be a db1 synthesis filter: (1/√2)·[1, 1] or (1/√2)·[1, −1]."""
    layers = g.of_type("GroupConvolutionBackpropData")
    if len(layers) != 6 * n_transforms:
        raise _fail(g, f"{len(layers)} transposed convolutions, expected {6 * n_transforms} (6 per inverse DWT)")
    s = 1.0 / math.sqrt(2.0)
    for layer in layers:
        k = g.const(g.inputs(layer)[1]).reshape(-1, 2)
        ok = np.allclose(k, [s, s], atol=1e-7) or np.allclose(k, [s, -s], atol=1e-7)
        if not ok:
            raise _fail(g, f"{layer.name} is not a Haar synthesis filter")


def _mapping_from_ir(g: IRGraph) -> tuple[dict[str, torch.Tensor], int, int, int]:
    """MappingNetwork IR → ({mapping.fc{i}.*}, z_dim, w_dim, n_layers)."""
    params = g.of_type("Parameter")
    if len(params) != 1 or len(params[0].out_shapes[0]) != 2:
        raise _fail(g, "the mapping graph should have one [N, z_dim] input")
    z_dim = params[0].out_shapes[0][1]
    # 2nd-moment normalisation: x · (mean(x²) + eps)^(-1/2).
    powers = sorted(_scalar(g, g.inputs(p)[1]) for p in g.of_type("Power"))
    if powers != [-1.0, 0.5, 2.0] or len(g.of_type("ReduceMean")) != 1:
        raise _fail(g, f"input normalisation has powers {powers}")
    add_eps = _only_consumer(g, g.of_type("ReduceMean")[0], "Add")
    eps = [x for x in g.inputs(add_eps) if x.type == "Const"]
    _check_close(g, "normalisation epsilon", _scalar(g, eps[0]) if eps else -1.0, 1e-8)
    sd: dict[str, torch.Tensor] = {}
    matmuls = g.of_type("MatMul")
    w_dim = 0
    for i, mm in enumerate(matmuls):
        weight = g.const(g.inputs(mm)[1])
        add = _only_consumer(g, mm, "Add")
        bias = _const_through_reshape(g, _other_input(g, add, mm))
        act = _only_consumer(g, add, "PReLU")
        _check_close(g, f"slope of {act.name}", float(g.const(g.inputs(act)[1]).reshape(-1)[0]), 0.2)
        gain_mul = _only_consumer(g, act, "Multiply")
        _check_close(g, f"gain of {gain_mul.name}", _scalar(g, _other_input(g, gain_mul, act)), math.sqrt(2.0))
        sd[f"mapping.fc{i}.weight"] = torch.from_numpy(weight.astype(np.float32))
        sd[f"mapping.fc{i}.bias"] = torch.from_numpy(bias.astype(np.float32))
        w_dim = weight.shape[0]
    if not matmuls:
        raise _fail(g, "the mapping graph has no MatMul")
    return sd, z_dim, w_dim, len(matmuls)


def _synthesis_from_ir(g: IRGraph) -> tuple[dict[str, torch.Tensor], list[int], int, int]:
    """SynthesisNetwork IR → ({synthesis.*}, channels per level, w_dim, img_channels)."""
    params = g.of_type("Parameter")
    if len(params) != 1:
        raise _fail(g, "the synthesis graph should have one style input")
    style = params[0]
    w_dim = style.out_shapes[0][1]
    # The trunk in forward order: convolutions and the channel splits that start each inverse DWT.
    trunk = [
        layer
        for layer in g.topological()
        if layer.type in ("Convolution", "GroupConvolution")
        or (layer.type == "VariadicSplit" and g.inputs(layer)[0].type == "Multiply")
        or _is_final_split(g, layer)
    ]
    sd: dict[str, torch.Tensor] = {}
    channels: list[int] = []
    it = iter(trunk)

    def take(op_type: str) -> IRLayer:
        layer = next(it, None)
        if layer is None or layer.type != op_type:
            got = "end of graph" if layer is None else f"{layer.type} {layer.name}"
            raise _fail(g, f"expected {op_type} next in the trunk, found {got}")
        return layer

    # b4: const → modulated dense 3×3.
    conv = take("Convolution")
    _check_conv_attrs(g, conv, 1)
    st, data = _modulated_input(g, g.inputs(conv)[0], style)
    while data.type in ("Tile", "Broadcast"):
        data = g.inputs(data)[0]
    const = g.const(data)
    weight = g.const(g.inputs(conv)[1])
    c_out, c_in = weight.shape[:2]
    if const.shape != (1, c_in, 4, 4) or weight.shape[2:] != (3, 3):
        raise _fail(g, f"b4 has const {const.shape} and weight {weight.shape}")
    _check_close(g, "b4 style gain", st.gain, 1.0 / math.sqrt(c_in * 9))
    noise, bias, act = _post_conv(g, conv, c_out, 4)
    sd["synthesis.b4.const"] = torch.from_numpy(const)
    _put_style(sd, "synthesis.b4.conv", st)
    sd["synthesis.b4.conv.weight"] = torch.from_numpy(weight)
    sd["synthesis.b4.conv.noise_const"] = torch.from_numpy(noise)
    sd["synthesis.b4.conv.bias"] = torch.from_numpy(bias)
    channels.append(c_out)
    prev, res = act, 4

    while True:
        layer = next(it, None)
        if layer is None:
            raise _fail(g, "the trunk ends before the final to_img convolution")
        if layer.type == "Convolution":  # to_img
            break
        if layer.type != "VariadicSplit":
            raise _fail(g, f"expected an inverse-DWT split, found {layer.type} {layer.name}")
        res *= 2
        prefix = f"synthesis.b{res}"
        st, data = _modulated_input(g, g.inputs(layer)[0], style)
        if data.id != prev.id:
            raise _fail(g, f"up-modulation at {res}² does not read the previous level")
        _check_close(g, f"{prefix}.up style gain", st.gain, 1.0)
        lengths = g.const(g.inputs(layer)[2]).reshape(-1).tolist()
        c4 = channels[-1]
        if lengths != [c4 // 4, 3 * c4 // 4]:
            raise _fail(g, f"inverse-DWT split at {res}² is {lengths}, expected [{c4 // 4}, {3 * c4 // 4}]")
        _put_style(sd, f"{prefix}.up", st)
        for name in ("conv0", "conv1"):
            dw = take("GroupConvolution")
            _check_conv_attrs(g, dw, 1)
            st, _ = _modulated_input(g, g.inputs(dw)[0], style)
            w_dw = g.const(g.inputs(dw)[1])
            c_in = w_dw.shape[0]
            if w_dw.shape != (c_in, 1, 1, 3, 3):
                raise _fail(g, f"depthwise kernel {dw.name} has shape {w_dw.shape}")
            _check_close(g, f"{prefix}.{name} style gain", st.gain, 1.0 / math.sqrt(c_in * 9))
            pw = take("Convolution")
            _check_conv_attrs(g, pw, 0)
            if g.inputs(pw)[0].id != dw.id:
                raise _fail(g, f"{pw.name} does not read {dw.name}")
            w_pw = g.const(g.inputs(pw)[1])
            c_out = w_pw.shape[0]
            if w_pw.shape != (c_out, c_in, 1, 1):
                raise _fail(g, f"pointwise kernel {pw.name} has shape {w_pw.shape}")
            noise, bias, act = _post_conv(g, pw, c_out, res)
            _put_style(sd, f"{prefix}.{name}", st)
            sd[f"{prefix}.{name}.weight_dw"] = torch.from_numpy(w_dw.reshape(c_in, 1, 3, 3))
            sd[f"{prefix}.{name}.weight_pw"] = torch.from_numpy(w_pw)
            sd[f"{prefix}.{name}.noise_const"] = torch.from_numpy(noise)
            sd[f"{prefix}.{name}.bias"] = torch.from_numpy(bias)
            prev = act
        channels.append(c_out)

    # to_img: modulated 1×1 (no demodulation) + bias → final inverse DWT → output.
    _check_conv_attrs(g, layer, 0)
    st, data = _modulated_input(g, g.inputs(layer)[0], style)
    if data.id != prev.id:
        raise _fail(g, "to_img does not read the last level")
    weight = g.const(g.inputs(layer)[1])
    c_img4, c_in = weight.shape[:2]
    _check_close(g, "to_img style gain", st.gain, 1.0 / math.sqrt(c_in))
    add = _only_consumer(g, layer, "Add")
    bias = g.const(_other_input(g, add, layer))
    if bias.shape != (1, c_img4, 1, 1) or c_img4 % 4:
        raise _fail(g, f"to_img bias {bias.shape}")
    _put_style(sd, "synthesis.to_img", st)
    sd["synthesis.to_img.weight"] = torch.from_numpy(weight)
    sd["synthesis.to_img.bias"] = torch.from_numpy(bias.reshape(-1))
    final = next(it, None)
    if final is None or final.type != "VariadicSplit" or next(it, None) is not None:
        raise _fail(g, "the graph should end with one inverse DWT after to_img")
    _check_haar(g, n_transforms=len(channels))
    n_affines = len(g.of_type("MatMul"))
    if n_affines != 2 + 3 * (len(channels) - 1):
        raise _fail(g, f"{n_affines} style affines, expected {2 + 3 * (len(channels) - 1)}")
    return sd, channels, w_dim, c_img4 // 4


def _is_final_split(g: IRGraph, layer: IRLayer) -> bool:
    if layer.type != "VariadicSplit":
        return False
    src = g.inputs(layer)[0]
    return src.type == "Add" and any(x.type == "Convolution" for x in g.inputs(src))


def mobilestylegan_from_ir(
    mapping: IRGraph, synthesis: IRGraph
) -> tuple[MobileStyleGANConfig, dict[str, torch.Tensor]]:
    """Map the ``random-face`` IR pair onto :class:`MobileStyleGANGenerator`.

    Returns (config, state_dict) with every parameter and buffer except ``mapping.w_avg`` (zeros: the IR has no
    truncation centre; compute one with :func:`dragkit.nn.mobilestylegan.compute_w_avg`). Raises
    :class:`CheckpointError` naming the IR file if the graph is not the expected MobileStyleGAN export.
    """
    sd_map, z_dim, w_dim_map, n_layers = _mapping_from_ir(mapping)
    sd_syn, channels, w_dim, img_channels = _synthesis_from_ir(synthesis)
    if w_dim_map != w_dim:
        raise _fail(synthesis, f"style size {w_dim} differs from the mapping output {w_dim_map}")
    cfg = MobileStyleGANConfig(
        z_dim=z_dim, w_dim=w_dim, mapping_layers=n_layers, channels=tuple(channels), img_channels=img_channels
    )
    sd = {**sd_map, **sd_syn, "mapping.w_avg": torch.zeros(w_dim)}
    expected = MobileStyleGANGenerator(cfg).state_dict()
    _check_state_dict(sd, expected, synthesis.source)
    return cfg, sd


def _check_state_dict(sd: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str) -> None:
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{source}: IR mapping is incomplete (missing {missing[:5]}, unexpected {extra[:5]})")
    for k, v in expected.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}")


def op_types(graphs: Iterable[IRGraph]) -> dict[str, int]:
    """Op-type histogram over several graphs (for ``dragkit inspect`` and docs)."""
    total: dict[str, int] = defaultdict(int)
    for g in graphs:
        for k, v in g.op_counts().items():
            total[k] += v
    return dict(total)
