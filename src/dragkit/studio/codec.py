"""Image encoding for the studio's messages and files.

Frames travel as JPEG data URLs inside JSON messages; the mask as a greyscale PNG data URL (255 = movable).
Images are uint8 NumPy arrays: RGB ``[H, W, 3]`` or greyscale ``[H, W]``, values in [0, 255].
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    """uint8 [H, W, 3] → JPEG bytes at ``quality`` in [1, 100]."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_png(img: np.ndarray) -> bytes:
    """uint8 [H, W, 3] or [H, W] → PNG bytes (lossless)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,…`` of ``data``."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG (or any image Pillow reads) bytes → uint8 RGB [H, W, 3]."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
