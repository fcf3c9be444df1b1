"""Many drags from a JSONL file of cases, each writing what ``dragkit drag`` writes (``dragkit batch``).

One line per drag, a JSON object::

    {"id": "smile-7", "network": "default", "seed": 7, "psi": 0.7,
     "handles": [[420, 690], [600, 690]], "targets": [[380, 650], [640, 650]],
     "mask": "masks/mouth.png", "config": {"max_steps": 200, "lr": 0.002}, "video": false}

- ``handles``, ``targets`` (required): equal-length lists of [x, y] image pixels.
- ``network``: a model name or checkpoint path (default: the command's ``--network``).
- ``seed`` (default 0) and ``psi`` (default 0.7), or ``latent``: a W+ latent file (``dragkit invert``'s
  ``latent.pt``); ``class``: the label of a conditional model.
- ``mask``: a PNG of the movable region (white = movable), the model's size.
- ``config``: :class:`~dragkit.engine.DragConfig` fields (over the command's drag options); ``video``: false skips
  the trajectory videos.
- ``id``: the case's folder name (letters, digits, ``.``, ``_``, ``-``); default: the line number, ``line00001``…

Relative paths are read from the cases file's folder. The driver reads the mask and latent files and sends their
bytes with the case, so workers on other machines need no shared disk; the files a drag writes travel back the
same way and land in ``<out>/cases/<id>/``.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dragkit.errors import InvalidInputError
from dragkit.jobs.execute import Outcome

Point = tuple[float, float]
_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_KEYS = {"id", "network", "seed", "psi", "latent", "class", "handles", "targets", "mask", "config", "video"}


@dataclass(frozen=True)
class BatchCase:
    """One drag of a batch (see the module docstring); ``mask`` / ``latent`` hold the files' bytes, with their
    names for messages."""

    id: str
    network: str
    handles: tuple[Point, ...]
    targets: tuple[Point, ...]
    seed: int = 0
    psi: float = 0.7
    class_idx: int | None = None
    latent: bytes | None = field(default=None, repr=False)
    latent_name: str | None = None
    mask: bytes | None = field(default=None, repr=False)
    mask_name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    video: bool = True


def _points(value: Any, key: str, where: str) -> tuple[Point, ...]:
    ok = isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
        for p in value
    )
    if not ok or not value:
        raise InvalidInputError(f"{where}: {key!r} must be a non-empty list of [x, y] numbers")
    return tuple((float(p[0]), float(p[1])) for p in value)


def _read(folder: Path, name: Any, key: str, where: str) -> tuple[bytes, str]:
    if not isinstance(name, str):
        raise InvalidInputError(f"{where}: {key!r} must be a file path")
    path = folder / name
    try:
        return path.read_bytes(), f"{where}: {key} {name}"
    except OSError as exc:
        raise InvalidInputError(f"{where}: {key} {path}: {exc.strerror or exc}") from None


def parse_case(line: dict[str, Any], number: int, folder: Path, network: str | None) -> BatchCase:
    """One line's object → a :class:`BatchCase` (files read from ``folder``); ``number``: its 1-based line."""
    from dragkit.engine import DragConfig

    where = f"line {number}"
    if not isinstance(line, dict):
        raise InvalidInputError(f"{where}: expected a JSON object")
    unknown = sorted(set(line) - _KEYS)
    if unknown:
        raise InvalidInputError(f"{where}: unknown keys {unknown}; known: {sorted(_KEYS)}")
    case_id = line.get("id", f"line{number:05d}")
    if not isinstance(case_id, str) or not _ID.match(case_id):
        raise InvalidInputError(f"{where}: id {case_id!r}: use 1–100 letters, digits, '.', '_' or '-'")
    net = line.get("network", network)
    if not isinstance(net, str) or not net:
        raise InvalidInputError(f"{where}: no 'network' (give it in the line or as --network)")
    handles = _points(line.get("handles"), "handles", where)
    targets = _points(line.get("targets"), "targets", where)
    if len(handles) != len(targets):
        raise InvalidInputError(f"{where}: {len(handles)} handles but {len(targets)} targets")
    seed, psi, class_idx = line.get("seed", 0), line.get("psi", 0.7), line.get("class")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InvalidInputError(f"{where}: 'seed' must be an int ≥ 0")
    if not isinstance(psi, int | float) or isinstance(psi, bool):
        raise InvalidInputError(f"{where}: 'psi' must be a number")
    if class_idx is not None and (not isinstance(class_idx, int) or isinstance(class_idx, bool)):
        raise InvalidInputError(f"{where}: 'class' must be an int")
    config = line.get("config", {})
    if not isinstance(config, dict):
        raise InvalidInputError(f"{where}: 'config' must be an object of drag settings")
    try:
        DragConfig.from_dict(config)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None
    video = line.get("video", True)
    if not isinstance(video, bool):
        raise InvalidInputError(f"{where}: 'video' must be true or false")
    latent = mask = None
    latent_name = mask_name = None
    if line.get("latent") is not None:
        latent, latent_name = _read(folder, line["latent"], "latent", where)
    if line.get("mask") is not None:
        mask, mask_name = _read(folder, line["mask"], "mask", where)
    return BatchCase(
        id=case_id,
        network=net,
        handles=handles,
        targets=targets,
        seed=seed,
        psi=float(psi),
        class_idx=class_idx,
        latent=latent,
        latent_name=latent_name,
        mask=mask,
        mask_name=mask_name,
        config=config,
        video=video,
    )


def read_cases(path: Path, network: str | None = None) -> list[BatchCase]:
    """Every case of the JSONL file ``path`` (blank lines and lines starting with ``#`` are skipped); ids must be
    unique. ``network``: the default model of lines without one. Errors name the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"{path}: {exc.strerror or exc}") from None
    cases: list[BatchCase] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path} line {number}: not JSON ({exc.msg})") from None
        case = parse_case(obj, number, path.parent, network)
        if case.id in seen:
            raise InvalidInputError(f"{path} line {number}: id {case.id!r} is used twice")
        seen.add(case.id)
        cases.append(case)
    if not cases:
        raise InvalidInputError(f"{path}: no cases")
    return cases


@dataclass(frozen=True)
class BatchSpec:
    """Worker recipe of a batch: ``device``, ``defaults`` (DragConfig fields under each case's ``config``), and
    ``video`` (False: no videos for any case)."""

    device: str = "cpu"
    defaults: dict[str, Any] = field(default_factory=dict)
    video: bool = True

    def build(self) -> BatchWorker:
        return BatchWorker(self)


class BatchWorker:
    """Runs batch cases; keeps the last :data:`MODELS_KEPT` models loaded."""

    MODELS_KEPT = 2

    def __init__(self, spec: BatchSpec) -> None:
        self.spec = spec
        self.models: dict[str, Any] = {}

    def _model(self, network: str) -> Any:
        from dragkit.io import load_generator

        if network not in self.models:
            if len(self.models) >= self.MODELS_KEPT:
                self.models.pop(next(iter(self.models)))
            self.models[network] = load_generator(network, device=self.spec.device)
        return self.models[network]

    def run(self, case: BatchCase) -> Outcome:
        """Drag ``case`` into a temporary folder; the record is its ``result.json`` summary, the files its outputs."""
        from dragkit.engine import DragConfig, DragSession
        from dragkit.io.images import load_mask
        from dragkit.jobs.drag import VideoOptions, drag_and_write, load_latent

        G = self._model(case.network)
        config = DragConfig.from_dict({**self.spec.defaults, **case.config})
        if case.latent is not None:
            ws = load_latent(io.BytesIO(case.latent), G.num_ws, G.w_dim, name=case.latent_name).to(G.w_avg.device)
            sess = DragSession(G, ws, config=config, model_id=case.network, meta={"latent": case.latent_name})
        else:
            sess = DragSession.from_seed(G, case.seed, case.psi, config, case.network, case.class_idx)
        sess.set_points(list(case.handles), list(case.targets))
        if case.mask is not None:
            sess.set_mask(load_mask(io.BytesIO(case.mask), sess.image_shape, name=case.mask_name))
        video = VideoOptions() if (self.spec.video and case.video) else None
        folder = Path(tempfile.mkdtemp(prefix="dragkit-batch-"))
        try:
            done = drag_and_write(sess, folder, network=case.network, video=video, progress=False)
            files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        r = done.result
        if r["stopped"] == "interrupted":  # Ctrl-C ends the batch; this case stays unfinished and runs on a resume
            raise KeyboardInterrupt
        record = {k: r[k] for k in ("steps", "done", "stopped", "distances", "handles", "network", "seed")}
        return Outcome(record, files)
