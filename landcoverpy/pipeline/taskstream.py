"""Where a run's time went, from the Dask task stream: per kind of task (the first word of our
task keys: mask, band, indices, series, sample, block, ...) how many ran, their compute seconds,
and how busy the workers were while that kind was running. The numeric core works on plain
records (``summarise``); ``collect`` gathers them from a live cluster."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from distributed import get_task_stream


@dataclass(frozen=True)
class TaskRun:
    """One task's compute interval on one worker (seconds since the epoch)."""

    kind: str
    key: str
    worker: str
    start: float
    stop: float


@dataclass(frozen=True)
class KindSummary:
    kind: str
    tasks: int
    compute_s: float  # summed over tasks
    longest_s: float
    span_s: float  # first start to last stop of this kind
    busy: float  # share of the workers' time inside the span spent computing any task

    def line(self) -> str:
        return (
            f"{self.kind:<10} {self.tasks:5d} tasks {self.compute_s:9.1f} s compute (longest {self.longest_s:.1f} s) "
            f"over {self.span_s:7.1f} s; workers busy {100 * self.busy:5.1f} %"
        )


def kind_of(key: Any) -> str:
    """``band-composite-...-1a2b3c4d`` -> ``band`` (Dask keys may be tuples)."""
    text = key[0] if isinstance(key, tuple) else str(key)
    return text.split("-", 1)[0] or text


def runs_from_stream(records: list[dict[str, Any]]) -> list[TaskRun]:
    """Compute intervals from ``distributed``'s task-stream records (transfers and disk IO left
    out: they overlap compute on other threads)."""
    out = []
    for rec in records:
        for ss in rec.get("startstops", ()):
            if ss.get("action") == "compute":
                out.append(
                    TaskRun(
                        kind_of(rec["key"]),
                        str(rec["key"]),
                        str(rec.get("worker", "?")),
                        float(ss["start"]),
                        float(ss["stop"]),
                    )
                )
    return sorted(out, key=lambda r: r.start)


def _busy_seconds(runs: list[TaskRun], lo: float, hi: float) -> float:
    """Seconds of [lo, hi] each worker spent computing, summed over workers (a worker's
    overlapping intervals, from several threads, count once)."""
    total = 0.0
    for worker in {r.worker for r in runs}:
        spans = sorted((max(r.start, lo), min(r.stop, hi)) for r in runs if r.worker == worker)
        end = lo
        for a, b in spans:
            if b <= max(a, end):  # outside [lo, hi], or already counted
                continue
            total += b - max(a, end)
            end = b
    return total


def summarise(runs: list[TaskRun], workers: int) -> list[KindSummary]:
    """One summary per kind, in the order the kinds first ran. ``busy`` is measured over the
    kind's span on ``workers`` workers, counting any task (what overlaps a kind is also work)."""
    kinds: dict[str, list[TaskRun]] = {}
    for r in runs:
        kinds.setdefault(r.kind, []).append(r)
    out = []
    for kind, own in kinds.items():
        lo, hi = min(r.start for r in own), max(r.stop for r in own)
        span = hi - lo
        busy = _busy_seconds(runs, lo, hi) / (span * max(1, workers)) if span > 0 else 1.0
        out.append(
            KindSummary(
                kind,
                len(own),
                sum(r.stop - r.start for r in own),
                max(r.stop - r.start for r in own),
                span,
                min(1.0, busy),
            )
        )
    return out


def to_csv(runs: list[TaskRun]) -> str:
    """The task stream as CSV (seconds from the first task's start; ``start_unix`` to line it up
    with other clocks), for a spreadsheet or pandas."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["kind", "key", "worker", "start_s", "stop_s", "seconds", "start_unix"])
    t0 = min((r.start for r in runs), default=0.0)
    for r in runs:
        w.writerow(
            [
                r.kind,
                r.key,
                r.worker,
                f"{r.start - t0:.3f}",
                f"{r.stop - t0:.3f}",
                f"{r.stop - r.start:.3f}",
                f"{r.start:.3f}",
            ]
        )
    return buf.getvalue()


class Collected:
    """Filled when the ``collect`` block ends."""

    def __init__(self) -> None:
        self.runs: list[TaskRun] = []
        self.workers = 0


@contextlib.contextmanager
def collect(client: Any) -> Iterator[Collected]:
    """The task stream of everything the block ran on ``client``'s cluster."""

    got = Collected()
    with get_task_stream(client) as ts:
        yield got
    got.runs = runs_from_stream(list(ts.data))
    got.workers = max(len(client.scheduler_info().get("workers", {})), len({r.worker for r in got.runs}))
