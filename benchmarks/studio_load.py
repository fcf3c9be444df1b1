"""Studio under load: N tabs dragging at once on loopback, a flooding tab, and memory before, at peak and after.

    python benchmarks/studio_load.py --tabs 8 --seconds 20                 # a seeded random StyleGAN2 (256 px)
    python benchmarks/studio_load.py --network default --tabs 2 --json     # the offline default model

The real studio (uvicorn on a thread of this process) serves ``--tabs`` WebSocket clients; each adds its own
handle and target and drags (``max_steps`` large, so nobody arrives) for ``--seconds``. Reported:

- frames per second of each tab and the fairness ratio (most / fewest frames of any tab);
- ``GET /`` latency (median and max) measured while they drag;
- cross-talk: every frame a tab receives must carry that tab's own target (frames carry no session id, the
  targets differ per tab), and every state message its own session id;
- flood: one more tab sends 100 messages as fast as it can, and another tab's ``add_point`` round trip is
  timed while the flood is queued (the worker takes tabs in turns);
- RSS of this process (``/proc/self/status``) before the tabs, at peak, and after they closed and their sessions
  were released.

``--export-steps N`` instead measures a video export: one tab drags N steps, then downloads its GIF (and MP4)
while a second tab drags; reported are each file's size and seconds, and the second tab's frames per second
before and during the export (the export is encoded beside the drag worker, so the drags go on).

This is a benchmark, not a test; numbers vary with the machine, so compare runs made on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import urllib.request
from typing import Any

import torch


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(network: str) -> Any:
    if network == "random-256":
        from dragkit.nn.stylegan2 import StyleGAN2Config, StyleGAN2Generator

        torch.manual_seed(0)
        cfg = StyleGAN2Config(z_dim=256, w_dim=256, img_resolution=256, channel_base=8192, channel_max=256)
        return StyleGAN2Generator(cfg).eval().requires_grad_(False)
    from dragkit.io import load_generator

    return load_generator(network)


async def tab(url: str, index: int, size: int, seconds: float, frames: dict[int, list[float]], bad: list[str]) -> None:
    """One tab: its own point, Start, count frames for ``seconds``, check every message is its own."""
    import websockets

    handle = [size * 0.3 + index, size * 0.4]
    target = [size * 0.7 - index, size * 0.6]
    async with websockets.connect(url, max_size=None) as ws:
        sid = None
        while sid is None:
            msg = json.loads(await ws.recv())
            sid = msg.get("session") if msg["type"] == "hello" else None
        await ws.send(json.dumps({"type": "add_point", "handle": handle, "target": target}))
        await ws.send(json.dumps({"type": "start"}))
        frames[index] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=max(0.01, end - time.monotonic())))
            except TimeoutError:
                break
            if msg["type"] == "frame":
                frames[index].append(time.monotonic())
                if msg["targets"] != [target]:
                    bad.append(f"tab {index} got a frame with targets {msg['targets']}")
            elif msg["type"] == "state" and msg.get("session") not in (None, sid):
                bad.append(f"tab {index} got the state of session {msg.get('session')}")
        await ws.send(json.dumps({"type": "stop"}))


async def flood_and_probe(url: str, size: int) -> dict[str, float]:
    """Another tab's add_point round trip, alone and while one tab floods 100 messages."""
    import websockets

    async def hello(ws: Any) -> None:
        while json.loads(await ws.recv())["type"] != "hello":
            pass

    async def round_trip(probe: Any, ident: int) -> float:
        start = time.monotonic()
        point = {"type": "add_point", "handle": [size / 2, size / 2], "target": [1, 1], "id": ident}
        await probe.send(json.dumps(point))
        while json.loads(await probe.recv()).get("reply_to") != ident:
            pass
        return round(time.monotonic() - start, 3)

    async with websockets.connect(url, max_size=None) as flood, websockets.connect(url, max_size=None) as probe:
        await hello(flood)
        await hello(probe)
        await asyncio.sleep(3.0)  # both tabs' first images, and the closed tabs' last jobs
        alone = await round_trip(probe, 1)
        for i in range(100):
            await flood.send(json.dumps({"type": "new_image", "seed": i}))
        flooded = await round_trip(probe, 2)
        return {"probe_round_trip_s_alone": alone, "probe_round_trip_s_during_flood": flooded}


async def export_probe(base: str, ws_url: str, size: int, steps: int) -> dict[str, Any]:
    """One tab drags ``steps`` steps and exports; another tab drags meanwhile (see the module docstring)."""
    import websockets

    async def until(ws: Any, kind: str) -> dict[str, Any]:
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == kind:
                return msg

    async with websockets.connect(ws_url, max_size=None) as a, websockets.connect(ws_url, max_size=None) as b:
        sid = (await until(a, "hello"))["session"]
        await until(b, "hello")
        await a.send(json.dumps({"type": "set_config", "max_steps": steps}))
        await a.send(
            json.dumps({"type": "add_point", "handle": [size * 0.3, size * 0.4], "target": [size * 0.7, size * 0.6]})
        )
        await a.send(json.dumps({"type": "start"}))
        await until(a, "stopped")
        await b.send(
            json.dumps({"type": "add_point", "handle": [size * 0.5, size * 0.5], "target": [size * 0.9, size * 0.1]})
        )
        await b.send(json.dumps({"type": "start"}))
        out: dict[str, Any] = {"export_steps": steps}
        loop = asyncio.get_running_loop()

        async def frames_during(task: Any) -> tuple[int, float]:
            count, start = 0, time.monotonic()
            while not task.done():
                try:
                    msg = json.loads(await asyncio.wait_for(b.recv(), timeout=0.2))
                except TimeoutError:
                    continue
                count += msg["type"] == "frame"
            return count, time.monotonic() - start

        quiet = loop.run_in_executor(None, time.sleep, 10.0)
        count, seconds = await frames_during(quiet)
        out["other_tab_frames_per_s_before"] = round(count / seconds, 2)
        for fmt in ("gif", "mp4"):
            url = f"{base}api/sessions/{sid}/export.{fmt}"
            start = time.monotonic()
            task = loop.run_in_executor(None, lambda u=url: urllib.request.urlopen(u, timeout=600).read())
            count, seconds = await frames_during(task)
            data = await task
            out[f"export_{fmt}_mb"] = round(len(data) / 1e6, 2)
            out[f"export_{fmt}_s"] = round(time.monotonic() - start, 2)
            out[f"other_tab_frames_per_s_during_{fmt}"] = round(count / max(seconds, 1e-9), 2)
        await b.send(json.dumps({"type": "stop"}))
        return out


def get_latencies(base: str, stop: float) -> list[float]:
    out = []
    while time.monotonic() < stop:
        t = time.monotonic()
        with urllib.request.urlopen(base, timeout=10) as r:
            r.read()
        out.append(time.monotonic() - t)
        time.sleep(0.25)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from dragkit.studio.server import BackgroundServer, StudioConfig, create_app

    G = build(args.network)
    size = int(G.img_resolution)
    idle_mb = rss_mb()
    config = StudioConfig(network="bench", max_steps=10_000, max_sessions=max(16, args.tabs + 2))
    app = create_app(config, generators={"bench": G})
    result: dict[str, Any] = {"network": args.network, "tabs": args.tabs, "seconds": args.seconds}
    with BackgroundServer(app) as server:
        ws_url = server.url.replace("http://", "ws://") + "ws"
        if args.export_steps:
            result.update(await export_probe(server.url, ws_url, size, args.export_steps))
            return result
        result["rss_mb_before"] = round(rss_mb(), 1)
        frames: dict[int, list[float]] = {}
        bad: list[str] = []
        getter = asyncio.get_running_loop().run_in_executor(
            None, get_latencies, server.url, time.monotonic() + args.seconds
        )
        await asyncio.gather(*(tab(ws_url, i, size, args.seconds, frames, bad) for i in range(args.tabs)))
        latencies = await getter
        result["rss_mb_peak"] = round(rss_mb(), 1)
        counts = [len(frames.get(i, [])) for i in range(args.tabs)]
        result["frames_per_s_per_tab"] = [round(c / args.seconds, 2) for c in counts]
        result["fairness_most_over_fewest"] = round(max(counts) / max(1, min(counts)), 2)
        result["get_s_median"] = round(statistics.median(latencies), 3) if latencies else None
        result["get_s_max"] = round(max(latencies), 3) if latencies else None
        result["cross_talk"] = bad[:5]
        result.update(await flood_and_probe(ws_url, size))
        for sid in list(app.state.manager._sessions):  # what the idle timeout does, at once
            app.state.manager.remove(sid)
        await asyncio.sleep(1.0)
        import gc

        gc.collect()
        result["rss_mb_after_close"] = round(rss_mb(), 1)
    result["rss_mb_idle_model_loaded"] = round(idle_mb, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--network", default="random-256", help="random-256 (default), a model name or a checkpoint path")
    p.add_argument("--tabs", type=int, default=8, help="tabs dragging at once (default 8)")
    p.add_argument("--seconds", type=float, default=20.0, help="how long they drag (default 20)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--export-steps", type=int, default=0, metavar="N", help="measure an export of an N-step edit")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>28}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
