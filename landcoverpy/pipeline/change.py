"""Change between two class maps of the same place: the transition matrix (pixels, hectares), a
change map whose value codes the (from, to) class pair, with its colour table and QGIS style, and
with a reference sample of change, area-adjusted estimates of every transition with 95 %
confidence intervals (Olofsson et al. 2014 on the transition strata, models/area.py).

Both maps are read window by window; a "to" map on another grid is resampled onto the "from"
map's grid (nearest neighbour), so a full tile never has to be in memory at once."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import shapely
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.vrt import WarpedVRT
from rasterio.windows import transform as window_transform

from landcoverpy.errors import InputValidationError
from landcoverpy.models.area import AreaAccuracy, area_adjusted_accuracy
from landcoverpy.raster.cog import CogWriter
from landcoverpy.raster.grid import Grid, block_windows
from landcoverpy.reports import class_colours
from landcoverpy.styles import category_aux_xml, paletted_qml

STABLE_GREY = (200, 200, 200)


@dataclass(frozen=True)
class Transitions:
    """Pixels of every (from, to) class pair; ``codes`` number the pairs in the change map."""

    classes: dict[int, str]  # value -> name, shared by both maps
    pixels: np.ndarray  # (K + 1, K + 1) by class value; row/column 0 = no data
    pixel_area_ha: float

    @property
    def values(self) -> list[int]:
        return sorted(self.classes)

    def code(self, a: int, b: int) -> int:
        """The change map's value of the pair (a, b): its place in the row-major list of pairs."""
        k = len(self.values)
        return self.values.index(a) * k + self.values.index(b) + 1

    def pairs(self) -> list[tuple[int, int]]:
        return [(a, b) for a in self.values for b in self.values]

    def label(self, a: int, b: int) -> str:
        return self.classes[a] if a == b else f"{self.classes[a]} -> {self.classes[b]}"

    def matrix(self) -> pd.DataFrame:
        """Pixels from (rows) -> to (columns), by class name."""
        names = [self.classes[v] for v in self.values]
        sub = self.pixels[np.ix_(self.values, self.values)]
        return pd.DataFrame(sub, index=pd.Index(names, name="from"), columns=pd.Index(names, name="to"))


@dataclass(frozen=True)
class ChangeSummary:
    """A change product's changed transitions in hectares (largest first) and the area both maps cover."""

    changed: list[tuple[str, float]]  # "from -> to" label, hectares
    total_ha: float

    @property
    def changed_ha(self) -> float:
        return sum(ha for _, ha in self.changed)

    @property
    def changed_share(self) -> float:
        return self.changed_ha / self.total_ha if self.total_ha else 0.0


def summarise(legend: dict[str, str], pixels: dict[str, int], pixel_area_ha: float) -> ChangeSummary:
    """The summary of a change product from its legend (change-map value -> label; the values
    number the (from, to) pairs row by row, as ``Transitions.code``) and its pixels per label."""
    k = math.isqrt(len(legend))
    changed, total = [], 0
    for code, label in legend.items():
        n = int(pixels.get(label, 0))
        total += n
        i = int(code) - 1
        if n and i // k != i % k:
            changed.append((label, n * pixel_area_ha))
    return ChangeSummary(sorted(changed, key=lambda kv: -kv[1]), total * pixel_area_ha)


def same_classes(a: dict[int, str], b: dict[int, str], what_a: str, what_b: str) -> dict[int, str]:
    """The label set both maps use; refused, naming the difference, when they differ."""
    if a == b:
        return a
    only_a = sorted(f"{n} ({v})" for v, n in a.items() if b.get(v) != n)
    only_b = sorted(f"{n} ({v})" for v, n in b.items() if a.get(v) != n)
    raise InputValidationError(
        f"{what_a} and {what_b} use different label sets: only in the first {', '.join(only_a) or 'nothing'}; "
        f"only in the second {', '.join(only_b) or 'nothing'}. Compare maps made with the same lc/sl labels"
    )


def cross_tabulate(before: np.ndarray, after: np.ndarray, k: int) -> np.ndarray:
    """(k, k) pixel counts of value pairs (values 0..k-1)."""
    idx = before.astype(np.int64) * k + after.astype(np.int64)
    return np.bincount(idx.ravel(), minlength=k * k).reshape(k, k)


def change_map(
    from_path: str,
    to_path: str,
    classes: dict[int, str],
    out_path: Path,
    block: int = 1024,
    tmp_dir: Path | None = None,
    area: Any = None,
) -> Transitions:
    """Write the change map of two class maps and return their transitions. Pixels with no data
    in either map are 0 in the change map and left out of the matrix; with ``area`` (a polygon in
    longitude/latitude), so are the pixels whose centres lie outside it."""
    values = sorted(classes)
    k = max(values) + 1
    pixels = np.zeros((k, k), dtype=np.int64)
    with rasterio.open(from_path) as src, rasterio.open(to_path) as other:
        grid = Grid.from_dataset(src)
        same_grid = other.crs == src.crs and other.transform == src.transform and other.shape == src.shape
        after_ds: Any = (
            other
            if same_grid
            else WarpedVRT(
                other,
                crs=src.crs,
                transform=src.transform,
                width=src.width,
                height=src.height,
                resampling=Resampling.nearest,
                nodata=0,
            )
        )
        probe = Transitions(classes, pixels, abs(src.transform.a * src.transform.e) / 1e4)
        inside = None
        if area is not None:
            to_map = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True)
            inside = shapely.transform(shapely.segmentize(area, 0.001), to_map.transform, interleaved=False)
        lookup = np.zeros((k, k), dtype=np.uint16)
        for a, b in probe.pairs():
            lookup[a, b] = probe.code(a, b)
        colours = class_colours({n: v for v, n in classes.items()})
        colormap = {0: (0, 0, 0, 0)} | {
            probe.code(a, b): ((*STABLE_GREY, 255) if a == b else (*colours[b], 255)) for a, b in probe.pairs()
        }
        try:
            with CogWriter(
                out_path,
                grid,
                "uint16",
                nodata=0,
                descriptions=["change (from -> to)"],
                colormap=colormap,
                tags={f"change_{probe.code(a, b)}": probe.label(a, b) for a, b in probe.pairs()},
                overview_resampling="mode",
                tmp_dir=tmp_dir,
            ) as out:
                for w in block_windows(src.height, src.width, block):
                    before = src.read(1, window=w)
                    after = after_ds.read(1, window=w)
                    ok = np.isin(before, values) & np.isin(after, values)
                    if inside is not None:
                        ok &= rasterize(
                            [(inside, 1)],
                            out_shape=ok.shape,
                            transform=window_transform(w, src.transform),
                            fill=0,
                            dtype="uint8",
                        ).astype(bool)
                    pixels += cross_tabulate(np.where(ok, before, 0), np.where(ok, after, 0), k)
                    out.write(np.where(ok, lookup[np.where(ok, before, 0), np.where(ok, after, 0)], 0)[None], w)
        finally:
            if not same_grid:
                after_ds.close()
    pixels[0, :] = 0
    pixels[:, 0] = 0
    result = Transitions(classes, pixels, probe.pixel_area_ha)
    styles = {probe.code(a, b): (probe.label(a, b), colormap[probe.code(a, b)][:3]) for a, b in probe.pairs()}
    Path(f"{out_path.with_suffix('')}.qml").write_text(paletted_qml(styles), encoding="utf-8")
    Path(f"{out_path}.aux.xml").write_text(
        category_aux_xml({code: label for code, (label, _) in styles.items()}), encoding="utf-8"
    )
    return result


def write_transitions(t: Transitions, path: Path) -> Path:
    """One row per (from, to) pair: pixels and hectares."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["from", "to", "code", "pixels", "area_ha"])
        for a, b in t.pairs():
            n = int(t.pixels[a, b])
            writer.writerow([t.classes[a], t.classes[b], t.code(a, b), n, round(n * t.pixel_area_ha, 4)])
    return path


def read_change_sample(path: Path, classes: dict[int, str]) -> pd.DataFrame:
    """A reference sample of change: latitude, longitude, ``from`` and ``to`` reference classes
    (names of the maps' label set), one row per point."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise InputValidationError(f"{path}: cannot read the change sample ({exc})") from None
    missing = [c for c in ("latitude", "longitude", "from", "to") if c not in frame.columns]
    if missing:
        raise InputValidationError(f"{path}: missing column(s) {', '.join(missing)}")
    names = set(classes.values())
    for i, row in frame.iterrows():
        for col in ("from", "to"):
            if row[col] not in names:
                raise InputValidationError(
                    f"{path}, row {int(str(i)) + 2}: {col} class {row[col]!r} is not in the maps' classes "
                    f"({', '.join(sorted(names))})"
                )
    return frame


def area_adjusted_change(change_path: str, t: Transitions, sample: pd.DataFrame) -> AreaAccuracy:
    """Each sample point's mapped transition (read from the change map) against its reference
    transition, over the strata of every (from, to) pair: Olofsson et al. (2014) estimators."""
    pairs = t.pairs()
    code_of = {t.code(a, b): i for i, (a, b) in enumerate(pairs)}
    value_of = {n: v for v, n in t.classes.items()}
    with rasterio.open(change_path) as src:
        xs, ys = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True).transform(
            sample["longitude"].astype(float).to_numpy(), sample["latitude"].astype(float).to_numpy()
        )
        mapped = [int(v[0]) for v in src.sample(zip(xs, ys))]
    counts = np.zeros((len(pairs), len(pairs)))
    for code, (_, row) in zip(mapped, sample.iterrows()):
        if code not in code_of:
            continue  # outside the maps, or no data
        ref = pairs.index((value_of[row["from"]], value_of[row["to"]]))
        counts[code_of[code], ref] += 1
    map_pixels = np.array([t.pixels[a, b] for a, b in pairs], dtype=float)
    return area_adjusted_accuracy(counts, map_pixels, t.pixel_area_ha, [t.label(a, b) for a, b in pairs])


def write_area_estimates(est: AreaAccuracy, path: Path) -> Path:
    """One row per transition: mapped and area-adjusted hectares, the estimate's 95 % interval,
    user's and producer's accuracies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["transition", "mapped_ha", "estimated_ha", "ci95_ha", "users_accuracy", "producers_accuracy"])
        for i, label in enumerate(est.classes):
            writer.writerow(
                [
                    label,
                    round(float(est.mapped_area[i]), 2),
                    round(float(est.area[i]), 2),
                    round(float(est.area_ci[i]), 2),
                    round(float(est.users[i]), 4),
                    round(float(est.producers[i]), 4),
                ]
            )
    return path


def plot_transitions(t: Transitions, path: Path) -> Path:
    """The transition matrix in hectares as a figure: from-classes in rows, to-classes in
    columns, each cell with its area and its share of the from-class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t.classes[v] for v in t.values]
    ha = t.pixels[np.ix_(t.values, t.values)] * t.pixel_area_ha
    share = ha / np.maximum(ha.sum(axis=1, keepdims=True), 1e-12)
    size = 1.2 + 0.9 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=110)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            colour = "white" if share[i, j] > 0.6 else "black"
            ax.text(
                j,
                i,
                f"{ha[i, j]:,.1f} ha\n{100 * share[i, j]:.0f} %",
                ha="center",
                va="center",
                fontsize=7,
                color=colour,
            )
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("to (later map)")
    ax.set_ylabel("from (earlier map)")
    fig.colorbar(image, ax=ax, label="share of the from-class", shrink=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
