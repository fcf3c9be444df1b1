"""Studio latency in a real browser: time to the first frame after page load, and frames per second while dragging.

    python benchmarks/studio_latency.py                      # the offline default model (fetched once if needed)
    python benchmarks/studio_latency.py --network PATH --loads 5 --frames 20 --json
    python benchmarks/studio_latency.py --network default --screenshot docs/studio.png

The model is loaded before the timing starts (the studio CLI does the same at start-up: "model cached"). Then
headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) opens the page ``--loads`` times in fresh
browser contexts; *first frame* is the time from navigation start to the first image drawn on the page's canvas
(``performance.now()`` in the page), so it includes the page and module loads, the WebSocket handshake, the
session's mapping + synthesis on the server, JPEG encoding and the browser's decode. Then one tab places a handle
and a target with the mouse and presses Start; after ``--warmup`` frames, the arrival times of the next
``--frames`` frame messages give frames per second (one frame per drag step, as the studio streams them).
Medians are reported; the machine may be shared, so run it a few times. This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def parse_point(text: str) -> tuple[float, float]:
    x, y = (float(v) for v in text.split(","))
    return x, y


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="default", help="registered name or checkpoint path (default: default)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image (default 0)")
    p.add_argument("--loads", type=int, default=3, help="page loads timed for the first frame (default 3)")
    p.add_argument("--frames", type=int, default=10, help="frames timed while dragging (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="frames skipped before timing (default 2)")
    p.add_argument("--handle", type=parse_point, default=None, metavar="X,Y", help="default: 45%%, 45%% of the image")
    p.add_argument("--target", type=parse_point, default=None, metavar="X,Y", help="default: 60%%, 40%% of the image")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--screenshot", type=Path, default=None, help="save a screenshot of the page while dragging")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from dragkit.io import load_generator
    from dragkit.studio.server import BackgroundServer, StudioConfig, create_app

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    G = load_generator(args.network, device=args.device)
    load_s = time.perf_counter() - t0
    H, W = G.img_shape
    handle = args.handle or (round(0.45 * W), round(0.45 * H))
    target = args.target or (round(0.60 * W), round(0.40 * H))
    model_id = Path(args.network).name if Path(args.network).exists() else args.network
    app = create_app(StudioConfig(network=model_id, seed=args.seed, max_steps=10_000), generators={model_id: G})

    first_frames: list[float] = []
    with BackgroundServer(app) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(args.loads):
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.goto(server.url)
            page.wait_for_function("window.dragkit && window.dragkit.stats.firstImageAt !== null", timeout=120_000)
            first_frames.append(page.evaluate("window.dragkit.stats.firstImageAt") / 1000)
            context.close()

        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(server.url)
        page.wait_for_function("window.dragkit && window.dragkit.stats.firstImageAt !== null", timeout=120_000)
        box = page.locator("#overlay").bounding_box()
        assert box is not None

        def at(x: float, y: float) -> tuple[float, float]:
            return box["x"] + (x + 0.5) / W * box["width"], box["y"] + (y + 0.5) / H * box["height"]

        page.mouse.click(*at(*handle))
        page.mouse.click(*at(*target))
        page.wait_for_function("window.dragkit.server.handles.length === 1")
        page.click("#start")
        needed = args.warmup + args.frames
        page.wait_for_function(
            f"window.dragkit.stats.framesReceived >= {needed} || window.dragkit.stats.stops.length > 0",
            timeout=600_000,
        )
        if args.screenshot is not None:
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.screenshot))
        page.click("#stop")
        page.wait_for_function("window.dragkit.stats.stops.length > 0", timeout=600_000)
        st: dict[str, Any] = page.evaluate("window.dragkit.stats")
        browser.close()

    arrivals = st["frameArrivals"][args.warmup : args.warmup + args.frames]
    fps = (len(arrivals) - 1) / ((arrivals[-1] - arrivals[0]) / 1000) if len(arrivals) > 1 else float("nan")
    result = {
        "network": args.network,
        "resolution": [H, W],
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "model_load_s": round(load_s, 2),
        "first_frame_s": [round(v, 3) for v in first_frames],
        "first_frame_median_s": round(statistics.median(first_frames), 3),
        "frames_timed": len(arrivals),
        "drag_fps": round(fps, 2),
        "ms_per_frame": round(1000 / fps, 1) if fps == fps and fps > 0 else None,
        "frames_received": st["framesReceived"],
        "frames_drawn": st["framesDrawn"],
        "distance_first_last": [st["distanceLog"][0], st["distanceLog"][-1]] if st["distanceLog"] else None,
        "stopped": st["stops"],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"studio latency — {args.network} ({H}×{W}) on {args.device}, {result['torch_threads']} torch threads")
        print(f"  model load (not counted)   {load_s:8.2f} s")
        print(
            f"  first frame after load     {result['first_frame_median_s']:8.3f} s  (median of "
            f"{len(first_frames)}: {', '.join(f'{v:.3f}' for v in first_frames)})"
        )
        print(f"  frames while dragging      {result['drag_fps']:8.2f} /s  ({result['ms_per_frame']} ms per frame, "
              f"{len(arrivals)} frames after {args.warmup} warm-up)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
