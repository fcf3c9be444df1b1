"""Latent codes from integer seeds, NVIDIA's convention (so seed N gives the same image as NVIDIA's generate.py)."""

from __future__ import annotations

import numpy as np
import torch

from dragkit.errors import InvalidInputError

__all__ = ["MAX_SEED", "z_from_seed"]

MAX_SEED = 2**32 - 1  # numpy RandomState accepts seeds in [0, 2**32 - 1]


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """``np.random.RandomState(seed).randn(1, z_dim)`` as a float32 tensor [1, z_dim] on the CPU.

    Raises :class:`~dragkit.errors.InvalidInputError` for a seed outside [0, 2**32 - 1] or ``z_dim`` < 1.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise InvalidInputError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    if isinstance(z_dim, bool) or not isinstance(z_dim, (int, np.integer)) or int(z_dim) < 1:
        raise InvalidInputError(f"z_dim must be a positive integer, got {z_dim!r}")
    z = np.random.RandomState(int(seed)).randn(1, int(z_dim))
    return torch.from_numpy(z).to(torch.float32)
