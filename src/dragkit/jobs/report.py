"""What an evaluation writes beside its JSONL: ``summary.json``, ``summary.md`` (the numbers, the paper's beside
them, how the run went) and figures (matplotlib, where installed: ``pip install 'dragkit[eval]'``)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dragkit.files import atomic_path
from dragkit.jobs.execute import RunStats
from dragkit.jobs.landmarks import PAPER_MD, PAPER_MD_NO_EDIT, summarise
from dragkit.jobs.reconstruction import PAPER_MSE, summarise_reconstruction
from dragkit.jobs.speed import PAPER_EDIT_SECONDS
from dragkit.jobs.tracking import BASELINE, summarise_tracking

logger = logging.getLogger(__name__)


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def run_lines(stats: RunStats, settings: dict[str, Any]) -> list[str]:
    """The "how it ran" part of a summary."""
    return [
        f"- model: `{settings.get('network')}`, device {settings.get('device')}",
        f"- run: {stats.mode}, {stats.workers} worker(s); {stats.done} case(s) run now, {stats.skipped} finished "
        f"earlier, {stats.failed} failed, {stats.retried} re-run after a worker died; wall time {stats.seconds:.0f} s",
    ]


def landmarks_report(
    out: Path, stats: RunStats, settings: dict[str, Any], records: list[dict[str, Any]], points: list[int]
) -> list[Path]:
    """Write ``summary.json``, ``summary.md``, ``landmarks.png`` (MD against no-edit MD per edit) and
    ``examples.png`` (source | target | result of the first pairs) for the point counts ``points``; returns the
    paths written."""
    summary = summarise(records, points)
    lines = [
        "# Face landmarks (DragGAN Table 1)",
        "",
        "Mean distance (MD, pixels at 512×512) between the dragged landmarks and their targets after the edit, "
        "found again by dlib. The ratio MD / no-edit MD compares across models; the paper's DragGAN ran on "
        "StyleGAN2 FFHQ at 512².",
        "",
        "| points | edits | MD | no-edit MD | ratio | ratio, lost = no edit | faces lost | arrived | s / edit | "
        "paper MD | paper no-edit | paper ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n, s in summary.items():
        k = int(n)
        paper = PAPER_MD.get(k)
        paper0 = PAPER_MD_NO_EDIT.get(k)
        lines.append(
            f"| {n} | {s['edits']} | {_fmt(s.get('md'))} | {_fmt(s.get('md_no_edit'))} | {_fmt(s.get('ratio'), 3)} "
            f"| {_fmt(s.get('ratio_lost_as_no_edit'), 3)} | {_fmt(s.get('face_lost'))} | {_fmt(s.get('arrived'))} "
            f"| {_fmt(s.get('seconds_per_edit'), 1)} | {_fmt(paper)} | {_fmt(paper0)} "
            f"| {_fmt(None if paper is None or paper0 is None else paper / paper0, 3)} |"
        )
    skipped = sum(s.get("skipped", 0) for s in summary.values())
    lines += ["", *run_lines(stats, settings)]
    if skipped:
        lines.append(f"- skipped edits (no face found in a pair's images): {skipped}")
    lines += ["", "Figures: `landmarks.png` (each edit's MD against doing nothing), `examples.png`.", ""]
    return _write_report(
        out, {"summary": summary, "settings": settings}, lines, {"landmarks.png": _landmarks_figure(records)}
    )


def reconstruction_report(
    out: Path, stats: RunStats, settings: dict[str, Any], records: list[dict[str, Any]]
) -> list[Path]:
    """Write ``summary.json``, ``summary.md``, ``reconstruction.png`` (MSE after the drag against no edit per
    pair) and ``examples.png`` (I1 with handles → targets | I2 | result); returns the paths written."""
    s = summarise_reconstruction(records)
    paper = ", ".join(f"{k} {v}" for k, v in PAPER_MSE.items())
    lines = [
        "# Paired image reconstruction (the shape of DragGAN Table 2)",
        "",
        f"I1 (seed's latent w1) dragged for at most {settings['config']['max_steps']} steps along "
        f"{settings['handles']} optical-flow correspondences towards I2 (w1's 4² and 8² rows moved "
        f"{settings['perturb']} of the way towards another latent). Mean squared error of RGB in [0, 1], ×100.",
        "",
        "| | MSE×100 | in the moving region | outside it | LPIPS |",
        "| --- | --- | --- | --- | --- |",
        f"| after the drag | {_fmt(s.get('mse'), 3)} | {_fmt(s.get('mse_moving'), 3)} | {_fmt(s.get('mse_static'), 3)} "
        f"| {_fmt(s.get('lpips'), 3)} |",
        f"| no edit (I1 against I2) | {_fmt(s.get('mse_no_edit'), 3)} | {_fmt(s.get('mse_moving_no_edit'), 3)} "
        f"| {_fmt(s.get('mse_static_no_edit'), 3)} | |",
        "",
        f"- pairs: {s['cases']}; ratio MSE / no-edit MSE: {_fmt(s.get('ratio'), 3)}; mean flow at the handles: "
        f"{_fmt(s.get('flow_px'))} px; steps: {_fmt(s.get('steps'), 1)}; arrived: {_fmt(s.get('arrived'))}",
        f"- the paper's DragGAN, MSE×100 on other StyleGAN2 models with RAFT flow: {paper}",
        "- correspondences: OpenCV's DIS optical flow (weight-free). RAFT, the paper's flow, needs weights that no "
        "package ships, so it is not used.",
        "- LPIPS: "
        + (
            "LPIPS-VGG"
            if s.get("lpips") is not None
            else "not measured (torchvision's VGG16 weights are not present; pass --vgg16)"
        ),
        *run_lines(stats, settings),
        "",
        "Figures: `reconstruction.png` (each pair against doing nothing), `examples.png`.",
        "",
    ]
    rs = [r for r in records if "mse" in r]
    figure = _scatter(
        [r["mse_no_edit"] for r in rs],
        [r["mse"] for r in rs],
        "MSE×100, no edit (I1 against I2)",
        "MSE×100 after the drag",
        "Paired reconstruction: each pair",
    )
    return _write_report(out, {"summary": s, "settings": settings}, lines, {"reconstruction.png": figure})


def tracking_report(out: Path, stats: RunStats, settings: dict[str, Any], records: list[dict[str, Any]]) -> list[Path]:
    """Write ``summary.json``, ``summary.md`` (trackers ranked against Lucas–Kanade) and ``tracking.png`` (mean
    error per step of each); returns the paths written."""
    summary = summarise_tracking(records)
    lines = [
        "# Point tracking on recorded drags",
        "",
        f"Drags of {settings['points']} face landmarks (at most {settings['config']['max_steps']} steps, tracker "
        f"`{settings['config']['tracker']}` driving); every tracker replayed on the recorded features, and OpenCV's "
        "Lucas–Kanade on the images, measured against dlib's landmarks on every step (pixels at 512×512).",
        "",
        "| rank | tracker | mean error | error at the last step | cases better than Lucas–Kanade |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, t in summary["trackers"].items():
        label = f"{name} (baseline)" if name == BASELINE else f"`{name}`"
        better = "–" if t["better_than_lk"] is None else f"{t['better_than_lk']} of {summary['cases']}"
        lines.append(f"| {t['rank']} | {label} | {_fmt(t['mean'])} | {_fmt(t['final'])} | {better} |")
    lines += [
        "",
        f"- cases: {summary['cases']} (skipped: {summary['skipped']}); steps per recorded drag: "
        f"{_fmt(summary.get('steps'), 1)}",
        *run_lines(stats, settings),
        "",
        "Figure: `tracking.png` (mean error per step).",
        "",
    ]
    return _write_report(out, {"summary": summary, "settings": settings}, lines, {"tracking.png": _curves(records)})


def speed_report(out: Path, stats: RunStats, settings: dict[str, Any], records: list[dict[str, Any]]) -> list[Path]:
    """Write ``summary.json`` and ``summary.md`` (a row per model and device) and ``speed.png`` (ms per step);
    returns the paths written."""
    rs = [r for r in records if "step_ms" in r]
    lines = [
        "# Speed",
        "",
        f"One handle dragged H/8 to the right; median of {settings['timed_steps']} timed steps after "
        f"{settings['warmup']} untimed ones, and a whole {settings['edit_steps']}-step edit with its final image. The "
        f"paper reports about {PAPER_EDIT_SECONDS} s per 1-point face edit on an A100.",
        "",
        "| model | image | device | ms / step (min – max) | edit (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rs:
        lines.append(
            f"| `{r['network']}` | {r['image_shape'][0]}×{r['image_shape'][1]} | {r['device']} | {r['step_ms']:.0f} "
            f"({r['step_ms_min']:.0f} – {r['step_ms_max']:.0f}) | {r['edit_seconds']:.1f} |"
        )
    failed = [r for r in records if "error" in r]
    shown = {**settings, "network": ", ".join(settings["network"]), "device": ", ".join(settings["device"])}
    lines += ["", *(f"- {r['id']}: {r['error']}" for r in failed), *run_lines(stats, shown), ""]
    figure = None
    plt = _pyplot()
    if plt is not None and rs:
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(rs)), dpi=120)
        labels = [f"{r['network']} ({r['image_shape'][0]}²) {r['device']}" for r in rs]
        ax.barh(labels, [r["step_ms"] for r in rs])
        ax.set_xlabel("ms per drag step (median)")
        ax.invert_yaxis()
        figure = _png(fig, plt)
    return _write_report(out, {"cases": rs, "settings": settings}, lines, {"speed.png": figure})


def _write_report(out: Path, summary: dict[str, Any], lines: list[str], figures: dict[str, bytes | None]) -> list[Path]:
    """``summary.json``, ``summary.md`` (``lines``), the figures that were drawn and ``examples.png`` from the case
    panels; returns the paths written."""
    _write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _write(out / "summary.md", "\n".join(lines))
    written = [out / "summary.json", out / "summary.md"]
    for name, data in figures.items():
        if data is not None:
            _save_png(data, out / name)
            written.append(out / name)
    panels = sorted((out / "cases").glob("*/panel.png")) if (out / "cases").is_dir() else []
    if panels:
        _stack(panels, out / "examples.png")
        written.append(out / "examples.png")
    return written


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("figures need matplotlib: pip install 'dragkit[eval]'")
        return None
    return plt


def _png(fig: Any, plt: Any) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _scatter(x: list[float], y: list[float], xlabel: str, ylabel: str, title: str) -> bytes | None:
    plt = _pyplot()
    if plt is None or not x:
        return None
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
    top = max(max(x), max(y)) * 1.05
    ax.plot([0, top], [0, top], color="grey", lw=1, label="no progress")
    ax.scatter(x, y, s=18)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig, plt)


def _curves(records: list[dict[str, Any]]) -> bytes | None:
    """Mean error per step over the cases, one line per tracker."""
    plt = _pyplot()
    rs = [r for r in records if "trackers" in r]
    if plt is None or not rs:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for name in rs[0]["trackers"]:
        length = max(len(r["trackers"][name]["per_step"]) for r in rs)
        mean = []
        for k in range(length):
            at = [r["trackers"][name]["per_step"][k] for r in rs if k < len(r["trackers"][name]["per_step"])]
            kept = [v for v in at if v is not None]
            mean.append(float(np.mean(kept)) if kept else np.nan)
        ax.plot(
            range(length), mean, label=name, lw=2 if name == BASELINE else 1.2, ls="--" if name == BASELINE else "-"
        )
    ax.set_xlabel("step")
    ax.set_ylabel("distance to dlib's landmark (px at 512²)")
    ax.set_title("Tracking error along recorded drags")
    ax.legend(fontsize=8)
    return _png(fig, plt)


def _save_png(data: bytes, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _stack(paths: list[Path], dest: Path) -> None:
    """The case panels one under another (at most 8)."""
    images = [Image.open(p).convert("RGB") for p in paths[:8]]
    width = max(im.width for im in images)
    sheet = Image.new("RGB", (width, sum(im.height for im in images)), "white")
    y = 0
    for im in images:
        sheet.paste(im, (0, y))
        y += im.height
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    _save_png(buf.getvalue(), dest)


def _landmarks_figure(records: list[dict[str, Any]]) -> bytes | None:
    """Scatter of MD against no-edit MD per edit, one colour per point count (lost faces on the no-edit line)."""
    plt = _pyplot()
    if plt is None:
        return None
    rs = [r for r in records if "md_no_edit" in r]
    if not rs:
        return None
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
    top = max(max(r["md_no_edit"] for r in rs), max((r["md"] or 0) for r in rs)) * 1.05
    ax.plot([0, top], [0, top], color="grey", lw=1, label="no progress")
    for n in sorted({r["points"] for r in rs}):
        sel = [r for r in rs if r["points"] == n]
        x = np.array([r["md_no_edit"] for r in sel])
        y = np.array([r["md_no_edit"] if r["md"] is None else r["md"] for r in sel])
        lost = np.array([r["md"] is None for r in sel])
        ax.scatter(x[~lost], y[~lost], s=18, label=f"{n} point(s)")
        if lost.any():
            ax.scatter(x[lost], y[lost], s=30, marker="x", color="black", label=f"{n}: face lost")
    ax.set_xlabel("MD with no edit (px at 512²)")
    ax.set_ylabel("MD after the drag (px at 512²)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.legend(fontsize=8)
    ax.set_title("Face landmarks: each edit")
    return _png(fig, plt)
