"""Exception types shared by every layer.

Every error a user can cause (a bad file, a bad point, an unknown model) derives from :class:`DragkitError`; the CLI
prints its message on one line and exits with status 2, the studio turns it into a 4xx reply.
"""

from __future__ import annotations


class DragkitError(Exception):
    """Base class for errors caused by user input (files, arguments, points).

    Its text is always one line (the message's whitespace runs, newlines included, become single spaces), whatever
    value it quotes: the CLI and the studio show it as it is.
    """

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


class CheckpointError(DragkitError):
    """A checkpoint file is missing, truncated, corrupt, of an unknown format, or does not fit the network."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle names a global outside the allow-list; nothing from the file was executed."""


class ModelNotFoundError(DragkitError):
    """A model name is neither a registered model nor an existing file."""


class InvalidInputError(DragkitError, ValueError):
    """Points, masks, latents or options that are out of range, NaN, or inconsistent."""
