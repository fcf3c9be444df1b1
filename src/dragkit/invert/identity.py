"""Identity distance between two face images: dlib's face-recognition ResNet descriptor (128-D), Euclidean
distance (< 0.6 = the same person, dlib's convention).

The model ``dlib_face_recognition_resnet_model_v1.dat`` ships in the PyPI package ``face-recognition-models``; it
is found at ``$DRAGKIT_FACE_RECOGNITION``, in an installed copy of that package (its module is not imported, only
its file is read) or in ``<cache>/dlib/``, where fetching the landmark model puts it too (one download holds both).
:func:`find_recognition_model` with ``fetch=True`` downloads it when missing; without it the distance is None.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["RECOGNITION_NAME", "find_recognition_model", "identity_distance"]

RECOGNITION_NAME = "dlib_face_recognition_resnet_model_v1.dat"


def find_recognition_model(fetch: bool = False) -> Path | None:
    """The face-recognition model's path, or None (``fetch``: download it into the cache when missing; None
    still where that fails, with a warning)."""
    from dragkit.io.registry import DownloadError, cache_dir, fetch_package_file

    env = os.environ.get("DRAGKIT_FACE_RECOGNITION")
    candidates = [Path(env)] if env else []
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "models" / RECOGNITION_NAME for p in spec.submodule_search_locations]
    candidates.append(cache_dir() / "dlib" / RECOGNITION_NAME)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None and fetch:
        try:
            found = fetch_package_file("dlib-face-recognition", progress=False)
        except DownloadError as exc:
            logger.warning("no identity measure: %s", exc)
    return found


@lru_cache(maxsize=1)
def _models() -> tuple[Any, Any] | None:
    path = find_recognition_model()
    if path is None:
        return None
    import dlib

    from dragkit.invert.faces import FaceDetector

    return FaceDetector(), dlib.face_recognition_model_v1(str(path))


def descriptor(img: np.ndarray) -> np.ndarray | None:
    """The 128-D descriptor of the largest face in ``img`` (uint8 RGB [H, W, 3]); None without a face or model."""
    models = _models()
    if models is None:
        return None
    detector, recognizer = models
    h, w = img.shape[:2]
    scale = min(1.0, 512 / max(h, w))
    if scale < 1.0:
        from PIL import Image

        img = np.asarray(Image.fromarray(img).resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS))
    rects = detector.detector(img, 1)
    if len(rects) == 0:
        return None
    rect = max(rects, key=lambda r: r.width() * r.height())
    shape = detector.predictor(img, rect)
    return np.asarray(recognizer.compute_face_descriptor(img, shape), dtype=np.float64)


def identity_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Descriptor distance of the largest faces of ``a`` and ``b``; None when the model or a face is missing."""
    da, db = descriptor(a), descriptor(b)
    if da is None or db is None:
        return None
    return round(float(np.linalg.norm(da - db)), 4)
