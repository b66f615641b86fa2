"""Draw a vectorised map (a GeoPackage layer of `landcoverpy vectorize`) in its classes' colours,
for the documentation:

    python docs/figures/polygons.py demo-output/classification_mmu50_18SVG.gpkg docs/assets/demo_polygons.png

The colours are the ones in the layer's QGIS style (its ``layer_styles`` row)."""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import shapely  # noqa: E402
from matplotlib.patches import Patch, PathPatch  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402
from pyogrio.raw import read as ogr_read  # noqa: E402


def style_colours(gpkg: Path, layer: str) -> dict[str, str]:
    with sqlite3.connect(gpkg) as con:
        qml = con.execute("SELECT styleQML FROM layer_styles WHERE f_table_name = ?", (layer,)).fetchone()[0]
    names = re.findall(r'<category value="([^"]+)"', qml)
    colours = re.findall(r'name="color" type="QString" value="(\d+),(\d+),(\d+)', qml)
    return {n: "#{:02x}{:02x}{:02x}".format(*map(int, c)) for n, c in zip(names, colours, strict=True)}


def main(gpkg: Path, out: Path, layer: str = "classification") -> None:
    meta, _, wkb, fields = ogr_read(str(gpkg), layer=layer)
    table = dict(zip(meta["fields"], fields, strict=True))
    colours = style_colours(gpkg, layer)
    fig, ax = plt.subplots(figsize=(6.4, 6.4), dpi=110)
    for geom, name in zip(shapely.from_wkb(wkb), table["class"], strict=True):
        for poly in getattr(geom, "geoms", [geom]):
            rings = [poly.exterior, *poly.interiors]  # holes stay open: the polygons inside show
            vertices = np.concatenate([np.asarray(r.coords) for r in rings])
            codes = np.concatenate(
                [[MplPath.MOVETO] + [MplPath.LINETO] * (len(r.coords) - 2) + [MplPath.CLOSEPOLY] for r in rings]
            )
            patch = PathPatch(MplPath(vertices, codes), facecolor=colours.get(name, "#999999"))
            patch.set(edgecolor="black", linewidth=0.15)
            ax.add_patch(patch)
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.set_axis_off()
    present = sorted(set(table["class"]))
    ax.legend(handles=[Patch(color=colours[n], label=n) for n in present], loc="lower left", fontsize=7)
    ax.set_title(f"{len(table['class'])} polygons, {layer}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:])
