"""Median milliseconds per drag step of ``impl="reference"`` and ``impl="fast"``, measured in one run.

    python benchmarks/step_time.py --network stylegan2-512-random --steps 5 --json
    python benchmarks/step_time.py --network PATH|default --device cuda
    python benchmarks/step_time.py --network stylegan3-t-256-random --steps 3

``stylegan3-t-256-random`` / ``stylegan3-t-512-random`` build a seeded random-init StyleGAN3-T of NVIDIA's
configuration; for StyleGAN3 a fourth variant runs the fast engine step with the reference ``filtered_lrelu`` in
every layer, and its ratio to the fast op is reported.

``stylegan2-512-random`` builds, in-process, a seeded random-init StyleGAN2 of the official 512 configuration
(z/w 512, 8 mapping layers, channel_base 32768, channel_max 512, conv_clamp 256). Three sessions on the same
latent and points are stepped in turn (reference, fast, fast with a display frame), so that machine noise hits all
of them alike; after ``--warmup`` untimed steps each, every step is timed and the medians and ratios are
reported (``check_share_of_fast_step``: the quality guard's check, one display frame every ``GUARD_EVERY`` steps,
as a fraction of a fast step). The reference path always has its frame (it runs the whole generator). On a machine
shared with other jobs, ``--threads 1`` gives much steadier numbers than two threads competing for two busy cores.
This is a benchmark, not a test.

``--cli N`` also times what a user of ``dragkit drag`` waits for, in the same run (the network must be one the
CLI loads, e.g. ``default``): a 1-step drag without videos (start-up, load, first image, outputs; ``import torch``
alone is timed beside it), and N-step drags (one handle, no early stop) with and without the trajectory videos:
seconds per step of the drag loop (frames rendered during the drag included) and the seconds from the last step
until the videos are written, with the per-step ratios against the engine's fast step.

    python benchmarks/step_time.py --network default --steps 5 --cli 100
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dragkit.engine import DragConfig, DragSession
from dragkit.engine.guard import GUARD_EVERY
from dragkit.engine.trackers import TRACKERS
from dragkit.nn.protocol import Generator

RANDOM_512 = "stylegan2-512-random"
#: Seeded random-init StyleGAN3-T of NVIDIA's configuration at these resolutions (``stylegan3-t-256-random`` …).
RANDOM_SG3 = {f"stylegan3-t-{res}-random": res for res in (256, 512)}


def build_generator(network: str, device: torch.device) -> tuple[Generator, str]:
    """The benchmark network and a description of it."""
    if network == RANDOM_512:
        from dragkit.nn.stylegan2 import StyleGAN2Config, StyleGAN2Generator

        cfg = StyleGAN2Config(
            z_dim=512,
            w_dim=512,
            img_resolution=512,
            mapping_layers=8,
            channel_base=32768,
            channel_max=512,
            conv_clamp=256,
        )
        torch.manual_seed(0)
        G = StyleGAN2Generator(cfg).eval().requires_grad_(False).to(device)
        return G, "random-init StyleGAN2, official 512 config (channel_base 32768, channel_max 512)"
    if network in RANDOM_SG3:
        from dragkit.nn.stylegan3 import StyleGAN3Config, StyleGAN3Generator

        res = RANDOM_SG3[network]
        torch.manual_seed(0)
        G3 = StyleGAN3Generator(StyleGAN3Config(img_resolution=res)).eval().requires_grad_(False).to(device)
        return G3, f"random-init StyleGAN3-T, NVIDIA's config at {res}×{res} (channel_base 32768, channel_max 512)"
    from dragkit.io import load_generator

    return load_generator(network, device=device), network


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    G: Generator, steps: int, warmup: int, device: torch.device, seed: int, trackers: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Step reference, fast and fast+frame sessions in turn (plus a fast session per tracker in ``trackers``,
    interleaved in the same loop); return the median ms/step of each. For a StyleGAN3 (a generator with
    ``set_impl``) a fast session whose layers use the reference ``filtered_lrelu`` runs too
    (``fast_filtered_lrelu_ref``); every other variant uses the fast op."""
    H, W = G.img_shape
    handles = [(0.40 * W, 0.50 * H), (0.55 * W, 0.35 * H)]
    targets = [(0.55 * W, 0.55 * H), (0.60 * W, 0.20 * H)]  # far enough never to be reached in the run
    variants = {
        "reference": ("reference", False, None),
        "fast": ("fast", False, None),
        "fast_with_frame": ("fast", True, None),
        **{f"fast_tracker_{t}": ("fast", False, t) for t in trackers},
    }
    set_impl = getattr(G, "set_impl", None)
    if set_impl is not None:
        variants["fast_filtered_lrelu_ref"] = ("fast", False, None)
    sessions = {}
    for name, (impl, _, tracker) in variants.items():
        config = DragConfig(impl=impl, stop_rule=0.5, **({} if tracker is None else {"tracker": tracker}))
        sess = DragSession.from_seed(G, seed, psi=0.7, config=config)
        sess.set_points([(round(x), round(y)) for x, y in handles], [(round(x), round(y)) for x, y in targets])
        sessions[name] = sess
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(warmup + steps):
        for name, (_, render, _) in variants.items():
            if set_impl is not None:
                set_impl("ref" if name == "fast_filtered_lrelu_ref" else "fast")
            _sync(device)
            start = time.perf_counter()
            sessions[name].step(render=render)
            _sync(device)
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    median = {name: statistics.median(t) for name, t in times.items()}
    handles_equal = sessions["reference"].handles == sessions["fast"].handles
    return {
        "ms_per_step": {k: round(v, 1) for k, v in median.items()},
        "ms_all": {k: [round(v, 1) for v in t] for k, t in times.items()},
        "ratio_reference_over_fast": round(median["reference"] / median["fast"], 2),
        "ratio_reference_over_fast_with_frame": round(median["reference"] / median["fast_with_frame"], 2),
        # the quality guard's check renders one frame every GUARD_EVERY steps: its share of a fast step
        "check_share_of_fast_step": round(
            (median["fast_with_frame"] - median["fast"]) / GUARD_EVERY / median["fast"], 3
        ),
        **{f"ratio_tracker_{t}_over_fast": round(median[f"fast_tracker_{t}"] / median["fast"], 2) for t in trackers},
        **(
            {"ratio_filtered_lrelu_ref_over_fast": round(median["fast_filtered_lrelu_ref"] / median["fast"], 2)}
            if set_impl is not None
            else {}
        ),
        "same_handles_after_run": handles_equal,
        "max_latent_difference": float((sessions["reference"].ws - sessions["fast"].ws).abs().max()),
    }


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure_cli(network: str, image_shape: tuple[int, int], steps: int, seed: int, repeats: int = 3) -> dict[str, Any]:
    """Wall times of ``dragkit drag`` runs (see the module docstring); ``repeats`` runs of the 1-step drag."""
    H, W = image_shape
    point = ["--handle", f"{round(0.40 * W)},{round(0.50 * H)}", "--target", f"{round(0.55 * W)},{round(0.55 * H)}"]
    base = [sys.executable, "-m", "dragkit", "drag", "--network", network, "--seed", str(seed), *point]
    base += ["--stop-rule", "0.5"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        torch_import = statistics.median(_wall([sys.executable, "-c", "import torch"]) for _ in range(repeats))
        one = statistics.median(
            _wall([*base, "--steps", "1", "--no-video", "--outdir", str(out / "one")]) for _ in range(repeats)
        )
        runs: dict[str, dict[str, Any]] = {}
        for name, extra in (("no_video", ["--no-video"]), ("video", [])):
            wall = _wall([*base, "--steps", str(steps), *extra, "--outdir", str(out / name)])
            result = json.loads((out / name / "result.json").read_text())
            runs[name] = {
                "wall_s": round(wall, 2),
                "steps": result["steps"],
                "s_per_step": round(result["seconds"] / result["steps"], 3),
                "video_s_after_last_step": result["video_seconds"],
                "video_frames": result["video_frames"],
            }
    return {"cli_one_step_s": round(one, 2), "import_torch_s": round(torch_import, 2), "cli_runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--network",
        default=RANDOM_512,
        help=f"checkpoint path, model name, {RANDOM_512} or {' / '.join(RANDOM_SG3)}",
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent (default 0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's; 1 is steadier on a busy machine)",
    )
    parser.add_argument(
        "--trackers",
        nargs="*",
        default=[],
        choices=list(TRACKERS),
        help="also time a fast step with each of these trackers (e.g. --trackers nn patch freedrag hybrid)",
    )
    parser.add_argument(
        "--cli",
        type=int,
        default=0,
        metavar="N",
        help="also time dragkit drag: a 1-step run and N-step runs with and without videos (see above)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.cli and (args.network == RANDOM_512 or args.network in RANDOM_SG3):
        parser.error(f"--cli needs a network the CLI loads (e.g. default), not {RANDOM_512}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    G, description = build_generator(args.network, device)
    feature_block = G.drag_hints().feature_block
    level = G.feature_levels()[feature_block]
    result = {
        "network": description,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "image_shape": list(G.img_shape),
        "feature_level": f"{level.name} ({level.channels}×{level.resolution}²)",
        "steps": args.steps,
        "warmup": args.warmup,
        **measure(G, args.steps, args.warmup, device, args.seed, tuple(args.trackers)),
    }
    if args.cli:
        cli = measure_cli(args.network, G.img_shape, args.cli, args.seed)
        fast = result["ms_per_step"]["fast"] / 1000
        for run in cli["cli_runs"].values():
            run["ratio_over_engine_fast_step"] = round(run["s_per_step"] / fast, 2)
        result.update(cli)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>38}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
