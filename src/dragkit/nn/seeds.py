"""Latent codes from integer seeds, NVIDIA's convention (so seed N gives the same image as NVIDIA's generate.py)."""

from __future__ import annotations

import numpy as np
import torch

from dragkit.errors import InvalidInputError

__all__ = ["MAX_SEED", "one_hot_label", "z_from_seed"]

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


def one_hot_label(c_dim: int, class_idx: int | None) -> torch.Tensor | None:
    """The label of a conditional model: float32 one-hot [1, c_dim] for ``class_idx`` in [0, c_dim); None for an
    unconditional model (``c_dim`` 0), which takes no class.

    Raises :class:`~dragkit.errors.InvalidInputError` for a missing or out-of-range class, or a class given to an
    unconditional model.
    """
    if c_dim > 0:
        valid = isinstance(class_idx, (int, np.integer)) and not isinstance(class_idx, bool)
        if not valid or not 0 <= int(class_idx) < c_dim:  # type: ignore[arg-type]
            raise InvalidInputError(
                f"this model is conditional on {c_dim} classes: the class must be in [0, {c_dim - 1}], "
                f"got {class_idx!r}"
            )
        c = torch.zeros([1, c_dim])
        c[0, int(class_idx)] = 1  # type: ignore[arg-type]
        return c
    if class_idx is not None:
        raise InvalidInputError(f"this model is unconditional: it takes no class (got {class_idx!r})")
    return None
