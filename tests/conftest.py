"""Shared fixtures: tiny, seeded StyleGAN2 generators on CPU; the benchmark scripts as modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from dragkit.nn.stylegan2 import StyleGAN2Config, StyleGAN2Generator

TINY_CONFIG = StyleGAN2Config(
    z_dim=16,
    w_dim=16,
    img_resolution=32,
    mapping_layers=2,
    channel_base=256,
    channel_max=16,
    conv_clamp=256,
)


def make_tiny_generator(seed: int = 0, config: StyleGAN2Config = TINY_CONFIG) -> StyleGAN2Generator:
    """A random-init generator with non-trivial noise strengths, biases and w_avg (all seeded)."""
    torch.manual_seed(seed)
    G = StyleGAN2Generator(config)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
        G.mapping.w_avg.copy_(0.1 * torch.randn(config.w_dim))
    return G.eval().requires_grad_(False)


@pytest.fixture
def tiny_g() -> StyleGAN2Generator:
    """A 32×32 StyleGAN2 (w_dim 16, 9… channels ≤ 16), seeded; fresh per test."""
    return make_tiny_generator()


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as the module ``bench_<name>`` (benchmarks are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module
    spec.loader.exec_module(module)
    return module
