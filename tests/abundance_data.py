"""Generated mixtures with known abundances, and eolearn-slovenia aggregated to coarse cells."""

from __future__ import annotations

import json

import numpy as np
from scipy import ndimage

from landcoverpy.models.abundance import AbundanceData

STEPS, BANDS = 12, 3


def signatures(n_classes: int, shift: float = 0.0) -> np.ndarray:
    """(K, T, D) seasonal reflectance curves, distinct per class."""
    t = np.linspace(0, 2 * np.pi, STEPS, endpoint=False)
    sig = np.zeros((n_classes, STEPS, BANDS), dtype="float32")
    for k in range(n_classes):
        for d in range(BANDS):
            sig[k, :, d] = 0.15 + 0.1 * d + 0.12 * np.sin(t + k * 2.1 + d * 0.4 + shift) * (1 + 0.3 * k) - 0.03 * k
    return sig


def generated_mixtures(
    rows: int = 40, cols: int = 50, n_classes: int = 3, seed: int = 0, shift: float = 0.0, gap_fraction: float = 0.3
) -> tuple[AbundanceData, np.ndarray]:
    """Linear mixtures of class signatures with smooth (spatially autocorrelated) abundances,
    noise and cloud gaps; ancillary = altitude (related to class 0), x, y. Returns the data and
    the gap-free series."""
    rng = np.random.default_rng(seed)
    fields = np.stack([ndimage.gaussian_filter(rng.gamma(1.0, size=(rows, cols)), 2.5) for _ in range(n_classes)])
    fields = np.exp(4 * (fields - fields.mean(axis=0, keepdims=True)) / fields.std())
    ab = (fields / fields.sum(axis=0, keepdims=True)).reshape(n_classes, -1).T.astype("float32")
    clean = np.einsum("nk,ktd->ntd", ab, signatures(n_classes, shift))
    series = clean + rng.normal(0, 0.01, size=clean.shape).astype("float32")
    gaps = rng.uniform(size=(len(ab), STEPS)) < gap_fraction  # a cloud hides every band of a step
    series[np.repeat(gaps[:, :, None], BANDS, axis=2)] = np.nan
    yy, xx = np.mgrid[0:rows, 0:cols]
    altitude = 500 + 800 * ab[:, 0] + rng.normal(0, 50, len(ab))
    ancillary = np.stack([altitude, xx.ravel() * 460.0, yy.ravel() * 460.0], axis=1).astype("float32")
    blocks = (yy // 5 * 1000 + xx // 5).ravel()
    return AbundanceData(
        series.astype("float32"), ancillary, ab, blocks, [f"class{k}" for k in range(n_classes)]
    ), clean


def slovenia_cells(cell: int = 5) -> AbundanceData:
    """NDVI time series (68 dates, real cloud gaps from CLM) of eolearn-slovenia aggregated to
    ``cell`` x ``cell`` pixel cells (50 m); labels = fractions of LULC classes inside each cell;
    ancillary = mean altitude (DEM) and the cell position."""
    from tests.realdata import slovenia, slovenia_lulc

    root = slovenia()
    ndvi = np.load(root / "NDVI.npy")[..., 0]
    clm = np.load(root / "CLM.npy")[..., 0]
    is_data = np.load(root / "IS_DATA.npy")[..., 0]
    dem = np.load(root / "DEM.npy")[..., 0]
    lulc = slovenia_lulc()
    times = np.array(
        [np.datetime64(str(t).replace("Z", "")[:19]) for t in json.loads((root / "timestamps.json").read_text())]
    )
    days = ((times - times[0]) / np.timedelta64(1, "D")).astype("float32")
    clear = (clm == 0) & (is_data == 1)
    values = np.where(clear, ndvi, np.nan)
    classes = [1, 2, 3, 4, 8]
    rows, cols = lulc.shape[0] // cell, lulc.shape[1] // cell
    series, anc, frac, blocks = [], [], [], []
    for r in range(rows):
        for c in range(cols):
            sl = (slice(r * cell, (r + 1) * cell), slice(c * cell, (c + 1) * cell))
            labels = lulc[sl]
            labelled = labels[labels > 0]
            if labelled.size < cell * cell // 2:
                continue
            frac.append([np.mean(labelled == k) for k in classes])
            block = values[:, sl[0], sl[1]].reshape(len(days), -1)
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    series.append(np.nanmean(block, axis=1)[:, None])
            anc.append([float(dem[sl].mean()), c * cell * 10.0, r * cell * 10.0])
            blocks.append((r // 4) * 100 + c // 4)
    return AbundanceData(
        np.array(series, "float32"),
        np.array(anc, "float32"),
        np.array(frac, "float32"),
        np.array(blocks),
        ["cultivated", "forest", "grassland", "shrubland", "artificial"],
        days,
    )
