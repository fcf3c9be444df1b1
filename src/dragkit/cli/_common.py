"""Argument helpers shared by the CLI commands."""

from __future__ import annotations

import torch

from dragkit.errors import InvalidInputError
from dragkit.nn.protocol import Generator


def parse_device(text: str) -> torch.device:
    """``'cpu'``, ``'cuda'``, ``'cuda:1'``, ``'mps'`` → a usable torch.device, or InvalidInputError."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise InvalidInputError(f"invalid --device {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"--device {text}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidInputError(f"--device {text}: MPS is not available on this machine")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise InvalidInputError(f"--device {text!r}: not usable here ({str(exc).splitlines()[0]})") from None
    return device


def class_label(G: Generator, class_idx: int | None, device: torch.device) -> torch.Tensor | None:
    """One-hot label [1, c_dim] for a conditional network (``--class-idx``), None for an unconditional one."""
    if G.c_dim > 0:
        if class_idx is None or not 0 <= class_idx < G.c_dim:
            raise InvalidInputError(f"conditional network: --class-idx must be in [0, {G.c_dim - 1}]")
        c = torch.zeros([1, G.c_dim], device=device)
        c[0, class_idx] = 1
        return c
    if class_idx is not None:
        raise InvalidInputError("--class-idx given, but the network is unconditional")
    return None
