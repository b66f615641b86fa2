"""Draw the category shares per region of `landcoverpy stats` (its region_stats.csv) as stacked
bars in the classes' colours, for the documentation:

    python docs/figures/region_stats.py stats/region_stats.csv demo-output/classification_18SVG.tif \
        docs/assets/demo_region_stats.png

The colours are the map's own (its colour table)."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import rasterio  # noqa: E402


def main(table: Path, class_map: Path, out: Path, level: str = "category") -> None:
    rows = pd.read_csv(table)
    rows = rows[rows["level"] == level]
    with rasterio.open(class_map) as src:
        colours = {v: "#{:02x}{:02x}{:02x}".format(*rgba[:3]) for v, rgba in src.colormap(1).items()}
    shares = rows.pivot_table(index="region", columns="class", values="percent", fill_value=0.0)
    order = rows.drop_duplicates("region")["region"].tolist()
    shares = shares.loc[order]
    values = rows.drop_duplicates("class").set_index("class")["value"]
    fig, ax = plt.subplots(figsize=(6.4, 3.9), dpi=110)
    left = pd.Series(0.0, index=shares.index)
    for name in sorted(shares.columns, key=lambda n: values[n]):
        ax.barh(shares.index, shares[name], left=left, color=colours.get(int(values[name]), "#999999"), label=name)
        left += shares[name]
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"share of the region's classified area (%), {level}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7, ncols=6, frameon=False)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), *sys.argv[4:])
