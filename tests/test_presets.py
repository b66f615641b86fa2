"""Presets: named bundles of settings under the user's own, chosen by the seasons when not named."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from landcoverpy.config import Settings, load_settings
from landcoverpy.errors import ConfigurationError
from landcoverpy.inputs import Season
from landcoverpy.presets import PRESETS, apply_preset, covered_days, default_preset
from tests.test_cli_status import run_cli


def quarters(year: int) -> list[Season]:
    starts = [dt.date(year, m, 1) for m in (1, 4, 7, 10)]
    ends = [dt.date(year, 3, 31), dt.date(year, 6, 30), dt.date(year, 9, 30), dt.date(year, 12, 31)]
    return [Season(f"{year}-q{i + 1}", s, e) for i, (s, e) in enumerate(zip(starts, ends))]


def bare(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_a_year_of_seasons_defaults_to_accurate_shorter_ones_to_fast() -> None:
    assert covered_days(quarters(2016)) == 366
    assert default_preset(quarters(2015)) == "accurate"
    # two half years (overlapping by a month) cover the year too
    halves = [
        Season("a", dt.date(2021, 1, 1), dt.date(2021, 7, 31)),
        Season("b", dt.date(2021, 7, 1), dt.date(2021, 12, 31)),
    ]
    assert default_preset(halves) == "accurate"
    assert default_preset(quarters(2015)[:3]) == "fast"
    assert default_preset([Season("winter", dt.date(2016, 1, 1), dt.date(2016, 2, 29))]) == "fast"


def test_accurate_fills_in_what_the_user_did_not_set() -> None:
    applied = apply_preset(bare(), quarters(2016))
    assert applied.PRESET == "accurate"
    for name, value in PRESETS["accurate"].settings.items():
        assert getattr(applied, name) == value
    # an explicit setting wins over the preset, the rest of the bundle still applies
    mine = apply_preset(bare(MODEL_TYPE="random_forest"), quarters(2016))
    assert (mine.PRESET, mine.MODEL_TYPE, mine.SERIES_SAMPLES, mine.COMPOSITE_GAP_FILL) == (
        "accurate",
        "random_forest",
        6,
        True,
    )
    # applying twice changes nothing
    assert apply_preset(applied, quarters(2016)) == applied


def test_a_named_preset_beats_the_seasons_default(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = apply_preset(bare(PRESET="fast"), quarters(2016))
    assert (fast.PRESET, fast.MODEL_TYPE, fast.SERIES_SAMPLES) == ("fast", "random_forest", 0)
    winter = [Season("winter", dt.date(2016, 1, 1), dt.date(2016, 2, 29))]
    assert apply_preset(bare(PRESET="accurate"), winter).SERIES_SAMPLES == 6
    # from the environment, as the command line reads it; an environment variable is explicit too
    monkeypatch.setenv("PRESET", "accurate")
    monkeypatch.setenv("SERIES_SAMPLES", "4")
    env = apply_preset(load_settings(), winter)
    assert (env.PRESET, env.SERIES_SAMPLES, env.MODEL_TYPE) == ("accurate", 4, "lightgbm")


def test_an_unknown_preset_is_refused_naming_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESET", "quick")
    with pytest.raises(ConfigurationError, match="PRESET='quick'"):
        load_settings()


def test_the_cli_refuses_an_unknown_preset(tmp_path: Path) -> None:
    res = run_cli(["run", "--preset", "quick"], {"LANDCOVERPY_HOME": str(tmp_path / "home")}, tmp_path)
    assert res.returncode == 2 and "quick" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow  # the accurate preset's LightGBM classifies the demo scene in about 2.5 minutes on 2 cores
def test_run_with_the_accurate_preset_on_the_demo(tmp_path: Path) -> None:
    from landcoverpy.demo import demo_app_data, prepare_demo_source

    data = demo_app_data()
    source = prepare_demo_source(tmp_path / "source")
    env = {"LANDCOVERPY_HOME": str(tmp_path / "home"), "TMP_DIR": str(tmp_path / "tmp")}
    args = ["run", "--preset", "accurate", "--provider", "local", "--source", str(source), "--no-progress"]
    args += ["--dataset", str(data / "dataset.csv"), "--seasons", str(data / "seasons.json")]
    args += ["--lc-labels", str(data / "lc_labels.json"), "--sl-labels", str(data / "sl_labels.json")]
    args += ["--output-dir", str(tmp_path / "out")]
    res = run_cli(args, env, tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["preset"] == "accurate"
    assert "Preset: accurate" in (tmp_path / "out" / "report.md").read_text()
    html = (tmp_path / "out" / "report.html").read_text()
    assert "lightgbm" in html and ">preset<" in html
    assert '<th class="name">preset</th><td class="name"><code>accurate' in html
    # the preset's layers were made: the season's composite holds its six NDVI samples
    items = list((tmp_path / "out" / "stac" / "composites").glob("*/*.json"))
    assert len(items) == 1
    assets = json.loads(items[0].read_text())["assets"]
    assert {f"ndvi_t{i}" for i in range(6)} <= set(assets), sorted(assets)


def test_empty_variables_leave_the_preset_in_charge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose passes ``${MODEL_TYPE:-}``: an empty variable is unset, so the preset applies; the
    .env.example files of both deployments leave every preset setting to the preset."""
    monkeypatch.setenv("MODEL_TYPE", "")
    monkeypatch.setenv("SERIES_SAMPLES", "")
    assert apply_preset(load_settings(), quarters(2016)).MODEL_TYPE == "lightgbm"
    monkeypatch.delenv("MODEL_TYPE")
    monkeypatch.delenv("SERIES_SAMPLES")
    root = Path(__file__).resolve().parents[1]
    for example in (root / ".env.example", root / "demo_deployment" / ".env.example"):
        applied = apply_preset(Settings(_env_file=example), quarters(2016))  # type: ignore[call-arg]
        for name, value in PRESETS["accurate"].settings.items():
            assert getattr(applied, name) == value, (example, name)
