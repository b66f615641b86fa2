"""Bad input is refused before anything is written: one case per kind of bad input, each run as
`landcoverpy run` against the embedded default and against real servers (moto_server +
secantusd); the message names the file and the row or key, the exit status is non-zero, there is
no traceback, and no bucket, object or catalog record exists afterwards that did not before."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from landcoverpy.catalog import open_catalog
from landcoverpy.storage import open_store
from tests import servers
from tests.conftest import make_settings
from tests.test_cli_status import run_cli

GOOD_CSV = (
    "latitude,longitude,category,subcategory\n"
    "37.711165,-75.517637,water,ocean\n"
    "37.650321,-75.690911,vegetation,forest\n"
)
LC = {"water": 1, "vegetation": 2}
SL = {"ocean": 2, "forest": 3}
SEASONS = {"winter": {"start": "2016-01-01", "end": "2016-02-29"}}
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


def inputs(
    folder: Path,
    csv: str | bytes = GOOD_CSV,
    lc: object = LC,
    sl: object = SL,
    seasons: object = SEASONS,
    dataset_name: str = "dataset.csv",
) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "dataset": folder / dataset_name,
        "lc": folder / "lc_labels.json",
        "sl": folder / "sl_labels.json",
        "seasons": folder / "seasons.json",
    }
    for key, content in (("dataset", csv), ("lc", lc), ("sl", sl), ("seasons", seasons)):
        data = content if isinstance(content, (str, bytes)) else json.dumps(content)
        files[key].write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return files


def geojson(features: list[dict]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": features})


POINT = {
    "type": "Feature",
    "geometry": {"type": "Point", "coordinates": [-75.5, 37.7]},
    "properties": {"category": "water", "subcategory": "ocean"},
}

# case -> (files maker, regular expression the one-line message must match)
CASES: dict[str, tuple[Callable[[Path], dict[str, Path]], str]] = {
    "empty csv": (lambda d: inputs(d, csv=b""), r"dataset\.csv: the file is empty"),
    "header only": (
        lambda d: inputs(d, csv="latitude,longitude,category,subcategory\n"),
        r"dataset\.csv: no data rows",
    ),
    "binary csv": (lambda d: inputs(d, csv=PNG_BYTES * 4), r"dataset\.csv: this is a binary file"),
    "latin-1 csv": (
        lambda d: inputs(d, csv=GOOD_CSV.replace("ocean", "océan").encode("latin-1")),
        r"dataset\.csv: not UTF-8 text \(byte 0xe9 at line 2\)",
    ),
    "binary labels": (lambda d: inputs(d, lc=PNG_BYTES), r"lc_labels\.json: this is a binary file"),
    "latin-1 seasons": (
        lambda d: inputs(d, seasons='{"été": ["2016-01-01", "2016-02-29"]}'.encode("latin-1")),
        r"seasons\.json: not UTF-8 text",
    ),
    "extra fields": (
        lambda d: inputs(d, csv=GOOD_CSV + "37.6,-75.6,water,ocean,extra\n"),
        r"dataset\.csv: row 4 has 5 fields, the header has 4",
    ),
    "feature without geometry": (
        lambda d: inputs(d, csv=geojson([POINT, {"type": "Feature", "properties": {}}]), dataset_name="points.geojson"),
        r"points\.geojson: feature 1 has no geometry",
    ),
    "feature without coordinates": (
        lambda d: inputs(
            d,
            csv=geojson([{"type": "Feature", "geometry": {"type": "Point"}, "properties": {}}]),
            dataset_name="points.geojson",
        ),
        r"points\.geojson: feature 0 has no coordinates",
    ),
    "beyond MGRS": (
        lambda d: inputs(d, csv=GOOD_CSV + "84.5,10.0,water,ocean\n"),
        r"dataset\.csv: row 4: point \(84\.50000, 10\.00000\) is outside every Sentinel-2 tile",
    ),
    "south of MGRS": (
        lambda d: inputs(d, csv=GOOD_CSV + "-80.5,10.0,water,ocean\n"),
        r"dataset\.csv: row 4: point \(-80\.50000",
    ),
    "empty season name": (
        lambda d: inputs(d, seasons={"": ["2016-01-01", "2016-02-29"]}),
        r"seasons\.json: a season has an empty name",
    ),
    "conflicting duplicates": (
        lambda d: inputs(d, csv=GOOD_CSV + "37.711165,-75.517637,vegetation,forest\n"),
        r"dataset\.csv: rows 2, 4 are the same point with different labels",
    ),
    "missing column": (
        lambda d: inputs(d, csv="latitude,longitude\n37.7,-75.5\n"),
        r"dataset\.csv: missing column\(s\) category",
    ),
    "unknown label": (
        lambda d: inputs(d, csv=GOOD_CSV + "37.6,-75.6,lava,\n"),
        r"dataset\.csv: row 4: category 'lava' is not in",
    ),
    "reserved label value": (
        lambda d: inputs(d, lc={"water": 0, "vegetation": 2}),
        r"lc_labels\.json: key 'water': value 0 is reserved",
    ),
    "overlapping seasons": (
        lambda d: inputs(d, seasons={"a": ["2016-01-01", "2016-02-10"], "b": ["2016-02-01", "2016-03-01"]}),
        r"seasons\.json: seasons 'a' .* and 'b' .* overlap",
    ),
    "malformed json": (lambda d: inputs(d, sl='{"ocean": 2,'), r"sl_labels\.json: malformed JSON at line 1"),
    "colliding label names": (
        lambda d: inputs(d, lc={"water": 1, "vegetation": 2, " water ": 3}),
        r"lc_labels\.json: keys 'water' and ' water ' are the same name",
    ),
}


def snapshot(settings: object) -> tuple[dict[str, int], dict[str, int]]:
    store = open_store(settings, check=False)  # type: ignore[arg-type]
    catalog = open_catalog(settings)  # type: ignore[arg-type]
    try:
        objects = {b: len(store.list(b)) for b in store.list_buckets()}
        return objects, catalog.counts()
    finally:
        catalog.close()


@pytest.fixture(params=["embedded", "servers"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, str], object]:
    env = {"LANDCOVERPY_HOME": str(tmp_path / "home"), "TMP_DIR": str(tmp_path / "tmp")}
    if request.param == "servers":
        s3: servers.Server = request.getfixturevalue("s3_server")
        mongo: servers.Server = request.getfixturevalue("mongo_server")
        uid = uuid.uuid4().hex[:6]
        env |= {
            "MINIO_HOST": "127.0.0.1",
            "MINIO_PORT": str(s3.port),
            "MINIO_ACCESS_KEY": "testing",
            "MINIO_SECRET_KEY": "testing",
            "MONGO_HOST": "127.0.0.1",
            "MONGO_PORT": str(mongo.port),
            "MONGO_DB": f"bad_{uid}",
        }
    settings = make_settings(tmp_path, **{k: v for k, v in env.items() if k not in ("LANDCOVERPY_HOME", "TMP_DIR")})
    return env, settings


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_before_anything_is_written(
    case: str, backend: tuple[dict[str, str], object], tmp_path: Path
) -> None:
    env, settings = backend
    make, expected = CASES[case]
    files = make(tmp_path / "in")
    (tmp_path / "src").mkdir()
    before = snapshot(settings)
    res = run_cli(
        [
            "run",
            "--provider",
            "local",
            "--source",
            str(tmp_path / "src"),
            "--no-progress",
            "--dataset",
            str(files["dataset"]),
            "--seasons",
            str(files["seasons"]),
            "--lc-labels",
            str(files["lc"]),
            "--sl-labels",
            str(files["sl"]),
        ],
        env,
        tmp_path,
        timeout=120,
    )
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, res.stderr
    import re

    assert re.search(expected, errors[0]), errors[0]
    assert snapshot(settings) == before  # no bucket, object or record appeared


def test_identical_duplicates_are_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from landcoverpy.inputs import load_labels, load_points

    files = inputs(tmp_path, csv=GOOD_CSV + "37.711165,-75.517637,water,ocean\n37.7111650,-75.51763700,water,ocean\n")
    with caplog.at_level("WARNING"):
        pts = load_points(
            files["dataset"], load_labels(files["lc"], "category"), load_labels(files["sl"], "subcategory")
        )
    assert len(pts) == 2
    assert (
        "2 duplicated point(s) (same coordinates and labels) dropped: rows 4, 5 (duplicates of rows 2)" in caplog.text
    )
