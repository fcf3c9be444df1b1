"""How fast drags run, per model (resolution) and device: ``dragkit eval speed``.

One case per (network, device). On seed 0's image (ψ 0.7) one handle at the image centre is dragged H/8 px to the
right with the evaluated drag settings (the stop test off, so every step optimises): after ``warmup`` untimed
steps, ``steps`` steps are timed one by one (``step_ms``: their median, and the fastest and slowest), then a whole
edit of ``edit_steps`` steps from the start is timed as a user waits for it, the final image included
(``edit_seconds``). The paper reports about 2 s for a 1-point face edit (Table 1, on an A100); times measured on
one machine compare only with each other.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from dragkit.errors import InvalidInputError
from dragkit.jobs.execute import Outcome

PAPER_EDIT_SECONDS = 2.0


@dataclass(frozen=True)
class SpeedCase:
    """One (network, device) measurement; ``id`` ``default-cpu``."""

    id: str
    network: str
    device: str


def speed_cases(networks: list[str], devices: list[str]) -> list[SpeedCase]:
    """Every network on every device, ids made path-safe and unique."""
    if not networks or not devices:
        raise InvalidInputError("give at least one --network and one --devices entry")
    out = []
    for n, network in enumerate(networks):
        stem = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in network.rstrip("/").split("/")[-1])
        for device in devices:
            out.append(SpeedCase(f"{n:02d}-{stem[:60]}-{device.replace(':', '')}", network, device))
    return out


@dataclass(frozen=True)
class SpeedSpec:
    """Worker recipe: drag ``config`` (a DragConfig dict), ``warmup``, timed ``steps``, ``edit_steps``."""

    config: dict[str, Any] = field(default_factory=dict)
    warmup: int = 2
    steps: int = 10
    edit_steps: int = 30

    def build(self) -> SpeedWorker:
        return SpeedWorker(self)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SpeedWorker:
    """Loads each case's model on its device and times it."""

    def __init__(self, spec: SpeedSpec) -> None:
        self.spec = spec

    def run(self, case: SpeedCase) -> Outcome:
        import torch

        from dragkit.engine import DragConfig, DragSession
        from dragkit.io import load_generator

        device = torch.device(case.device)
        G = load_generator(case.network, device=device)
        H, W = G.img_shape
        config = DragConfig.from_dict({**self.spec.config, "stop_rule": 1e-6})
        handle = ((W - 1) / 2, (H - 1) / 2)
        target = (handle[0] + H / 8, handle[1])

        def session() -> DragSession:
            sess = DragSession.from_seed(G, 0, psi=0.7, config=config)
            sess.set_points([handle], [target])
            return sess

        sess = session()
        for _ in range(self.spec.warmup):
            sess.step()
        times = []
        for _ in range(self.spec.steps):
            _sync(device)
            t = time.perf_counter()
            sess.step()
            _sync(device)
            times.append(time.perf_counter() - t)
        sess = session()
        _sync(device)
        t = time.perf_counter()
        for _ in range(self.spec.edit_steps):
            sess.step()
        sess.image()
        _sync(device)
        edit = time.perf_counter() - t
        record = {
            "network": case.network,
            "device": case.device,
            "image_shape": [H, W],
            "step_ms": round(statistics.median(times) * 1000, 1),
            "step_ms_min": round(min(times) * 1000, 1),
            "step_ms_max": round(max(times) * 1000, 1),
            "edit_steps": self.spec.edit_steps,
            "edit_seconds": round(edit, 3),
        }
        return Outcome(record)
