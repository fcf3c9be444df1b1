"""The real-photo pipeline: read → align (or centre-crop) → project (W, W+) → pivotal tuning → outputs.

:func:`invert_photo` returns an :class:`InversionResult` in memory; :func:`write_outputs` writes the folder the
CLI documents: ``aligned.png``, ``reconstruction.png`` (after W+, and ``reconstruction_pti.png`` after PTI),
``latent.pt`` (the W+ pivot, [1, num_ws, w_dim]), ``generator/`` (the tuned generator, native format, whose
provenance names the base model's sha256, the photo's sha256, the loss and the step counts) and ``report.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dragkit.errors import InvalidInputError
from dragkit.invert.align import center_crop, ffhq_quad, read_photo, warp_quad
from dragkit.invert.losses import psnr, resolve_loss, ssim
from dragkit.invert.project import InvertConfig, Progress, pivotal_tuning, project, synthesize_image
from dragkit.nn.images import to_uint8
from dragkit.nn.protocol import Generator

__all__ = ["InversionResult", "image_to_tensor", "invert_photo", "prepare_photo", "write_outputs"]


@dataclass
class InversionResult:
    """What :func:`invert_photo` produced. Images are uint8 RGB [H, W, 3]; latents [1, num_ws, w_dim]."""

    aligned: np.ndarray
    ws_w: torch.Tensor
    ws: torch.Tensor  # the W+ pivot
    reconstruction_w: np.ndarray
    reconstruction: np.ndarray  # after W+
    generator: Generator | None  # the tuned generator (None with PTI off)
    reconstruction_pti: np.ndarray | None
    report: dict[str, Any] = field(default_factory=dict)


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H, W, 3] → float32 [1, 3, H, W] in [-1, 1] (the inverse of ``to_uint8`` up to rounding)."""
    return torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0


def prepare_photo(
    photo: np.ndarray, shape: tuple[int, int], align: bool, detector: Any = None, name: str = "photo"
) -> tuple[np.ndarray, dict[str, Any]]:
    """The model-ready crop of ``photo`` (uint8 [H, W, 3]) at ``shape`` (H, W) and what was done, for the report.

    ``align``: the FFHQ face alignment (largest face; ``detector`` is a :class:`~dragkit.invert.faces.FaceDetector`,
    built when None); else the centred crop of the model's aspect."""
    h, w = shape
    if not align:
        return center_crop(photo, h, w), {"alignment": "centre crop"}
    if h != w:
        raise InvalidInputError(f"face alignment makes square crops; this model is {w}×{h}: use --no-align")
    if detector is None:
        from dragkit.invert.faces import FaceDetector

        detector = FaceDetector()
    face, count = detector.largest(photo, name)
    info: dict[str, Any] = {"alignment": "ffhq", "faces_found": count, "face_box": list(face.box)}
    if count > 1:
        info["note"] = f"{count} faces found; the largest was used"
    return warp_quad(photo, ffhq_quad(face.landmarks), h), info


def _identity(a: np.ndarray, b: np.ndarray) -> float | None:
    """dlib face-recognition descriptor distance (< 0.6 = same person) where that model is present, else None."""
    try:
        from dragkit.invert.identity import identity_distance
    except ImportError:  # pragma: no cover - dlib missing
        return None
    return identity_distance(a, b)


def invert_photo(
    G: Generator,
    photo: str | Path | np.ndarray,
    config: InvertConfig | None = None,
    align: bool = True,
    pti: bool = True,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    detector: Any = None,
) -> InversionResult:
    """Invert a photo (a path, or uint8 RGB [H, W, 3]) into ``G``. Progress stages: "w", "w+", "pti". The report's
    ``loss`` (and its ``config``) name the loss that ran ("auto" resolved)."""
    config = config or InvertConfig()
    config = replace(config, loss=resolve_loss(config.loss, config.vgg16))
    t0 = time.perf_counter()
    name = str(photo) if isinstance(photo, str | Path) else "photo"
    img = read_photo(photo) if isinstance(photo, str | Path) else photo
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InvalidInputError(f"a photo must be uint8 RGB [H, W, 3], got {img.dtype} {list(img.shape)}")
    aligned, prep = prepare_photo(img, G.img_shape, align, detector, name)
    seconds: dict[str, float] = {"align": time.perf_counter() - t0}
    device = G.w_avg.device
    target = image_to_tensor(aligned).to(device)

    t = time.perf_counter()
    stage_start = {"w": t}

    def timed(stage: str, step: int, steps: int, loss: float, preview: torch.Tensor | None) -> None:
        if stage not in stage_start:
            stage_start[stage] = time.perf_counter()
        if progress is not None:
            progress(stage, step, steps, loss, preview)

    ws_w, ws = project(G, target, config, timed, should_stop)
    seconds["w"] = stage_start.get("w+", time.perf_counter()) - stage_start["w"]
    seconds["w+"] = time.perf_counter() - stage_start.get("w+", time.perf_counter())
    with torch.no_grad():
        img_w = synthesize_image(G, ws_w)
        img_wp = synthesize_image(G, ws)
    tuned = None
    img_pti = None
    if pti and config.steps_pti > 0:
        t = time.perf_counter()
        tuned = pivotal_tuning(G, ws, target, config, timed, should_stop)
        with torch.no_grad():
            img_pti = synthesize_image(tuned, ws)
        seconds["pti"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    rec_w, rec_wp = to_uint8(img_w)[0], to_uint8(img_wp)[0]
    rec_pti = to_uint8(img_pti)[0] if img_pti is not None else None
    stages = {"w": (img_w, rec_w), "w+": (img_wp, rec_wp)}
    if img_pti is not None and rec_pti is not None:
        stages["pti"] = (img_pti, rec_pti)
    quality = {}
    for stage, (tensor, pixels) in stages.items():
        quality[stage] = {
            "psnr_db": round(psnr(tensor.cpu(), target.cpu()), 2),
            "ssim": round(float(ssim(tensor.cpu().clamp(-1, 1), target.cpu())), 4),
            "identity_distance": _identity(aligned, pixels) if align else None,
        }
    report = {
        "photo": name,
        **prep,
        "loss": config.loss,
        "config": asdict(config),
        "pti": tuned is not None,
        "quality": quality,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "stopped_early": bool(should_stop is not None and should_stop()),
    }
    return InversionResult(aligned, ws_w, ws, rec_w, rec_wp, tuned, rec_pti, report)


def write_outputs(
    result: InversionResult, outdir: str | Path, base_model: str, base_sha256: str, photo_sha256: str | None
) -> Path:
    """Write the pipeline's files into ``outdir`` (see the module docstring); returns ``outdir``."""
    from dragkit.io import save_native
    from dragkit.io.images import save_png

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    save_png(result.aligned, out / "aligned.png")
    save_png(result.reconstruction, out / "reconstruction.png")
    save_png(result.reconstruction_w, out / "reconstruction_w.png")
    torch.save(result.ws.detach().cpu().clone(), out / "latent.pt")
    report = dict(result.report)
    report["base_model"] = {"name": base_model, "sha256": base_sha256}
    report["photo_sha256"] = photo_sha256
    if result.generator is not None and result.reconstruction_pti is not None:
        save_png(result.reconstruction_pti, out / "reconstruction_pti.png")
        cfg = result.report.get("config", {})
        provenance = {
            "source_format": "dragkit pivotal tuning",
            "base_model": base_model,
            "base_sha256": base_sha256,
            "photo_sha256": photo_sha256,
            "loss": report.get("loss"),
            "steps": {k: cfg.get(k) for k in ("steps_w", "steps_wplus", "steps_pti")},
            "licence": "that of the base model",
        }
        save_native(result.generator, out / "generator", provenance)
        report["generator"] = "generator"
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return out
