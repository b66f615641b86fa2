"""The yearly use of change (issue: map products): map a place each year with that year's
``seasons.json`` and compare the years, with the same model (``run --model``) or a model per year,
the change catalogued with the two maps as its lineage and shown in the second run's report.

The second year is the cut of the demo's real scene with one square replaced by the pixels of
another place of it (tests/lineage_scene.py): with the same model, the second year's map must
equal the first year's everywhere but there, and there equal the first year's map of the place
the pixels came from, so the change product's transitions are known pixel by pixel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from scipy import ndimage

from landcoverpy import records
from tests.lineage_scene import PATCH_FROM, PATCH_TO, make_next_year, make_scene, plain_app_data, seasons_of_year
from tests.test_cli_status import run_cli
from tests.test_lineage import TILE, embedded, exported, run_args, run_json

# Pixels next to the patch's edge can differ (the cloud mask is dilated, 20 m and 60 m bands are
# resampled); the comparison leaves out this many pixels on either side of it.
EDGE = 30

pytestmark = pytest.mark.slow


def patch_masks(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice], tuple[slice, slice]]:
    """Pixels far from the patch, and the patch's inner part (where it lies, where it came from)."""
    (r1, c1, size), (r0, c0) = PATCH_TO, PATCH_FROM
    near = np.zeros(shape, bool)
    near[r1 : r1 + size, c1 : c1 + size] = True
    near = ndimage.binary_dilation(near, iterations=EDGE)
    inner = size - 2 * EDGE
    to = (slice(r1 + EDGE, r1 + EDGE + inner), slice(c1 + EDGE, c1 + EDGE + inner))
    came = (slice(r0 + EDGE, r0 + EDGE + inner), slice(c0 + EDGE, c0 + EDGE + inner))
    return ~near, near, to, came


def test_yearly_maps_and_their_change(tmp_path: Path) -> None:
    source = make_scene(tmp_path)
    make_next_year(tmp_path, 2017)
    data = plain_app_data(tmp_path)
    scene = {"source": source, "plain": data}
    backend = embedded(tmp_path)
    first_out = tmp_path / "out-2016"
    res = run_cli(run_args(scene, "plain", first_out), backend.env, tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    first = run_json(first_out)
    model = first["hierarchy"]

    # A seasons file whose names are not the model's is refused before anything is made.
    bad = seasons_of_year(tmp_path, 2017, "summer")
    args = [a if a != str(data / "seasons.json") else str(bad) for a in run_args(scene, "plain", None)]
    res = run_cli([*args, "--model", model], backend.env, tmp_path, timeout=300)
    assert res.returncode == 1 and "trained on seasons winter" in res.stderr and "summer" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    # So is an earlier map or run the catalog does not hold.
    res = run_cli([*run_args(scene, "plain", None), "--change-from", "run-nope"], backend.env, tmp_path, timeout=300)
    assert res.returncode != 0 and "no map or run 'run-nope'" in res.stderr and "Traceback" not in res.stderr
    with backend.context() as ctx:
        assert len(ctx.catalog.find(records.RunRecord.COLLECTION, {})) == 1

    # The same model on 2017's season: no dataset or training, the change from 2016 in the report.
    seasons_2017 = seasons_of_year(tmp_path, 2017)
    second_out = tmp_path / "out-2017"
    args = [a if a != str(data / "seasons.json") else str(seasons_2017) for a in run_args(scene, "plain", second_out)]
    res = run_cli([*args, "--model", model, "--change-from", first["run_id"]], backend.env, tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    second = run_json(second_out)
    assert second["hierarchy"] == model and [s["name"] for s in second["stages"]] == [
        "acquire",
        "composite",
        "classify",
    ]
    before, after = exported(first_out)["classification"], exported(second_out)["classification"]
    far, near, to, came = patch_masks(before.shape)
    assert np.array_equal(before[far], after[far])  # nothing else changed
    assert np.array_equal(after[to], before[came])  # the patch is mapped as where it came from
    moved = before[to] != after[to]
    assert moved.mean() > 0.2, "the patch must bring change for the test to mean something"

    changes = second["changes"]
    assert {c["level"] for c in changes.values()} == {"category", "subcategory"}
    first_map, second_map = first["maps"][TILE]["_id"], second["maps"][TILE]["_id"]
    assert all((c["from"], c["to"]) == (first_map, second_map) for c in changes.values())
    table = pd.read_csv(second_out / "change" / f"transitions_category_{TILE}.csv")
    with rasterio.open(second_out / "change" / f"change_category_{TILE}.tif") as src:
        codes = src.read(1)
    names = {}  # class name -> map value, from the pixels each (from, to) code marks
    for code, a, b in zip(table["code"], table["from"], table["to"]):
        here = codes == code
        if here.any():
            for name, values in ((a, before[here]), (b, after[here])):
                assert np.unique(values).size == 1
                assert names.setdefault(name, int(values[0])) == int(values[0])
    # the transition matrix equals the one counted from the two maps themselves
    value_pairs = {(names[a], names[b]): n for a, b, n in zip(table["from"], table["to"], table["pixels"]) if n}
    valid = (before > 0) & (after > 0)
    expected = pd.Series(list(zip(before[valid], after[valid]))).value_counts().to_dict()
    assert {(int(a), int(b)): int(n) for (a, b), n in expected.items()} == value_pairs
    # no change far from the patch; inside it, the transitions from the place to where it came from
    assert np.all((before == after)[far & valid])
    report = (second_out / "report.md").read_text()
    assert f"## Change since {first['run_id']}" in report and "given with --model" in report
    assert f"The earlier map: model {model} (random_forest) trained on seasons winter 2016-01-01" in report

    with backend.context() as ctx:
        for cid in changes:
            rec = records.load(ctx.catalog, records.MapRecord, cid)
            assert rec is not None and rec.kind == "change" and rec.sources == [first_map, second_map]
        run = records.load(ctx.catalog, records.RunRecord, second["run_id"])
        assert run is not None and sorted(run.changes) == sorted(changes)
        a = records.load(ctx.catalog, records.MapRecord, first_map)
        b = records.load(ctx.catalog, records.MapRecord, second_map)
        assert a is not None and b is not None
        assert a.hierarchy == b.hierarchy == model and set(a.composites).isdisjoint(b.composites)

    # A model per year: 2017's points train their own model on 2017's composites.
    third_out = tmp_path / "out-2017-own"
    args = [a if a != str(data / "seasons.json") else str(seasons_2017) for a in run_args(scene, "plain", third_out)]
    res = run_cli([*args, "--change-from", first["run_id"]], backend.env, tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    third = run_json(third_out)
    did = {s["name"]: s["did_work"] for s in third["stages"]}
    assert did["dataset"] and did["train"] and not did["composite"], did  # 2017's composites are reused
    assert third["hierarchy"] != model and third["dataset"] != first["dataset"]
    assert {c["from"] for c in third["changes"].values()} == {first_map}
    assert json.loads((third_out / "run.json").read_text())["maps"][TILE]["_id"] not in (first_map, second_map)
