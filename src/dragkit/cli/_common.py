"""Argument helpers shared by the CLI commands."""

from __future__ import annotations

import argparse

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


def add_class_option(p: argparse.ArgumentParser) -> None:
    """``--class N`` (alias ``--class-idx``): the class label of a conditional model (read by :func:`class_label`)."""
    p.add_argument(
        "--class",
        "--class-idx",
        dest="class_idx",
        type=int,
        default=None,
        metavar="N",
        help="class label of a conditional model, in [0, c_dim) (dragkit inspect shows c_dim)",
    )


def class_label(G: Generator, class_idx: int | None, device: torch.device) -> torch.Tensor | None:
    """One-hot label [1, c_dim] for a conditional network (``--class``), None for an unconditional one."""
    from dragkit.nn.seeds import one_hot_label

    try:
        c = one_hot_label(G.c_dim, class_idx)
    except InvalidInputError as exc:
        raise InvalidInputError(f"--class: {exc}") from None
    return None if c is None else c.to(device)
