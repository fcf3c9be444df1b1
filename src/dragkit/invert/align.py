"""Photos in, model-ready crops out: reading a photo safely, the FFHQ face alignment, and the centre crop.

**FFHQ alignment** (the recipe the FFHQ data set was built with, so a face lands where the face models draw
faces): from the 68 dlib landmarks take the eye centres (points 36–41 and 42–47) and the mouth corners (48, 54).
With ``e = eye_right − eye_left`` and ``m = mouth_avg − eye_avg``, the crop is the square whose half-side vector is
``x = normalise(e − rot90(m)) · max(2·|e|, 1.8·|m|)``, ``y = rot90(x)``, centred at ``eye_avg + 0.1·m``
(:func:`ffhq_quad`). :func:`warp_quad` samples that square into the output, reflect-padding where it leaves the
photo (blurred towards the padding, so the border does not look like a mirror) and pre-shrinking large faces so
the resampling does not alias.

Everything here works on uint8 RGB arrays [H, W, 3] and float64 landmark arrays [68, 2] of (x, y) pixel
coordinates. Bad photos raise :class:`~dragkit.errors.InvalidInputError` with one line that says what is wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from dragkit.errors import InvalidInputError

__all__ = [
    "MAX_PHOTO_BYTES",
    "MAX_PHOTO_PIXELS",
    "MIN_PHOTO_SIDE",
    "Face",
    "center_crop",
    "decode_photo",
    "ffhq_quad",
    "read_photo",
    "warp_quad",
]

MAX_PHOTO_BYTES = 40 * 1024 * 1024  # a photo file larger than this is refused before decoding
MAX_PHOTO_PIXELS = 50_000_000  # ~ 8 K × 6 K; more is refused (decompression bombs included)
MIN_PHOTO_SIDE = 64  # smaller photos carry too little to invert


@dataclass(frozen=True)
class Face:
    """A detected face: its box (left, top, right, bottom) in photo pixels and its 68 landmarks [68, 2] (x, y)."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(right - left, 0) * max(bottom - top, 0)


def read_photo(path: str | Path) -> np.ndarray:
    """A photo file → uint8 RGB [H, W, 3], upright (EXIF orientation applied).

    Greyscale and palette images become RGB; an alpha channel is composited over white; 16-bit and float images
    are scaled to 8 bits. Refused with one line: a missing or unreadable file, a file over ``MAX_PHOTO_BYTES``,
    more than ``MAX_PHOTO_PIXELS`` pixels, a side under ``MIN_PHOTO_SIDE``.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{p}: no such photo")
    size = p.stat().st_size
    if size > MAX_PHOTO_BYTES:
        raise InvalidInputError(f"{p}: {size / 2**20:.0f} MB is too large (at most {MAX_PHOTO_BYTES // 2**20} MB)")
    return decode_photo(p, str(p))


def decode_photo(source: Path | IO[bytes], name: str = "photo") -> np.ndarray:
    """An image file or byte stream → uint8 RGB [H, W, 3] via :func:`photo_to_rgb`; the pixel count is checked
    before decoding. Anything unreadable is an :class:`InvalidInputError` naming ``name``."""
    try:
        with Image.open(source) as im:
            w, h = im.size
            if w * h > MAX_PHOTO_PIXELS:
                raise InvalidInputError(f"{name}: {w}×{h} pixels is too many (at most {MAX_PHOTO_PIXELS:,})")
            im.load()
            return photo_to_rgb(im, name)
    except InvalidInputError:
        raise
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise InvalidInputError(f"{name}: not a readable image ({type(exc).__name__})") from None


def photo_to_rgb(im: Image.Image, name: str = "photo") -> np.ndarray:
    """A decoded PIL image → uint8 RGB [H, W, 3] (EXIF rotation, alpha over white, 16-bit / float scaled)."""
    im = ImageOps.exif_transpose(im) or im
    w, h = im.size
    if min(w, h) < MIN_PHOTO_SIDE:
        raise InvalidInputError(f"{name}: {w}×{h} is too small (each side at least {MIN_PHOTO_SIDE} pixels)")
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square for 68 landmarks [68, 2] (x, y): its corners [4, 2] in the order top-left,
    bottom-left, bottom-right, top-right of the aligned image."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise InvalidInputError(f"landmarks must be a finite [68, 2] array, got {list(lm.shape)}")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])  # e − rot90(m)
    norm = math.hypot(*x)
    if norm < 1e-6:
        raise InvalidInputError("degenerate landmarks: the eyes and mouth coincide")
    x = x / norm * max(math.hypot(*eye_to_eye) * 2.0, math.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def warp_quad(img: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    """Sample the square ``quad`` [4, 2] (corners as :func:`ffhq_quad` orders them) of ``img`` into a
    ``size × size`` uint8 RGB image.

    Large faces are first shrunk (box filter) so the sampling step stays near one photo pixel; where the square
    leaves the photo, the photo is reflect-padded and the padding is blended towards a blurred copy over a band
    proportional to the face size (the FFHQ treatment of borders)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InvalidInputError(f"expected a uint8 RGB image [H, W, 3], got {img.dtype} {list(img.shape)}")
    quad = np.asarray(quad, dtype=np.float64).copy()
    im = Image.fromarray(img)
    side = math.hypot(*(quad[3] - quad[0]))
    shrink = math.floor(side / size * 0.5)
    if shrink > 1:
        im = im.resize((round(im.width / shrink), round(im.height / shrink)), Image.Resampling.BOX)
        quad /= shrink
        side /= shrink
    border = max(round(side * 0.1), 3)
    left, top = np.floor(quad.min(axis=0)).astype(int) - border
    right, bottom = np.ceil(quad.max(axis=0)).astype(int) + border
    pad = (max(-left, 0), max(-top, 0), max(right - im.width, 0), max(bottom - im.height, 0))
    if max(pad) > 0:
        a = np.asarray(im, dtype=np.float32)
        p_l, p_t, p_r, p_b = (min(p, 4 * max(a.shape[:2])) for p in pad)
        a = np.pad(a, ((p_t, p_b), (p_l, p_r), (0, 0)), mode="reflect")
        h, w = a.shape[:2]
        yy, xx = np.ogrid[:h, :w]
        # Signed distance into the photo, in units of each side's padding (negative inside the padding).
        dist = np.full((h, w), np.inf)
        if p_l:
            dist = np.minimum(dist, (xx - p_l) / p_l)
        if p_r:
            dist = np.minimum(dist, (w - 1 - p_r - xx) / p_r)
        if p_t:
            dist = np.minimum(dist, (yy - p_t) / p_t)
        if p_b:
            dist = np.minimum(dist, (h - 1 - p_b - yy) / p_b)
        weight = np.clip(-dist * 3.0, 0.0, 1.0).astype(np.float32)[:, :, None]  # 0 inside the photo, 1 deep in the pad
        blurred = np.asarray(
            Image.fromarray(a.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(side * 0.02 + 1)),
            dtype=np.float32,
        )
        a = a + (blurred - a) * weight
        im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))
        quad += np.array([p_l, p_t], dtype=np.float64)
    oversample = 2 if side > size else 1
    out = im.transform(
        (size * oversample, size * oversample),
        Image.Transform.QUAD,
        tuple((quad + 0.5).flatten()),
        Image.Resampling.BILINEAR,
    )
    if oversample > 1:
        out = out.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(out, dtype=np.uint8).copy()


def center_crop(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """The largest centred crop of ``img`` with the aspect ``height : width``, resized (Lanczos) to that size —
    for models of domains other than aligned faces (``--no-align``)."""
    h, w = img.shape[:2]
    scale = min(h / height, w / width)
    ch, cw = round(height * scale), round(width * scale)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(img[top : top + ch, left : left + cw])
    return np.asarray(crop.resize((width, height), Image.Resampling.LANCZOS), dtype=np.uint8).copy()
