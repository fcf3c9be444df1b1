"""``dragkit batch`` and ``dragkit eval`` on a real Ray cluster on loopback: a head node and a second worker node
(``ray start``), started and stopped here. The results equal the serial run's case by case; a worker killed in the
middle of a run loses no case; a rerun skips the finished cases.

Marked ``cluster`` (deselect with ``-m 'not cluster'``); skipped where Ray is not installed (``dragkit[ray]``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from dragkit.cli import main
from dragkit.io import save_native
from tests.conftest import make_tiny_generator
from tests.test_jobs import stable, write_cases

pytest.importorskip("ray")
pytestmark = pytest.mark.cluster

RAY = str(Path(sys.executable).parent / "ray")
NODE = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 2-node Ray cluster on this machine (1 CPU each); yields its address. Ray's token authentication is off
    for it (RAY_AUTH_MODE=disabled, in this process too): a token a local ``ray.init`` left in ~/.ray would
    otherwise switch the head to token mode while the second node and the drivers do not send it."""
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")
    patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    env = dict(os.environ)
    address = f"127.0.0.1:{_free_port()}"
    port = address.split(":")[1]
    try:
        subprocess.run(
            [
                RAY,
                "start",
                "--head",
                f"--port={port}",
                "--node-ip-address=127.0.0.1",
                "--include-dashboard=false",
                *NODE,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [RAY, "start", f"--address={address}", "--node-ip-address=127.0.0.1", *NODE],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        patch.undo()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_native(make_tiny_generator(), tmp_path_factory.mktemp("ckpt") / "tiny32")


def _records(path: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def _same_drags(a: Path, b: Path, ids: list[str]) -> None:
    ra, rb = _records(a / "batch.jsonl"), _records(b / "batch.jsonl")
    assert sorted(ra) == sorted(rb) == sorted(ids)
    for i in ids:
        assert stable(ra[i]) == stable(rb[i]), i
        assert torch.equal(torch.load(a / "cases" / i / "latent.pt"), torch.load(b / "cases" / i / "latent.pt")), i
        assert (a / "cases" / i / "final.png").read_bytes() == (b / "cases" / i / "final.png").read_bytes(), i


def test_batch_and_eval_on_the_cluster_equal_the_serial_run(
    cluster: str, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = write_cases(tmp_path, 4, steps=8)
    ids = [f"c{i}" for i in range(4)]
    base = ["batch", str(cases), "--network", str(tiny_checkpoint), "--no-video"]
    assert main([*base, "--out", str(tmp_path / "serial")]) == 0
    assert main([*base, "--out", str(tmp_path / "ray"), "--ray", cluster]) == 0
    printed = capsys.readouterr().out
    assert f"ray ({cluster}), 2 worker(s)" in printed
    _same_drags(tmp_path / "serial", tmp_path / "ray", ids)
    workers = {json.dumps(r["worker"]) for r in _records(tmp_path / "ray" / "batch.jsonl").values()}
    assert len(workers) == 2  # both nodes' workers ran cases

    pytest.importorskip("dlib")
    lm = ["eval", "landmarks", "--network", str(tiny_checkpoint), "--cases", "2", "--steps", "2"]
    assert main([*lm, "--out", str(tmp_path / "lm-serial")]) == 0
    assert main([*lm, "--out", str(tmp_path / "lm-ray"), "--ray", cluster]) == 0
    a = _records(tmp_path / "lm-serial" / "landmarks.jsonl")
    b = _records(tmp_path / "lm-ray" / "landmarks.jsonl")
    assert sorted(a) == sorted(b) and len(a) == 4
    assert all(stable(a[k]) == stable(b[k]) for k in a)


def test_a_killed_worker_loses_no_case_and_a_rerun_skips_finished(
    cluster: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    n = 8
    cases = write_cases(tmp_path, n, steps=60)
    ids = [f"c{i}" for i in range(n)]
    out = tmp_path / "ray"
    argv = [sys.executable, "-m", "dragkit", "batch", str(cases), "--network", str(tiny_checkpoint), "--no-video"]
    driver = subprocess.Popen([*argv, "--out", str(out), "--ray", cluster], stdout=subprocess.PIPE, text=True)
    log = out / "batch.jsonl"
    deadline = time.monotonic() + 300
    while not (log.is_file() and log.read_text().strip()):  # the first case is done: both workers are busy
        assert driver.poll() is None and time.monotonic() < deadline, "the run ended or stalled before a case finished"
        time.sleep(0.2)
    first = json.loads(log.read_text().splitlines()[0])
    os.kill(first["worker"]["pid"], signal.SIGKILL)  # that worker has taken its next case
    stdout, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, stdout
    assert f"{n} of {n} drags" in stdout
    records = _records(log)
    assert sorted(records) == ids and not any("error" in r for r in records.values())

    assert (
        main(["batch", str(cases), "--network", str(tiny_checkpoint), "--no-video", "--out", str(tmp_path / "s")]) == 0
    )
    _same_drags(tmp_path / "s", out, ids)

    rerun = subprocess.run([*argv, "--out", str(out), "--ray", cluster], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and f"0 now, {n} earlier" in rerun.stdout
