"""MODIS HDF4 reader on a real MOD09GA granule (../shared/data/modis-mod09ga)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from landcoverpy.errors import InputValidationError
from landcoverpy.sources.modis import ModisQA, bits, qc_mask, read_mod09, scale, state_mask, write_geotiff
from tests.conftest import shared_data

GRANULE = "MOD09GA.A2008296.h14v17.006.2015181011753.hdf"


def test_bit_fields() -> None:
    word = np.array([0b10_1101_0110_01], dtype=np.uint32)
    assert bits(word, 0, 2)[0] == 0b01
    assert bits(word, 2, 4)[0] == 0b0110
    assert bits(word, 6, 4)[0] == 0b1101
    qa = ModisQA()
    # MODLAND 10 (cloud) rejects every band; band-2 quality 0111 rejects band 2 only
    assert qc_mask(np.array([0b10], np.uint32), 1, qa)[0]
    noisy_b2 = np.array([0b0111 << 6], np.uint32)
    assert not qc_mask(noisy_b2, 1, qa)[0] and qc_mask(noisy_b2, 2, qa)[0]
    assert not qc_mask(noisy_b2, 2, ModisQA(require_ideal_band_quality=False))[0]
    states = np.array([0b00, 0b01, 0b10, 0b11, 0b100, 1 << 13], np.uint16)
    assert state_mask(states, qa).tolist() == [False, True, True, False, True, False]
    assert state_mask(states, ModisQA(drop_adjacent_cloud=True)).tolist()[-1]


def test_scale_fill_and_range() -> None:
    raw = np.array([-28672, 0, 5000, 16000, 16001, -101], dtype=np.int16)
    out = scale(raw, {"_FillValue": -28672, "valid_range": [-100, 16000], "scale_factor": 10000.0, "add_offset": 0.0})
    assert np.isnan(out[[0, 4, 5]]).all()
    np.testing.assert_allclose(out[[1, 2, 3]], [0.0, 0.5, 1.6])
    np.testing.assert_allclose(scale(np.array([5000]), {"scale_factor": 0.0001}), [0.5])


def test_real_granule(tmp_path: Path) -> None:
    from pyhdf.SD import SD, SDC

    path = shared_data("modis-mod09ga") / GRANULE
    granule = read_mod09(path, ModisQA(drop_cloudy=False, drop_cloud_shadow=False, require_ideal_band_quality=False))
    assert granule.reflectance.shape == (7, 2400, 2400)
    assert granule.tile == "h14v17" and granule.date == "2008-10-22"
    # the MODIS sinusoidal grid (sphere of radius 6371007.181 m): a tile is 10 degrees,
    # 1111950.519667 m, cut into 2400 pixels of 463.312716528 m at 500 m; tile h14's west edge
    # is 4 tiles west of h18's (the meridian): -4447802.078667 m (the granule's StructMetadata)
    assert granule.transform[0] == pytest.approx(463.312716528, rel=1e-9)
    assert granule.transform[2] == pytest.approx(-4447802.078667)
    sd = SD(str(path), SDC.READ)
    raw = sd.select("sur_refl_b01_1").get()
    qc = sd.select("QC_500m_1").get()
    sd.end()
    fill = raw == -28672
    assert 0.99 < fill.mean() < 1.0  # Antarctica: almost everything is fill
    b1 = granule.reflectance[0]
    modland_bad = np.isin(qc & 0b11, (2, 3))
    assert np.isnan(b1[fill]).all()
    keep = ~fill & ~modland_bad & (raw >= -100) & (raw <= 16000)
    np.testing.assert_allclose(b1[keep], raw[keep] / 10000.0, rtol=1e-6)
    # the default QA also drops pixels whose 1 km state word says cloudy or mixed (bits 0-1 = 01 or
    # 10) or cloud shadow (bit 2), and those whose band quality (bits 2-5 for band 1) is not 0000
    # (MOD09 user guide, the state_1km and QC_500m tables, which the granule's attributes repeat)
    strict = read_mod09(path)
    sd = SD(str(path), SDC.READ)
    state = np.repeat(np.repeat(sd.select("state_1km_1").get(), 2, axis=0), 2, axis=1)
    sd.end()
    cloud, shadow = state & 0b11, (state >> 2) & 1
    dropped = np.isin(cloud, (1, 2)) | (shadow == 1) | (((qc >> 2) & 0b1111) != 0)
    np.testing.assert_array_equal(np.isfinite(strict.reflectance[0]), keep & ~dropped)
    assert (keep & dropped).any()  # the granule has pixels the default QA must drop
    out = write_geotiff(granule, tmp_path / "mod.tif")
    with rasterio.open(out) as src:
        assert src.count == 7 and src.descriptions[0] == "b01" and "sinu" in src.crs.to_proj4()
        np.testing.assert_array_equal(np.isnan(src.read(1)), np.isnan(b1))


def test_not_a_granule(tmp_path: Path) -> None:
    bad = tmp_path / "MOD09A1.A2021001.h17v05.061.x.hdf"
    bad.write_bytes(b"not hdf")
    with pytest.raises(InputValidationError, match="not a readable HDF4 file"):
        read_mod09(bad)
