"""The asset layer on its own: ids, keys, the run lease on both catalog backends, canonical
feature order."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from landcoverpy.assets import ids, keys
from landcoverpy.assets.lease import COLLECTION, LeaseHeldError, LeaseLostError, RunLease, holder_is_gone
from landcoverpy.assets.params import CompositeParams, ModelParams
from landcoverpy.catalog import Catalog
from landcoverpy.features import feature_names
from landcoverpy.inputs import Season
from landcoverpy.raster.masks import MaskSettings
from landcoverpy.records import FeatureSource, StoredObject
from tests.test_catalog import catalog  # noqa: F401 - the two-backend catalog fixture

WINTER = Season("winter", dt.date(2021, 1, 1), dt.date(2021, 2, 28))


def test_composite_id_follows_every_parameter_that_changes_pixels() -> None:
    base = ids.composite_id("30SUF", WINTER, ["P1", "P2"], CompositeParams())
    assert base == ids.composite_id("30SUF", WINTER, ["P2", "P1"], CompositeParams(window_size=64, threads=4))
    for other in (
        CompositeParams(mask=MaskSettings(dilation_pixels=2)),
        CompositeParams(mask=MaskSettings(cloud_probability_threshold=0.5)),
        CompositeParams(bands=("B02", "B03")),
    ):
        assert ids.composite_id("30SUF", WINTER, ["P1", "P2"], other) != base
    assert ids.composite_id("30SUF", WINTER, ["P1"], CompositeParams()) != base
    renamed = Season("Winter", WINTER.start, WINTER.end)
    assert ids.composite_id("30SUF", renamed, ["P1", "P2"], CompositeParams()) != base
    params = CompositeParams(mask=MaskSettings(dilation_pixels=3), max_products=4)
    assert CompositeParams.from_dict(params.to_dict()) == params


def test_hierarchy_and_map_ids_follow_model_parameters_and_label_names() -> None:
    lc, sl = {"crops/annual": 1, "crops annual": 2}, {"a": 2}
    rf = ids.hierarchy_id("dataset-x", ModelParams(), lc, sl, True)
    assert rf != ids.hierarchy_id("dataset-x", ModelParams(model_type="lightgbm"), lc, sl, True)
    assert rf != ids.hierarchy_id("dataset-x", ModelParams(), {"crops/annual": 2, "crops annual": 1}, sl, True)
    assert ids.map_id(rf, "30SUF", ["c1", "c2"]) == ids.map_id(rf, "30SUF", ["c2", "c1"])
    assert ids.map_id(rf, "30SUF", ["c1"]) != ids.map_id(rf, "30SUF", ["c1", "dem-x"])
    assert ids.model_id(rf, "subcategory", 1) != ids.model_id(rf, "subcategory", 2)


def test_dataset_id_follows_points_labels_and_sources() -> None:
    pts = pd.DataFrame({"latitude": [37.1], "longitude": [-5.2], "category": ["crops/annual"], "subcategory": [""]})
    other = pts.assign(category=["crops annual"])
    assert ids.dataset_id(pts, ["c1"], 3) != ids.dataset_id(other, ["c1"], 3)
    assert ids.dataset_id(pts, ["c1"], 3) != ids.dataset_id(pts, ["c1"], 5)
    assert ids.dataset_id(pts, ["c1"], 3) != ids.dataset_id(pts, ["c2"], 3)


def test_name_tokens_are_collision_free_and_safe() -> None:
    names = ["crops/annual", "crops annual", "Crops annual", "森林", "冬", "été", "ete", "../x"]
    tokens = [keys.name_token(n) for n in names]
    assert len(set(tokens)) == len(names)
    for token in tokens:
        assert "/" not in token and ".." not in token and token.isascii()
    assert keys.name_token("été").startswith("ete-") and keys.name_token("森林").startswith("n-")
    assert keys.composite_layer_key("30SUF", "冬", "composite-x", "B02").startswith("30SUF/n-")


def test_feature_order_does_not_depend_on_record_key_order() -> None:
    params = {"bands": ["B02", "B11", "B8A"], "indices": ["ndvi", "evi"]}

    def source(bands: list[str], indices: list[str]) -> FeatureSource:
        loc = StoredObject(bucket="composites", key="k.tif")
        return FeatureSource(
            _id="c",
            tile="30SUF",
            grid={},
            bands=dict.fromkeys(bands, loc),
            indices=dict.fromkeys(indices, loc),
            params=params,
        )

    a, b = source(["B02", "B11", "B8A"], ["ndvi", "evi"]), source(["B8A", "B02", "B11"], ["evi", "ndvi"])
    assert feature_names({"w": a}) == feature_names({"w": b}) == ["w_B02", "w_B11", "w_B8A", "w_ndvi", "w_evi"]


def test_lease_refuses_a_second_holder_and_names_the_first(catalog: Catalog) -> None:  # noqa: F811
    first = RunLease(catalog, "landcoverpy run", timeout=30).acquire()
    try:
        with pytest.raises(
            LeaseHeldError, match=rf"`landcoverpy run` on host {socket.gethostname()}, pid {os.getpid()}"
        ):
            RunLease(catalog, "landcoverpy classify", timeout=30).acquire()
        first.ensure_held()
    finally:
        first.release()
    assert catalog.get(COLLECTION, "workflow") is None
    with RunLease(catalog, "landcoverpy classify", timeout=30):  # free again
        assert catalog.get(COLLECTION, "workflow")["command"] == "landcoverpy classify"


def test_lease_waits_then_takes_over_when_released(catalog: Catalog) -> None:  # noqa: F811
    first = RunLease(catalog, "first", timeout=30).acquire()
    released = threading.Event()

    def release() -> None:
        first.release()
        released.set()

    threading.Timer(0.5, release).start()
    with RunLease(catalog, "second", timeout=30, wait=True, poll=0.05):
        assert released.is_set()  # it waited for the release, however long that took
        assert catalog.get(COLLECTION, "workflow")["command"] == "second"


def test_stale_lease_is_taken_over_and_the_old_holder_knows(catalog: Catalog) -> None:  # noqa: F811
    stale = RunLease(catalog, "stalled", timeout=1.0)
    stale.acquire()
    stale._stop.set()  # a holder that stopped beating (suspended, network cut)
    stale._thread.join()  # type: ignore[union-attr]
    # the waiting run takes it as soon as its heartbeat is older than the timeout
    with RunLease(catalog, "next", timeout=1.0, wait=True, poll=0.05, max_wait=60) as taker:
        assert catalog.get(COLLECTION, "workflow")["token"] == taker.token
        stale._beat_once()
        with pytest.raises(LeaseLostError, match="lost the catalog lease"):
            stale.ensure_held()
        stale.release()  # releasing a lost lease leaves the new holder's record alone
        assert catalog.get(COLLECTION, "workflow")["token"] == taker.token
    assert catalog.get(COLLECTION, "workflow") is None


def test_heartbeat_keeps_a_long_run_alive(catalog: Catalog) -> None:  # noqa: F811
    timeout = 2.0
    with RunLease(catalog, "long", timeout=timeout):
        first = float(catalog.get(COLLECTION, "workflow")["heartbeat"])
        deadline = time.monotonic() + 60
        # wait until the lease has lived past its timeout on its own heartbeats
        while float(catalog.get(COLLECTION, "workflow")["heartbeat"]) < first + timeout and time.monotonic() < deadline:
            time.sleep(0.05)
        assert float(catalog.get(COLLECTION, "workflow")["heartbeat"]) >= first + timeout
        with pytest.raises(LeaseHeldError):  # fresh, so held: refused at once
            RunLease(catalog, "other", timeout=timeout).acquire()


def test_dead_holder_on_this_host_is_recognised(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert holder_is_gone({"host": socket.gethostname(), "pid": proc.pid, "process_started": 0.0})
    assert not holder_is_gone(
        {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process_started": __import__("psutil").Process().create_time(),
        }
    )
    assert not holder_is_gone({"host": "another-host", "pid": proc.pid})
