"""Input validation: each bad-input kind gets an error naming the file and the row/key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from landcoverpy.errors import InputValidationError
from landcoverpy.inputs import load_inputs, load_labels, load_points, load_seasons

LC = {"water": 1, "vegetation": 2}
SL = {"ocean": 2, "forest": 3, "crop": 4}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture()
def labels(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path / "lc.json", json.dumps(LC)), write(tmp_path / "sl.json", json.dumps(SL))


def points(tmp_path: Path, text: str, name: str = "dataset.csv") -> Path:
    return write(tmp_path / name, text)


def test_csv_with_comma_or_semicolon_and_empty_subcategory(tmp_path: Path, labels: tuple[Path, Path]) -> None:
    lc, sl = load_labels(labels[0], "category"), load_labels(labels[1], "subcategory")
    comma = points(tmp_path, "latitude,longitude,category,subcategory\n37.1,-5.2,water,ocean\n37.2,-5.3,vegetation,\n")
    semi = points(
        tmp_path, "latitude;longitude;category;subcategory\n37.1;-5.2;water;ocean\n37.2;-5.3;vegetation;\n", "s.csv"
    )
    for path in (comma, semi):
        pts = load_points(path, lc, sl)
        assert list(pts.frame["category"]) == ["water", "vegetation"]
        assert list(pts.frame["subcategory"]) == ["ocean", ""]
        assert pts.frame["latitude"].tolist() == [37.1, 37.2]


def test_subcategory_column_is_optional(tmp_path: Path, labels: tuple[Path, Path]) -> None:
    lc = load_labels(labels[0], "category")
    pts = load_points(points(tmp_path, "latitude,longitude,category\n1,2,water\n"), lc)
    assert pts.frame["subcategory"].tolist() == [""]


def test_geojson_points(tmp_path: Path, labels: tuple[Path, Path]) -> None:
    lc, sl = load_labels(labels[0], "category"), load_labels(labels[1], "subcategory")
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [-5.2, 37.1]},
                "properties": {"category": "vegetation", "subcategory": "forest"},
            }
        ],
    }
    pts = load_points(write(tmp_path / "p.geojson", json.dumps(fc)), lc, sl)
    assert pts.frame.iloc[0].to_dict() == {
        "latitude": 37.1,
        "longitude": -5.2,
        "category": "vegetation",
        "subcategory": "forest",
        "tile": "30SUG",
    }


def test_missing_columns(tmp_path: Path, labels: tuple[Path, Path]) -> None:
    lc = load_labels(labels[0], "category")
    path = points(tmp_path, "lat,longitude,category\n1,2,water\n")
    with pytest.raises(InputValidationError, match=r"dataset.csv.*missing column\(s\) latitude"):
        load_points(path, lc)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("abc,2,water", r"row 2: latitude 'abc' is not a number"),
        ("95,2,water", r"row 2: latitude '95' is not a number in \[-90, 90\]"),
        ("10,200,water", r"row 2: longitude '200'"),
        ("10,20,lava", r"row 2: category 'lava' is not in .*lc.json"),
        ("10,20,", r"row 2: empty category"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, labels: tuple[Path, Path], row: str, message: str) -> None:
    lc = load_labels(labels[0], "category")
    with pytest.raises(InputValidationError, match=message):
        load_points(points(tmp_path, f"latitude,longitude,category\n{row}\n"), lc)


def test_unknown_subcategory(tmp_path: Path, labels: tuple[Path, Path]) -> None:
    lc, sl = load_labels(labels[0], "category"), load_labels(labels[1], "subcategory")
    path = points(tmp_path, "latitude,longitude,category,subcategory\n1,2,water,ocean\n1,2,water,puddle\n")
    with pytest.raises(InputValidationError, match=r"row 3: subcategory 'puddle' is not in .*sl.json"):
        load_points(path, lc, sl)


@pytest.mark.parametrize(
    ("level", "content", "message"),
    [
        ("category", {"water": 0}, r"key 'water': value 0 is reserved \(0 is nodata\)"),
        ("subcategory", {"ocean": 1}, r"key 'ocean': value 1 is reserved .*not-classified"),
        ("category", {"water": "one"}, r"key 'water': value 'one' is not an integer"),
        ("category", {"a": 1, "b": 1}, r"keys 'a' and 'b' share value 1"),
        ("category", {"a": 300}, r"does not fit the uint8 maps"),
        ("category", {}, r"non-empty JSON object"),
    ],
)
def test_bad_labels(tmp_path: Path, level: str, content: dict[str, object], message: str) -> None:
    path = write(tmp_path / "labels.json", json.dumps(content))
    with pytest.raises(InputValidationError, match=rf"labels.json: .*{message}"):
        load_labels(path, level)


def test_malformed_json_names_file_and_position(tmp_path: Path) -> None:
    path = write(tmp_path / "lc_labels.json", '{"water": 1,,}')
    with pytest.raises(InputValidationError, match=r"lc_labels.json: malformed JSON at line 1 column"):
        load_labels(path, "category")


def test_seasons_both_forms(tmp_path: Path) -> None:
    a = load_seasons(
        write(
            tmp_path / "a.json",
            json.dumps(
                {
                    "spring": {"start": "2021-03-01", "end": "2021-04-30"},
                    "summer": {"start": "2021-06-01", "end": "2021-07-31"},
                }
            ),
        )
    )
    b = load_seasons(
        write(
            tmp_path / "b.json",
            json.dumps({"spring": ["2021-03-01", "2021-04-30"], "summer": ["2021-06-01", "2021-07-31"]}),
        )
    )
    assert a == b
    assert [s.name for s in a] == ["spring", "summer"]
    assert a[0].start.isoformat() == "2021-03-01"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"spring": ["2021-03-01", "2021-02-01"]}', r"season 'spring' starts \(2021-03-01\) after it ends"),
        ('{"spring": ["2021-13-01", "2021-04-01"]}', r"season 'spring' start '2021-13-01' is not a YYYY-MM-DD date"),
        (
            '{"spring": ["2021-03-01", "2021-04-30"], "spring": ["2021-06-01", "2021-07-01"]}',
            r"duplicated season name\(s\) 'spring'",
        ),
        (
            '{"a": ["2021-03-01", "2021-04-30"], "b": ["2021-04-15", "2021-05-30"]}',
            r"seasons 'a' .* and 'b' .* overlap",
        ),
        ('{"spring": {"start": "2021-03-01"}}', r"season 'spring' lacks end"),
        ('{"spring": "2021-03-01"}', r"season 'spring' must be"),
        ("{}", r"non-empty JSON object"),
    ],
)
def test_bad_seasons(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(InputValidationError, match=rf"seasons.json: .*{message}"):
        load_seasons(write(tmp_path / "seasons.json", content))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputValidationError, match="nope.json: file not found"):
        load_seasons(tmp_path / "nope.json")


def test_demo_inputs_are_valid() -> None:
    app = Path(__file__).resolve().parents[1] / "demo_deployment" / "app_data"
    inputs = load_inputs(app / "dataset.csv", app / "seasons.json", app / "lc_labels.json", app / "sl_labels.json")
    assert len(inputs.points) >= 150
    assert set(inputs.points.frame["category"]) == set(inputs.lc_labels.values)


def test_kmz_points_with_extended_data(tmp_path: Path, labels: tuple[Path, Path]) -> None:
    import zipfile

    lc, sl = load_labels(labels[0], "category"), load_labels(labels[1], "subcategory")
    placemarks = "".join(
        f'<Placemark><ExtendedData><Data name="category"><value>{c}</value></Data>'
        f'<Data name="subcategory"><value>{s}</value></Data></ExtendedData>'
        f"<Point><coordinates>{lon},{lat},0</coordinates></Point></Placemark>"
        for lat, lon, c, s in ((37.1, -5.2, "water", "ocean"), (37.3, -5.4, "vegetation", "forest"))
    )
    kml = f'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>{placemarks}</Document></kml>'
    path = tmp_path / "points.kmz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("doc.kml", kml)
    pts = load_points(path, lc, sl)
    assert pts.frame.to_dict("list") == {
        "latitude": [37.1, 37.3],
        "longitude": [-5.2, -5.4],
        "category": ["water", "vegetation"],
        "subcategory": ["ocean", "forest"],
        "tile": ["30SUG", "30STG"],
    }


def test_points_outside_every_tile_are_named(tmp_path: Path, labels: tuple[Path, Path]) -> None:
    """Checked at validation, before anything is written."""
    lc = load_labels(labels[0], "category")
    with pytest.raises(
        InputValidationError, match=r"dataset.csv: row 3: point \(85.50000, 10.00000\) is outside every Sentinel-2 tile"
    ):
        load_points(points(tmp_path, "latitude,longitude,category\n37.1,-5.2,water\n85.5,10,water\n"), lc)


def test_seasons_split_into_calendar_months() -> None:
    import datetime as dt

    from landcoverpy.inputs import Season, split_monthly

    parts = split_monthly(
        [
            Season("summer", dt.date(2021, 6, 15), dt.date(2021, 8, 31)),
            Season("winter", dt.date(2021, 12, 20), dt.date(2022, 1, 10)),
        ]
    )
    assert [(s.name, s.start.isoformat(), s.end.isoformat()) for s in parts] == [
        ("summer-2021-06", "2021-06-15", "2021-06-30"),
        ("summer-2021-07", "2021-07-01", "2021-07-31"),
        ("summer-2021-08", "2021-08-01", "2021-08-31"),
        ("winter-2021-12", "2021-12-20", "2021-12-31"),
        ("winter-2022-01", "2022-01-01", "2022-01-10"),
    ]
