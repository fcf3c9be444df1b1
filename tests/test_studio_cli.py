"""``dragkit studio``: arguments, the loopback warning, early errors, and a real server process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from dragkit.cli import build_parser, main
from dragkit.cli.studio import is_loopback, url_for
from dragkit.io import save_native
from dragkit.nn.stylegan2 import StyleGAN2Generator


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["studio"])
    assert (args.network, args.host, args.port, args.device) == ("default", "127.0.0.1", 7860, "cpu")
    assert args.models_dir == Path("models")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.5.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("192.168.1.5", False), ("::", False), ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_url_for() -> None:
    assert url_for("127.0.0.1", 7860) == "http://127.0.0.1:7860/"
    assert url_for("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert url_for("::1", 8000) == "http://[::1]:8000/"


def test_port_in_use_and_bad_arguments_fail_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["studio", "--port", str(port)]) == 2
    assert "already in use" in capsys.readouterr().err
    assert main(["studio", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["studio", "--port", str(_free_port()), "--models-dir", "/no/such/folder"]) == 2
    assert "no such folder" in capsys.readouterr().err
    unusable = "cuda" if not torch.cuda.is_available() else "potato"
    assert main(["studio", "--port", str(_free_port()), "--device", unusable]) == 2
    err = capsys.readouterr().err
    assert "--device" in err and "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_studio_process_serves_and_warns_off_loopback(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    models = tmp_path / "models"
    save_native(tiny_g, models / "tiny", {"licence": "test"})
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DRAGKIT_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "dragkit", "studio", "--network", str(models / "tiny"), "--models-dir", str(models)]
    proc = subprocess.Popen(
        [*cmd, "--host", "0.0.0.0", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/?token=" in line, line  # off loopback: an access token, in the URL
        token = line.split("?token=")[1].split()[0]
        body = None
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models?token={token}", timeout=2) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.05)
        assert body is not None
        with pytest.raises(urllib.error.HTTPError) as refused:  # the same request without it
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=2)
        assert refused.value.code == 401
        assert body["default"] == "file:tiny" and body["models"][0]["id"] == "file:tiny"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "warning" in err and "not a loopback address" in err
