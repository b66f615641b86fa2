"""Where a run's time went: the task-stream summary per kind of task (computed on records shaped
as distributed's task stream gives them)."""

from __future__ import annotations

import csv
import io

import pytest

from landcoverpy.pipeline.taskstream import kind_of, runs_from_stream, summarise, to_csv


def record(key: str, worker: str, start: float, stop: float) -> dict:
    return {
        "key": key,
        "worker": worker,
        "status": "OK",
        "startstops": (
            {"action": "transfer", "start": start - 1, "stop": start},
            {"action": "compute", "start": start, "stop": stop},
        ),
    }


def test_kinds_come_from_our_task_keys() -> None:
    assert kind_of("band-composite-18SVG-abc-B02-1a2b3c4d") == "band"
    assert kind_of(("block-map-x", 0)) == "block"
    assert kind_of("indices-composite-x-ffff0000") == "indices"


def test_busy_share_counts_idle_workers() -> None:
    t0 = 1000.0
    stream = [
        # two workers share 4 band tasks of 10 s: no idle time
        record("band-c-B02-1", "w1", t0, t0 + 10),
        record("band-c-B03-2", "w2", t0, t0 + 10),
        record("band-c-B04-3", "w1", t0 + 10, t0 + 20),
        record("band-c-B08-4", "w2", t0 + 10, t0 + 20),
        # then one index task of 10 s while the other worker waits: half the workers' time idle
        record("indices-c-5", "w1", t0 + 20, t0 + 30),
    ]
    runs = runs_from_stream(stream)
    assert len(runs) == 5  # compute intervals only, transfers left out
    by_kind = {k.kind: k for k in summarise(runs, workers=2)}
    assert list(by_kind) == ["band", "indices"]
    band, idx = by_kind["band"], by_kind["indices"]
    assert (band.tasks, band.compute_s, band.span_s, band.longest_s) == (4, 40.0, 20.0, 10.0)
    assert band.busy == pytest.approx(1.0)
    assert idx.busy == pytest.approx(0.5)
    # on a cluster of 4 workers where only 2 ran tasks, the same stream is 50 % / 25 % busy
    by_kind = {k.kind: k for k in summarise(runs, workers=4)}
    assert by_kind["band"].busy == pytest.approx(0.5) and by_kind["indices"].busy == pytest.approx(0.25)
    assert "4 tasks" in band.line() and "100.0 %" in band.line()
    # a kind that ran in the middle of another's span: what ran before and after it is not counted
    later = runs + runs_from_stream(
        [record("sample-d-6", "w2", t0 + 22, t0 + 24), record("block-m-7", "w2", t0 + 31, t0 + 40)]
    )
    by_kind = {k.kind: k for k in summarise(sorted(later, key=lambda r: r.start), workers=2)}
    assert by_kind["sample"].busy == pytest.approx(1.0)  # both workers busy for its 2 s
    assert by_kind["indices"].busy == pytest.approx(12 / 20)


def test_overlapping_threads_of_one_worker_count_once_and_csv_is_relative() -> None:
    runs = runs_from_stream(
        [record("block-m-1", "w1", 5.0, 9.0), record("block-m-2", "w1", 7.0, 11.0), record("block-m-3", "w2", 5.0, 6.0)]
    )
    (block,) = summarise(runs, workers=2)
    assert block.span_s == 6.0 and block.compute_s == 9.0
    assert block.busy == pytest.approx((6.0 + 1.0) / 12.0)
    rows = list(csv.DictReader(io.StringIO(to_csv(runs))))
    assert [r["start_s"] for r in rows] == ["0.000", "0.000", "2.000"]
    assert rows[1]["kind"] == "block" and float(rows[1]["seconds"]) == pytest.approx(1.0)
