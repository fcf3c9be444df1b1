"""Fuzz every loader and the studio's message schema; report what escaped.

    python benchmarks/fuzz.py --inputs 100000 --out out/fuzz.json      # the long run (minutes)
    python benchmarks/fuzz.py --inputs 500 --targets session message   # a quick look at two targets

Targets, each a seed corpus of valid inputs and a mutator, run in this process:

- ``nvidia`` — NVIDIA network pickles (the ``stylegan2-ada-pytorch`` and ``stylegan3`` layouts) and hand-made
  hostile pickles that would create a marker file if anything in them ran; byte flips, chunk insertions and
  deletions, truncations and splices; loaded with ``dragkit.io.load_generator``;
- ``rosinality`` — rosinality checkpoints in the zip and the legacy ``torch.save`` formats, the same mutations;
- ``native`` — dragkit's own folders: ``config.json`` mutated as JSON (leaves replaced by absurd values, keys
  dropped, deep nesting) or as text, ``model.safetensors`` as bytes;
- ``session`` — session files of the tiny generator (``nn``, ``hybrid`` and ``freedrag`` with a mask and undo
  history): the payload mutated structurally (a random leaf replaced by None, negative or huge numbers, NaN,
  strings, lists, tensors of wrong shapes; keys dropped) or the file as bytes; loaded with ``DragSession.load``;
- ``message`` — studio client messages: valid ones with fields replaced by absurd values, random JSON and random
  text, parsed with the studio's schema and, when accepted, carried out on a live studio session.

Every input must end in success or a one-line :class:`~dragkit.errors.DragkitError`; anything else is a failure,
an input running over ``--time-limit`` seconds a hang, a marker file an execution. The report (JSON) gives counts
per target, inputs per second, the peak RSS and the first failures with their tracebacks. Deterministic for a
given ``--seed``. ``tests/test_fuzz.py`` runs a fixed small number of inputs per target in the test suite.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the seed corpus is written with the test suite's checkpoint writers
    sys.path.insert(0, str(ROOT))

from dragkit.errors import DragkitError  # noqa: E402

TARGETS = ("nvidia", "rosinality", "native", "session", "message")


class HangError(Exception):
    """An input ran over the time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`HangError` in this (main) thread after ``seconds``."""

    def expire(signum: int, frame: Any) -> None:
        raise HangError(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Report:
    """Outcomes of one target."""

    target: str
    inputs: int = 0
    accepted: int = 0
    refused: int = 0
    failures: int = 0
    hangs: int = 0
    executions: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    examples: list[str] = field(default_factory=list)  # the first failures and hangs, with tracebacks

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["inputs_per_s"] = round(self.inputs / self.seconds, 1) if self.seconds else None
        d["seconds"] = round(self.seconds, 2)
        d["slowest_s"] = round(self.slowest_s, 3)
        return d


# -- mutators ----------------------------------------------------------------------------------------------------


def mutate_bytes(rng: random.Random, blob: bytes, others: list[bytes]) -> bytes:
    """Byte flips, chunk insertion or deletion, truncation, or a splice with another seed."""
    b = bytearray(blob)
    kind = rng.randrange(5)
    if kind == 0:
        for _ in range(rng.choice([1, 2, 3, 8, 40])):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:
        at = rng.randrange(len(b) + 1)
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 64])))
    elif kind == 2:
        at = rng.randrange(len(b))
        del b[at : at + rng.choice([1, 8, 256, 4096])]
    elif kind == 3:
        b = b[: rng.randrange(len(b))]
    else:
        other = rng.choice(others)
        cut = rng.randrange(min(len(b), len(other)))
        b = b[:cut] + bytearray(other[cut:])
    return bytes(b)


def absurd_value(rng: random.Random) -> Any:
    """A value a file or message should never carry where a well-formed one does."""
    return rng.choice(
        [
            None,
            -1,
            0,
            2**31,
            10**18,
            2**40,
            -(2**63),
            math.nan,
            math.inf,
            -0.5,
            1e308,
            "",
            "x" * 300,
            "\x1b[31mred\x1b[0m",
            True,
            [],
            [1, 2, 3],
            {},
            {"a": 1},
            [[[[[]]]]],
        ]
    )


def absurd_tensor(rng: random.Random) -> torch.Tensor:
    shape = rng.choice([(), (0,), (1,), (3, 3), (1, 2, 3), (2, 2), (1, 1, 1, 1), (7,)])
    kind = rng.randrange(4)
    if kind == 0:
        return torch.full(shape, math.nan)
    if kind == 1:
        return torch.zeros(shape, dtype=torch.bool)
    if kind == 2:
        return torch.randint(-5, 5, shape)
    return torch.randn(shape) * 1e30


def leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) inside nested dicts and lists, containers included."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, (*path, i))


def mutate_structure(rng: random.Random, obj: Any, tensors: bool) -> Any:
    """A deep copy of nested dicts/lists with 1–3 places changed: a value replaced, a key dropped, a list cut."""
    out = copy.deepcopy(obj)
    for _ in range(rng.choice([1, 1, 2, 3])):
        places = [p for p, _ in leaves(out) if p]
        if not places:
            return absurd_value(rng)
        path = rng.choice(places)
        parent = out
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        kind = rng.randrange(6)
        if kind == 0 and isinstance(parent, dict):
            del parent[key]
        elif kind == 1 and isinstance(parent, list):
            del parent[key:]
        elif kind == 2 and tensors:
            parent[key] = absurd_tensor(rng)
        elif kind == 3 and isinstance(parent[key], torch.Tensor) and parent[key].numel():
            t = parent[key].clone().contiguous()
            if t.is_floating_point():
                t.view(-1)[rng.randrange(t.numel())] = rng.choice([math.nan, math.inf, 1e30])
            parent[key] = t
        else:
            parent[key] = absurd_value(rng)
    return out


# -- targets -----------------------------------------------------------------------------------------------------


class Target:
    """A seed corpus, a mutator and a call that must succeed or raise a one-line DragkitError."""

    name = ""

    def __init__(self, work: Path, marker: Path) -> None:
        self.work = work
        self.marker = marker

    def make(self, rng: random.Random) -> Any:
        raise NotImplementedError

    def run(self, value: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the target holds."""


def _tiny() -> Any:
    import dataclasses

    from tests.conftest import TINY_CONFIG, make_tiny_generator

    return make_tiny_generator(config=dataclasses.replace(TINY_CONFIG, conv_clamp=None))


class FileTarget(Target):
    """Byte mutations of checkpoint files loaded with ``load_generator``."""

    def __init__(self, work: Path, marker: Path, seeds: list[bytes]) -> None:
        super().__init__(work, marker)
        self.seeds = seeds

    def make(self, rng: random.Random) -> bytes:
        return mutate_bytes(rng, rng.choice(self.seeds), self.seeds)

    def run(self, value: bytes) -> None:
        from dragkit.io import load_generator

        path = self.work / f"{self.name}.ckpt"
        path.write_bytes(value)
        load_generator(path)


class NvidiaTarget(FileTarget):
    name = "nvidia"

    def __init__(self, work: Path, marker: Path) -> None:
        from tests.ckpt_writers import nvidia_snapshot, raw_pickle

        G = _tiny()
        hostile = [
            raw_pickle("os", "system", f"touch {marker}"),
            raw_pickle("builtins", "exec", f"open({str(marker)!r}, 'w').close()"),
            raw_pickle("subprocess", "call", f"touch {marker}"),
        ]
        super().__init__(work, marker, [nvidia_snapshot(G, "ada"), nvidia_snapshot(G, "sg3"), *hostile])


class RosinalityTarget(FileTarget):
    name = "rosinality"

    def __init__(self, work: Path, marker: Path) -> None:
        from tests.ckpt_writers import write_rosinality

        G = _tiny()
        seeds = [write_rosinality(G, work / f"r{i}.pt", legacy=legacy).read_bytes() for i, legacy in enumerate([0, 1])]
        super().__init__(work, marker, seeds)


class NativeTarget(Target):
    name = "native"

    def __init__(self, work: Path, marker: Path) -> None:
        super().__init__(work, marker)
        from dragkit.io import save_native

        folder = save_native(_tiny(), work / "seed-native", {"licence": "test"})
        self.config = json.loads((folder / "config.json").read_text())
        self.weights = (folder / "model.safetensors").read_bytes()

    def make(self, rng: random.Random) -> tuple[str, bytes]:
        kind = rng.randrange(4)
        if kind == 0:
            return json.dumps(mutate_structure(rng, self.config, tensors=False), allow_nan=True), self.weights
        if kind == 1:
            text = json.dumps(self.config)
            return mutate_bytes(rng, text.encode(), [text.encode()]).decode("utf-8", "replace"), self.weights
        if kind == 2:
            return json.dumps(self.config), mutate_bytes(rng, self.weights, [self.weights])
        depth = rng.choice([10, 1000, 100_000])
        return "[" * depth + "]" * depth, self.weights

    def run(self, value: tuple[str, bytes]) -> None:
        from dragkit.io import load_generator

        folder = self.work / "native"
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(value[0], encoding="utf-8")
        (folder / "model.safetensors").write_bytes(value[1])
        load_generator(folder)


class SessionTarget(Target):
    name = "session"

    def __init__(self, work: Path, marker: Path) -> None:
        super().__init__(work, marker)
        from dragkit.engine import DragConfig, DragSession

        self.G = _tiny()
        self.payloads: list[dict[str, Any]] = []
        self.blobs: list[bytes] = []
        mask = np.zeros((32, 32), dtype=bool)
        mask[:, 4:28] = True
        for tracker in ("nn", "hybrid", "freedrag"):
            s = DragSession.from_seed(self.G, 0, config=DragConfig(lr=0.02, r1=2, r2=3, tracker=tracker))
            s.set_points([(10.0, 12.0), (20.0, 8.0)], [(16.0, 14.0), (14.0, 4.0)])
            s.set_mask(mask)
            s.run(max_steps=3)
            s.undo()
            path = s.save(work / f"seed-{tracker}.pt")
            self.blobs.append(path.read_bytes())
            self.payloads.append(torch.load(path, weights_only=True))

    def make(self, rng: random.Random) -> bytes | dict[str, Any]:
        if rng.random() < 0.2:
            return mutate_bytes(rng, rng.choice(self.blobs), self.blobs)
        return mutate_structure(rng, rng.choice(self.payloads), tensors=True)

    def run(self, value: bytes | dict[str, Any]) -> None:
        from dragkit.engine import DragSession

        path = self.work / "session.pt"
        if isinstance(value, bytes):
            path.write_bytes(value)
        else:
            torch.save(value, path)
        session = DragSession.load(path, self.G)
        if session.handles:  # what loads must also step (or refuse to, cleanly)
            session.step(render=True)


class MessageTarget(Target):
    name = "message"
    VALID: tuple[dict[str, Any], ...] = (
        {"type": "new_image", "seed": 3, "psi": 0.7},
        {"type": "set_config", "lr": 0.01, "tracker": "patch", "max_steps": 2, "mask_lambda": 5, "w_plus": False},
        {"type": "add_point", "handle": [10, 10], "target": [20, 14]},
        {"type": "move_point", "index": 0, "handle": [11, 11]},
        {"type": "remove_point", "index": 0},
        {"type": "clear_points"},
        {"type": "mask_stroke", "points": [[10, 10], [20, 20]], "radius": 6, "mode": "movable"},
        {"type": "mask_clear"},
        {"type": "start"},
        {"type": "stop"},
        {"type": "undo", "count": 2},
        {"type": "undo", "drag": True},
        {"type": "redo"},
        {"type": "reset"},
    )

    def __init__(self, work: Path, marker: Path) -> None:
        super().__init__(work, marker)
        from dragkit.studio.models import ModelStore
        from dragkit.studio.sessions import SessionManager, StudioConfig

        config = StudioConfig(network="tiny", max_steps=2)
        self.manager = SessionManager(config, ModelStore(preloaded={"tiny": _tiny()}, use_registry=False))
        self.session = self.manager.create()
        self._apply({"type": "new_image", "seed": 1})

    def _apply(self, msg: Any) -> None:
        from dragkit.studio.protocol import parse_client_message

        raw = msg if isinstance(msg, str) else json.dumps(msg, allow_nan=True)
        parsed = parse_client_message(raw, 1 << 20)
        self.manager.submit(self.session, parsed).result(timeout=30)

    def make(self, rng: random.Random) -> Any:
        kind = rng.randrange(4)
        if kind < 2:
            return mutate_structure(rng, rng.choice(self.VALID), tensors=False)
        if kind == 2:
            return rng.choice(self.VALID)
        text = json.dumps(rng.choice(self.VALID))
        return mutate_bytes(rng, text.encode(), [text.encode()]).decode("utf-8", "replace")

    def run(self, value: Any) -> None:
        self._apply(value)

    def close(self) -> None:
        self.manager.close()


FACTORIES: dict[str, Callable[[Path, Path], Target]] = {
    "nvidia": NvidiaTarget,
    "rosinality": RosinalityTarget,
    "native": NativeTarget,
    "session": SessionTarget,
    "message": MessageTarget,
}


# -- the loop ----------------------------------------------------------------------------------------------------


def fuzz(name: str, inputs: int, seed: int = 0, limit_s: float = 10.0, examples: int = 3) -> Report:
    """Run ``inputs`` generated inputs against target ``name``; the report counts every outcome."""
    report = Report(name)
    with tempfile.TemporaryDirectory(prefix="dragkit-fuzz-") as tmp:
        work = Path(tmp)
        marker = work / "EXECUTED"
        target = FACTORIES[name](work, marker)
        rng = random.Random(f"{name}-{seed}")
        start = time.perf_counter()
        try:
            for _ in range(inputs):
                value = target.make(rng)
                t0 = time.perf_counter()
                try:
                    with time_limit(limit_s):
                        target.run(value)
                    report.accepted += 1
                except DragkitError as exc:
                    if "\n" in str(exc):
                        report.failures += 1
                        _example(report, examples, f"a multi-line error: {str(exc)[:500]!r}")
                    else:
                        report.refused += 1
                except HangError:
                    report.hangs += 1
                    _example(report, examples, f"hang on {_describe(value)}")
                except Exception:
                    report.failures += 1
                    _example(report, examples, f"{_describe(value)}\n{traceback.format_exc(limit=8)}")
                report.slowest_s = max(report.slowest_s, time.perf_counter() - t0)
                report.inputs += 1
                if marker.exists():
                    report.executions += 1
                    marker.unlink()
        finally:
            target.close()
        report.seconds = time.perf_counter() - start
    return report


def _example(report: Report, limit: int, text: str) -> None:
    if len(report.examples) < limit:
        report.examples.append(text)


def _describe(value: Any) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return repr(value)[:300]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=20_000, help="inputs in all, split evenly over the targets")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS), help="which targets")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated inputs (default 0)")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per input before it is a hang")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here too")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    per_target = max(1, args.inputs // len(args.targets))
    reports = []
    for name in args.targets:
        report = fuzz(name, per_target, args.seed, args.time_limit)
        reports.append(report.to_dict())
        print(json.dumps({k: v for k, v in report.to_dict().items() if k != "examples"}), flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        "inputs": sum(r["inputs"] for r in reports),
        "failures": sum(r["failures"] for r in reports),
        "hangs": sum(r["hangs"] for r in reports),
        "executions": sum(r["executions"] for r in reports),
        "peak_rss_mb": round(peak_mb, 1),
        "seed": args.seed,
        "time_limit_s": args.time_limit,
        "torch": torch.__version__,
        "targets": reports,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "targets"}))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return 0 if summary["failures"] == summary["hangs"] == summary["executions"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
