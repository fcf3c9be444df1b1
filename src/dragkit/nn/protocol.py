"""The generator protocol the drag engine depends on (docs/architecture.md §2).

Every network family (StyleGAN2, the MobileStyleGAN default model, later StyleGAN3) implements it; the engine
imports nothing else from ``dragkit.nn``.

Conventions: images are float32 NCHW RGB in [-1, 1]; latents in W+ are ``[N, num_ws, w_dim]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

#: W+ latents: one tensor [N, num_ws, w_dim], or a sequence of num_ws tensors [N, w_dim] (one per layer). The
#: per-layer form lets the caller leave rows that need no gradient out of autograd entirely.
WsLike = torch.Tensor | Sequence[torch.Tensor]


@dataclass(frozen=True)
class FeatureLevel:
    """One place where the synthesis network can be tapped for features.

    ``index`` is what ``synthesize(feature_block=...)`` takes; ``channels`` and ``resolution`` describe the
    ``[N, channels, resolution, resolution]`` map it returns (``resolution`` is the height; width may differ for
    non-square models, see ``shape``).
    """

    index: int
    channels: int
    resolution: int
    name: str


@dataclass(frozen=True)
class DragHints:
    """Per-model defaults for the drag engine, used where ``DragConfig`` leaves a field as ``None``.

    ``feature_block``: FeatureLevel index whose output the motion loss and tracking use.
    ``optimize_ws``: indices into W+ that are optimised (the rest stay at w0).
    ``lr``: Adam learning rate.
    """

    feature_block: int
    optimize_ws: tuple[int, ...]
    lr: float = 2e-3


@dataclass
class SynthesisResult:
    """What :meth:`Generator.synthesize` returns.

    image: [N, 3, H, W] float32 in about [-1, 1], or ``None`` when ``stop_after_features=True``.
    features: [N, C, h, w] float32, the output of the requested feature block (differentiable w.r.t. ``ws``).
    state: opaque resume state; pass it to :meth:`Generator.resume` with the same ``ws`` to finish the image.
    """

    image: torch.Tensor | None
    features: torch.Tensor
    state: Any


@runtime_checkable
class Generator(Protocol):
    """Structural type of every generator dragkit can drag.

    Attributes: ``z_dim``, ``c_dim``, ``w_dim``, ``num_ws``, ``img_resolution`` (height, pixels), ``img_channels``,
    ``w_avg`` ([w_dim] float32 tensor, the truncation centre).
    """

    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int

    @property
    def w_avg(self) -> torch.Tensor: ...

    def mapping(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """z: [N, z_dim] → ws: [N, num_ws, w_dim]; truncation ``w_avg.lerp(w, psi)``."""
        ...

    def synthesize(
        self,
        ws: WsLike,
        feature_block: int,
        stop_after_features: bool = False,
        noise_mode: str = "const",
    ) -> SynthesisResult:
        """ws (see ``WsLike``) → image (or None), features of ``feature_block``, resume state."""
        ...

    def resume(self, state: Any, ws: WsLike, noise_mode: str = "const") -> torch.Tensor:
        """Finish the image from a resume state, with no gradient: → [N, 3, H, W] in [-1, 1]."""
        ...

    def feature_levels(self) -> list[FeatureLevel]:
        """Every level ``synthesize`` can stop at, in forward order."""
        ...

    def drag_hints(self) -> DragHints:
        """This model's default feature level, optimised ws and learning rate."""
        ...

    @property
    def img_shape(self) -> tuple[int, int]:
        """(H, W) of generated images in pixels."""
        ...


def split_ws(ws: WsLike, num_ws: int, w_dim: int) -> list[torch.Tensor]:
    """Validate W+ latents and return them per layer: num_ws tensors [N, w_dim].

    ws: [N, num_ws, w_dim], or a sequence of num_ws tensors [N, w_dim] (returned as a list, unchanged).
    Raises :class:`~dragkit.errors.InvalidInputError` (a ValueError) naming the expected and the actual shapes.
    """
    from dragkit.errors import InvalidInputError

    if isinstance(ws, torch.Tensor):
        if ws.ndim != 3 or ws.shape[1:] != (num_ws, w_dim):
            raise InvalidInputError(f"ws must be [N, {num_ws}, {w_dim}], got {list(ws.shape)}")
        return list(ws.unbind(1))
    layers = list(ws)
    shapes = {tuple(w.shape) for w in layers}
    if len(layers) != num_ws or len(shapes) != 1 or any(len(s) != 2 or s[1] != w_dim for s in shapes):
        raise InvalidInputError(
            f"ws must be {num_ws} tensors of shape [N, {w_dim}], got {[list(w.shape) for w in layers]}"
        )
    return layers


#: Noise modes every generator accepts: the stored per-layer noise, fresh random noise, or none.
NOISE_MODES = ("const", "random", "none")


def check_noise_mode(noise_mode: str) -> None:
    """Raise :class:`~dragkit.errors.InvalidInputError` (a ValueError) unless ``noise_mode`` is in NOISE_MODES."""
    from dragkit.errors import InvalidInputError

    if noise_mode not in NOISE_MODES:
        raise InvalidInputError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
