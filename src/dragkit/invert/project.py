"""Projection of an image into a generator's latent space (W, then W+) and pivotal tuning (PTI).

- :func:`project` — NVIDIA's projector shape: start from ``w_avg``; Adam (betas 0.9, 0.999) with a learning rate
  that ramps up over the first 5 % of the steps and down (cosine) over the last 25 %; Gaussian noise on w, scaled
  by the spread of W and decaying to zero over the first 75 % of the steps; noise inputs kept const. First one w
  shared by every layer (W), then every layer's own w from there (W+), with a smaller learning rate and no noise.
- :func:`pivotal_tuning` — Roich et al. 2021: the latent stays at the W+ pivot and a copy of the generator's
  weights is tuned so the pivot reproduces the photo; a locality regulariser keeps the tuned generator equal to
  the original at a latent drawn, every step, at distance α along a random direction from the pivot (towards a
  random w), so nearby latents — the ones a drag visits — stay on the manifold.

The loss is ``config.loss`` (:func:`dragkit.invert.losses.loss_function`: the offline Laplacian-pyramid L1 +
MS-SSIM, or LPIPS-VGG with the user's weights) plus an L2 term in PTI, as PTI's own loss is L2 + LPIPS. Every
function reports progress through a callback ``progress(stage, step, steps, loss, image_or_None)`` and honours a
``should_stop()`` callback between steps.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dragkit.errors import InvalidInputError
from dragkit.invert.losses import loss_function, resolve_loss
from dragkit.nn.protocol import Generator

__all__ = ["InvertConfig", "Progress", "lr_at", "pivotal_tuning", "project", "synthesize_image"]

#: progress(stage, step, steps, loss, image [1, 3, H, W] in [-1, 1] or None)
Progress = Callable[[str, int, int, float, torch.Tensor | None], None]


@dataclass(frozen=True)
class InvertConfig:
    """Step counts and rates of the three stages (defaults budgeted for ≤ 5 minutes of CPU on the default model).

    ``preview_every``: how often (steps) a progress call carries the current image. ``loss``: "auto", "lap1+msssim"
    or "lpips" (:func:`dragkit.invert.losses.resolve_loss`); ``vgg16``: the path of LPIPS's VGG16 weights (None: the
    cached copy).
    """

    steps_w: int = 60
    steps_wplus: int = 60
    steps_pti: int = 40
    lr_w: float = 0.1
    lr_wplus: float = 0.01
    lr_pti: float = 3e-4
    w_noise: float = 0.05  # initial noise on w, in units of W's spread
    w_avg_samples: int = 2000  # samples of the mapping for W's spread
    pti_l2: float = 1.0  # weight of the L2 term in PTI's loss
    locality_alpha: float = 30.0  # distance of the locality latent from the pivot
    locality_weight: float = 0.1  # weight of the locality terms
    locality_every: int = 2  # apply the locality regulariser every this many PTI steps (PTI's interval)
    side_pti: int = 512  # PTI's distance runs on images downsampled to at most this many pixels (projection: 256)
    seed: int = 0  # the noise on w and the locality latents
    preview_every: int = 10
    loss: str = "auto"
    vgg16: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "steps_w",
            "steps_wplus",
            "steps_pti",
            "w_avg_samples",
            "preview_every",
            "locality_every",
            "side_pti",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name != "steps_pti" else 0):
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr_w", "lr_wplus", "lr_pti", "w_noise", "pti_l2", "locality_alpha", "locality_weight"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidInputError(f"{name} must be a finite number ≥ 0, got {value!r}")
        resolve_loss(self.loss, self.vgg16)  # an unknown name is refused here


def lr_at(t: float, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The projector's learning rate at progress ``t`` in [0, 1]: linear ramp-up, cosine ramp-down."""
    down = min(1.0, (1.0 - t) / rampdown)
    down = 0.5 - 0.5 * math.cos(down * math.pi)
    return lr * down * min(1.0, t / rampup)


def synthesize_image(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    """The full image of ``ws`` [N, num_ws, w_dim] → [N, 3, H, W] (differentiable, const noise)."""
    last = len(G.feature_levels()) - 1
    img = G.synthesize(ws, feature_block=last).image
    assert img is not None
    return img


def _check_target(G: Generator, target: torch.Tensor) -> None:
    h, w = G.img_shape
    if target.shape != (1, 3, h, w) or not target.is_floating_point():
        raise InvalidInputError(f"target must be a float image [1, 3, {h}, {w}] in [-1, 1], got {list(target.shape)}")


def _random_ws(G: Generator, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random latents [n, num_ws, w_dim] (ψ = 1; a random class each for conditional models), no grad."""
    z = torch.randn([n, G.z_dim], generator=gen).to(G.w_avg.device)
    c = None
    if G.c_dim:
        c = torch.zeros([n, G.c_dim], device=z.device)
        c[torch.arange(n), torch.randint(G.c_dim, [n], generator=gen)] = 1
    with torch.no_grad():
        return G.mapping(z, c)


def _w_stats(G: Generator, samples: int, seed: int) -> tuple[torch.Tensor, float]:
    w = _random_ws(G, samples, torch.Generator().manual_seed(seed))[:, 0]
    avg = w.mean(0, keepdim=True)
    std = float(((w - avg).square().sum() / samples) ** 0.5)
    return avg, std


def project(
    G: Generator,
    target: torch.Tensor,
    config: InvertConfig | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ``target`` [1, 3, H, W] (float, [-1, 1]) into ``G``: returns (ws after W, ws after W+), each
    [1, num_ws, w_dim], detached. Stages are reported as "w" and "w+"."""
    config = config or InvertConfig()
    _check_target(G, target)
    gen = torch.Generator().manual_seed(config.seed)
    w_avg, w_std = _w_stats(G, config.w_avg_samples, config.seed)
    num_ws = G.num_ws
    distance = loss_function(config.loss, config.vgg16)

    w = w_avg.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], betas=(0.9, 0.999), lr=config.lr_w)
    for step in range(config.steps_w):
        if should_stop is not None and should_stop():
            break
        t = step / config.steps_w
        for group in opt.param_groups:
            group["lr"] = lr_at(t, config.lr_w)
        noise_scale = w_std * config.w_noise * max(0.0, 1.0 - t / 0.75) ** 2
        noise = torch.randn(w.shape, generator=gen).to(w.device) * noise_scale
        img = synthesize_image(G, (w + noise).unsqueeze(1).repeat(1, num_ws, 1))
        loss = distance(img, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _report(progress, "w", step, config, float(loss.detach()), img)
    ws_w = w.detach().unsqueeze(1).repeat(1, num_ws, 1)

    ws = ws_w.clone().requires_grad_(True)
    opt = torch.optim.Adam([ws], betas=(0.9, 0.999), lr=config.lr_wplus)
    for step in range(config.steps_wplus):
        if should_stop is not None and should_stop():
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step / config.steps_wplus, config.lr_wplus)
        img = synthesize_image(G, ws)
        loss = distance(img, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _report(progress, "w+", step, config, float(loss.detach()), img)
    return ws_w, ws.detach()


def _report(
    progress: Progress | None, stage: str, step: int, config: InvertConfig, loss: float, img: torch.Tensor
) -> None:
    if progress is None:
        return
    steps = {"w": config.steps_w, "w+": config.steps_wplus, "pti": config.steps_pti}[stage]
    last = step == steps - 1
    preview = img.detach() if (step % config.preview_every == 0 or last) else None
    progress(stage, step + 1, steps, loss, preview)


def pivotal_tuning(
    G: Generator,
    pivot: torch.Tensor,
    target: torch.Tensor,
    config: InvertConfig | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Generator:
    """A copy of ``G`` whose weights are tuned so that ``pivot`` [1, num_ws, w_dim] reproduces ``target``; ``G``
    itself is not changed. Loss: ``pti_l2``·L2 + reconstruction loss at the pivot, plus ``locality_weight``·(L2 +
    reconstruction loss) between the tuned and the original generator at a latent ``locality_alpha`` from the
    pivot towards a random w (a new one each time), every ``locality_every`` steps. Stage "pti"."""
    config = config or InvertConfig()
    _check_target(G, target)
    if not isinstance(G, nn.Module):
        raise InvalidInputError("pivotal tuning needs a torch generator")
    tuned = copy.deepcopy(G)
    params = [p for p in tuned.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    tuned.train(False)
    distance = loss_function(config.loss, config.vgg16, config.side_pti)
    gen = torch.Generator().manual_seed(config.seed + 1)
    pivot = pivot.detach()
    opt = torch.optim.Adam(params, betas=(0.9, 0.999), lr=config.lr_pti)
    for step in range(config.steps_pti):
        if should_stop is not None and should_stop():
            break
        img = synthesize_image(tuned, pivot)
        loss = config.pti_l2 * (img - target).square().mean() + distance(img, target)
        if config.locality_weight > 0 and step % config.locality_every == 0:
            w_rand = _random_ws(G, 1, gen)
            with torch.no_grad():
                direction = w_rand - pivot
                w_near = pivot + config.locality_alpha * direction / direction.norm(dim=-1, keepdim=True)
                ref = synthesize_image(G, w_near)
            near = synthesize_image(tuned, w_near)
            loss = loss + config.locality_weight * ((near - ref).square().mean() + distance(near, ref))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _report(progress, "pti", step, config, float(loss.detach()), img)
    for p in params:
        p.requires_grad_(False)
        p.grad = None
    return tuned
