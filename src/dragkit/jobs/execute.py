"""Run many cases — evaluation edits or batch drags — serially or as Ray tasks, into one resumable JSONL file.

A *case* is a frozen dataclass with an ``id`` (unique in its run); a *worker spec* is a picklable object whose
``build()`` returns a worker: it loads the model once and then runs case after case (``worker.run(case)`` →
:class:`Outcome`: one JSON record plus the files the case writes). :func:`execute` feeds the cases that are not
finished yet to one worker (serial, the default: no Ray needed) or to one Ray actor per worker slot of a cluster
(``ray=``), and the driver — this process — owns the output: it writes each case's files under
``<out>/cases/<id>/`` and then appends its record to the JSONL, so a record means a complete case.

- **Resumable**: :class:`ResultLog` reads what an earlier run wrote; finished cases are skipped, failed ones
  (records with ``"error"``) run again. A line cut off by a kill is dropped on open.
- **Workers that die** (a killed process, a lost node): the case they held goes back into the queue (at most
  :data:`MAX_ATTEMPTS` tries per case); Ray restarts the actor, which loads its model again.
- **Equal results either way**: a worker runs a case the same in both modes; the record's ``worker`` (host, pid)
  and ``seconds`` are the only fields that differ between a serial and a Ray run (:data:`VOLATILE`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from dragkit.errors import InvalidInputError
from dragkit.files import atomic_path

logger = logging.getLogger(__name__)

#: Tries per case when its worker dies under it (a case that raises is recorded as an error at once).
MAX_ATTEMPTS = 3
#: Record fields that depend on where and how fast a case ran, not on what it computed.
VOLATILE = ("worker", "seconds")


class Case(Protocol):
    """What :func:`execute` needs of a case: a stable, path-safe ``id``."""

    @property
    def id(self) -> str: ...


@dataclass
class Outcome:
    """What a worker returns for one case: its JSON ``record`` (the executor adds ``id`` and ``worker``) and
    ``files`` (name → bytes) the driver writes under ``<out>/cases/<id>/``."""

    record: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


class Worker(Protocol):
    """Runs cases one after another in one process (the model loaded once)."""

    def run(self, case: Any) -> Outcome: ...


class WorkerSpec(Protocol):
    """Picklable recipe of a worker: sent to each Ray actor, which builds its worker once."""

    def build(self) -> Worker: ...


def case_dir(out: Path, case_id: str) -> Path:
    """Where the files of case ``case_id`` go."""
    return out / "cases" / case_id


class ResultLog:
    """The JSONL of one run: one record per case, appended as cases finish; the last record of an id wins.

    ``path``: the file (created if missing). A last line without its newline (the driver was killed while
    writing it) is cut off on open.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.is_file():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with open(path, "r+b") as f:
                    f.truncate(end)
                data = data[:end]
            for line in data.decode("utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                    self.records[rec["id"]] = rec
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def finished(self) -> set[str]:
        """Ids with a record that is not an error."""
        return {k for k, r in self.records.items() if "error" not in r}

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (it must have an ``id``) and flush."""
        self.records[record["id"]] = record
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def in_order(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """The records of ``ids`` that exist, in that order."""
        return [self.records[i] for i in ids if i in self.records]


def check_run_settings(out: Path, settings: dict[str, Any]) -> None:
    """Write ``<out>/run.json`` with ``settings`` (JSON), or check that an earlier run in ``out`` used the same:
    results of other settings are never mixed into one file (:class:`InvalidInputError` names what differs)."""
    path = out / "run.json"
    if path.is_file():
        earlier = json.loads(path.read_text(encoding="utf-8"))
        if earlier != settings:
            keys = sorted(k for k in set(earlier) | set(settings) if earlier.get(k) != settings.get(k))
            raise InvalidInputError(
                f"{out} holds results of other settings ({', '.join(keys)} differ): use another --out, or the "
                "same settings to resume"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


@dataclass
class RunStats:
    """How a run went: cases done now, skipped as finished before, failed (error records), worker restarts,
    workers, wall seconds."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    workers: int = 1
    seconds: float = 0.0
    mode: str = "serial"


def _worker_id() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _run_one(worker: Worker, case: Any) -> Outcome:
    """Run ``case``; an exception becomes an error record (the run goes on with the next case)."""
    start = time.perf_counter()
    try:
        outcome = worker.run(case)
    except Exception as exc:  # recorded, not raised: one bad case must not end a run of thousands
        logger.exception("case %s failed", case.id)
        outcome = Outcome({"error": f"{type(exc).__name__}: {exc}"})
    outcome.record = {
        "id": case.id,
        **outcome.record,
        "seconds": round(time.perf_counter() - start, 3),
        "worker": _worker_id(),
    }
    return outcome


class _Sink:
    """The driver's side: files first, then the record; progress and counts."""

    def __init__(self, out: Path, log: ResultLog, bar: tqdm, stats: RunStats) -> None:
        self.out, self.log, self.bar, self.stats = out, log, bar, stats

    def __call__(self, outcome: Outcome) -> None:
        case_id = outcome.record["id"]
        if outcome.files:
            folder = case_dir(self.out, case_id)
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in outcome.files.items():
                with atomic_path(folder / name) as tmp:
                    tmp.write_bytes(data)
        self.log.write(outcome.record)
        if "error" in outcome.record:
            self.stats.failed += 1
        else:
            self.stats.done += 1
        self.bar.update(1)


def execute(
    spec: WorkerSpec,
    cases: Sequence[Any],
    out: Path,
    log: ResultLog,
    *,
    ray: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    desc: str = "cases",
) -> RunStats:
    """Run every case of ``cases`` that ``log`` has not finished; see the module docstring.

    ``ray``: None runs serially in this process; ``"auto"`` starts a local Ray instance on this machine's cores;
    any other value is a cluster address (``HOST:PORT``, or ``ray://…``) to join. ``workers``: Ray actors (default:
    one per ``threads`` CPUs the cluster has, or one per GPU when the spec's device is CUDA). ``threads``: torch
    threads of each worker (default: all cores serially, 1 per Ray actor).
    """
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("case ids must be unique within a run")
    finished = log.finished()
    todo = [c for c in cases if c.id not in finished]
    stats = RunStats(skipped=len(cases) - len(todo))
    start = time.perf_counter()
    bar = tqdm(total=len(cases), initial=stats.skipped, desc=desc, unit="case", disable=None if progress else True)
    sink = _Sink(out, log, bar, stats)
    try:
        if not todo:
            pass
        elif ray is None:
            _serial(spec, todo, sink, threads)
        else:
            _on_ray(spec, todo, sink, stats, ray, workers, threads)
    finally:
        bar.close()
    stats.seconds = round(time.perf_counter() - start, 2)
    return stats


def _serial(spec: WorkerSpec, cases: Sequence[Any], sink: Callable[[Outcome], None], threads: int | None) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    worker = spec.build()
    for case in cases:
        sink(_run_one(worker, case))


class _Actor:
    """One Ray actor: builds its worker once, then runs cases (Ray restarts it, and so reloads, if it dies)."""

    def __init__(self, spec: WorkerSpec, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.worker = spec.build()

    def ready(self) -> bool:
        return True

    def run(self, case: Any) -> Outcome:
        return _run_one(self.worker, case)


def _connect(ray_module: Any, address: str) -> None:
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address == "auto":  # a fresh local instance on this machine's cores (Ray's own "auto" joins an existing one)
        ray_module.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **quiet)
    else:
        ray_module.init(address=address, **quiet)


def _on_ray(
    spec: WorkerSpec,
    cases: Sequence[Any],
    sink: _Sink,
    stats: RunStats,
    address: str,
    workers: int | None,
    threads: int | None,
) -> None:
    try:
        import ray
        from ray.exceptions import RayActorError, RayTaskError
    except ImportError:
        raise InvalidInputError("--ray needs Ray: pip install 'dragkit[ray]'") from None
    own = not ray.is_initialized()
    if own:
        _connect(ray, address)
    try:
        cpus = threads or 1
        use_gpu = str(getattr(spec, "device", "cpu")).startswith("cuda")
        if use_gpu:
            slots = int(ray.cluster_resources().get("GPU", 0))
            if slots < 1:
                raise InvalidInputError("the spec asks for CUDA but the Ray cluster has no GPU")
        else:
            slots = int(ray.cluster_resources().get("CPU", 1) // cpus)
        n = max(1, min(workers or slots, len(cases)))
        stats.workers, stats.mode = n, f"ray ({address})"
        actor_cls = ray.remote(max_restarts=-1, max_task_retries=0)(_Actor)
        actors = [actor_cls.options(num_cpus=cpus, num_gpus=1 if use_gpu else 0).remote(spec, cpus) for _ in range(n)]
        queue: deque[Any] = deque(cases)
        attempts: dict[str, int] = {}
        idle: list[Any] = list(actors)
        running: dict[Any, tuple[Any, Any]] = {}  # task ref → (actor, case)
        waking: dict[Any, Any] = {}  # ready() ref → actor being restarted
        while queue or running:
            while idle and queue:
                actor, case = idle.pop(), queue.popleft()
                running[actor.run.remote(case)] = (actor, case)
            if not running and not waking:
                raise RuntimeError("every Ray worker is gone: no case can run")
            ready, _ = ray.wait([*running, *waking], num_returns=1)
            ref = ready[0]
            if ref in waking:
                actor = waking.pop(ref)
                try:
                    ray.get(ref)
                    idle.append(actor)
                except RayActorError:
                    logger.warning("a Ray worker could not be restarted; going on with the others")
                continue
            actor, case = running.pop(ref)
            try:
                outcome = ray.get(ref)
            except RayActorError:
                attempts[case.id] = attempts.get(case.id, 0) + 1
                stats.retried += 1
                if attempts[case.id] >= MAX_ATTEMPTS:
                    sink(Outcome({"id": case.id, "error": f"its worker died {MAX_ATTEMPTS} times"}))
                else:
                    logger.warning("the worker running case %s died: running it again", case.id)
                    queue.appendleft(case)
                waking[actor.ready.remote()] = actor
                continue
            except RayTaskError as exc:  # the case could not even reach its worker (e.g. it does not pickle)
                outcome = Outcome({"id": case.id, "error": f"{type(exc.cause).__name__}: {exc.cause}"})
            sink(outcome)
            idle.append(actor)
    finally:
        if own:
            ray.shutdown()
