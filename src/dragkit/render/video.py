"""Frame sequences → video files: ``.mp4`` (H.264 through imageio-ffmpeg's bundled ffmpeg) or ``.gif`` (Pillow)."""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image

from dragkit.errors import DragkitError, InvalidInputError
from dragkit.files import atomic_path

__all__ = ["VIDEO_SUFFIXES", "VideoWriter", "write_video"]

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".gif")


class VideoWriter:
    """Streaming writer: ``append(frame)`` uint8 [H, W, 3] frames of one size, then ``close()`` (or ``with``).

    ``.mp4``: frames are piped to ffmpeg as they come (libx264, yuv420p; odd sizes are padded by one
    edge-replicated row/column, which yuv420p needs). ``.gif``: frames are palettised as they come and written on
    close; the frame time is 1000/fps ms rounded to GIF's 10 ms unit. The file is written under a temporary name
    and renamed onto ``path`` by :meth:`close`, so ``path`` is never a partial video (:mod:`dragkit.files`).
    """

    def __init__(self, path: str | Path, fps: float = 30.0) -> None:
        self.path = Path(path)
        self.kind = self.path.suffix.lower()
        if self.kind not in VIDEO_SUFFIXES:
            raise InvalidInputError(f"{self.path}: expected a video file ending in {' or '.join(VIDEO_SUFFIXES)}")
        if not (isinstance(fps, int | float) and 0 < fps <= 240):
            raise InvalidInputError(f"fps: expected a number in (0, 240], got {fps!r}")
        self.fps = float(fps)
        self.size: tuple[int, int] | None = None  # (H, W) of the first frame
        self.count = 0
        self._gif: list[Image.Image] = []
        self._ffmpeg: Generator[Any, Any, Any] | None = None
        self._closed = False
        self._output = atomic_path(self.path)  # entered at the first frame, finished by close()
        self._tmp: Path | None = None

    def append(self, frame: np.ndarray) -> None:
        """Add one uint8 [H, W, 3] RGB frame."""
        if self._closed:
            raise InvalidInputError(f"{self.path}: writer is closed")
        a = np.asarray(frame)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise InvalidInputError(f"frame: expected uint8 [H, W, 3], got {a.dtype} {list(a.shape)}")
        if self.size is None:
            self.size = (a.shape[0], a.shape[1])
            self._tmp = self._output.__enter__()
        elif a.shape[:2] != self.size:
            raise InvalidInputError(f"frame {self.count}: expected size {self.size} (H, W), got {a.shape[:2]}")
        if self.kind == ".gif":
            self._gif.append(Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=256))
        else:
            self._write_mp4(a)
        self.count += 1

    def _write_mp4(self, a: np.ndarray) -> None:
        pad_h, pad_w = a.shape[0] % 2, a.shape[1] % 2
        if pad_h or pad_w:
            a = np.pad(a, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        if self._ffmpeg is None:
            try:
                import imageio_ffmpeg
            except ImportError:
                raise DragkitError(
                    "writing .mp4 needs imageio-ffmpeg: pip install 'dragkit[video]' (or write a .gif)"
                ) from None
            self._ffmpeg = imageio_ffmpeg.write_frames(
                str(self._tmp),
                (a.shape[1], a.shape[0]),
                fps=self.fps,
                codec="libx264",
                pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p",
                quality=None,
                macro_block_size=1,
                ffmpeg_log_level="error",
                output_params=["-crf", "18"],
            )
            self._ffmpeg.send(None)
        self._ffmpeg.send(np.ascontiguousarray(a).tobytes())

    def close(self) -> Path:
        """Finish the file; returns its path. A writer that got no frame raises :class:`InvalidInputError`."""
        if self._closed:
            return self.path
        self._closed = True
        if self.count == 0:
            raise InvalidInputError(f"{self.path}: no frames to write")
        try:
            if self._ffmpeg is not None:
                self._ffmpeg.close()
            else:
                assert self._tmp is not None  # set with the first frame
                duration = max(10, round(1000 / self.fps / 10) * 10)
                first, *rest = self._gif
                first.save(self._tmp, format="GIF", save_all=True, append_images=rest, duration=duration, loop=0)
                self._gif = []
        except BaseException as exc:
            self._output.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._output.__exit__(None, None, None)
        logger.debug("wrote %d frames to %s", self.count, self.path)
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the original error; release ffmpeg and drop the partial file
            self._closed = True
            if self._ffmpeg is not None:
                self._ffmpeg.close()
            if self._tmp is not None:
                self._output.__exit__(exc_type, exc, tb)


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = 30.0) -> Path:
    """Write uint8 [H, W, 3] frames to ``path`` (``.mp4`` or ``.gif``, by suffix); returns the path."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.append(frame)
    return writer.path
