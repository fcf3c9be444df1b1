"""Frame sequences → video files: ``.mp4`` (H.264 through imageio-ffmpeg's bundled ffmpeg) or ``.gif`` (Pillow).

Videos have their own size: ``size`` caps the longer side (frames are downscaled, never upscaled). GIFs share one
palette, made at the end from a few frames spread over the clip: quantising to it costs ~10 ms a frame where
Pillow's per-frame adaptive palette costs ~300 ms, for the same file size (measured on 384²–512² faces).
"""

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

__all__ = ["GIF_SIZE", "VIDEO_SIZE", "VIDEO_SUFFIXES", "VideoWriter", "fit_size", "write_video"]

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".gif")

#: Default longer side of videos and GIFs, pixels: a 512² MP4 and a 384² GIF of a drag are what people attach
#: (a 300-frame 384² GIF of a face is ~35 MB, a 1024² one ~200 MB).
VIDEO_SIZE = 512
GIF_SIZE = 384
#: Default frames of a drag's trajectory videos (2 s at 10 frames/s; each costs about one drag step).
VIDEO_FRAMES = 20

#: Frames the shared GIF palette is made from (evenly spread over the clip).
PALETTE_SAMPLES = 8


def fit_size(shape: tuple[int, int], size: int | None) -> tuple[int, int]:
    """(H, W) scaled so that the longer side is at most ``size`` (None or 0: unchanged), aspect kept, ≥ 1 px."""
    h, w = shape
    if not size or max(h, w) <= size:
        return h, w
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _gif_palette(frames: list[Image.Image]) -> Image.Image:
    """One 256-colour palette image for all ``frames`` (RGB images of one size), from a mosaic of a few of them."""
    n = min(PALETTE_SAMPLES, len(frames))
    picks = [frames[round(i * (len(frames) - 1) / max(n - 1, 1))] for i in range(n)]
    w, h = picks[0].size
    mosaic = Image.new("RGB", (w, h * n))
    for i, im in enumerate(picks):
        mosaic.paste(im, (0, i * h))
    return mosaic.quantize(colors=256, method=Image.Quantize.MEDIANCUT)


class VideoWriter:
    """Streaming writer: ``append(frame)`` uint8 [H, W, 3] frames of one size, then ``close()`` (or ``with``).

    ``size``: the video's longer side in pixels (larger frames are downscaled with a Lanczos filter; None: as
    given). ``.mp4``: frames are piped to ffmpeg as they come (libx264, yuv420p; odd sizes are padded by one
    edge-replicated row/column, which yuv420p needs). ``.gif``: frames are kept (at the video's size) and
    written on close with one shared palette; the frame time is 1000/fps ms rounded to GIF's 10 ms unit. The file
    is written under a temporary name and renamed onto ``path`` by :meth:`close`, so ``path`` is never a partial
    video (:mod:`dragkit.files`).
    """

    def __init__(self, path: str | Path, fps: float = 30.0, size: int | None = None) -> None:
        self.path = Path(path)
        self.kind = self.path.suffix.lower()
        if self.kind not in VIDEO_SUFFIXES:
            raise InvalidInputError(f"{self.path}: expected a video file ending in {' or '.join(VIDEO_SUFFIXES)}")
        if not (isinstance(fps, int | float) and 0 < fps <= 240):
            raise InvalidInputError(f"fps: expected a number in (0, 240], got {fps!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise InvalidInputError(f"video size: expected a whole number of pixels ≥ 1, got {size!r}")
        self.fps = float(fps)
        self.max_side = size
        self.size: tuple[int, int] | None = None  # (H, W) of the first frame as given
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
        h, w = fit_size(self.size, self.max_side)
        im = Image.fromarray(a)
        if (h, w) != self.size:
            im = im.resize((w, h), Image.Resampling.LANCZOS)
        if self.kind == ".gif":
            self._gif.append(im)
        else:
            self._write_mp4(np.asarray(im))
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
                palette = _gif_palette(self._gif)
                first, *rest = (im.quantize(palette=palette) for im in self._gif)
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


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = 30.0, size: int | None = None) -> Path:
    """Write uint8 [H, W, 3] frames to ``path`` (``.mp4`` or ``.gif``, by suffix), the longer side at most
    ``size`` pixels (None: as given); returns the path."""
    with VideoWriter(path, fps, size) as writer:
        for frame in frames:
            writer.append(frame)
    return writer.path
