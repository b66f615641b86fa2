"""Where to label next: points where the model is least sure, spread over space and classes.

The maps' ``uncertainty`` layer (100 x (1 - margin between the two most probable categories))
is read window by window; the most uncertain pixels of every (spatial block, mapped class) are
kept, and points are then taken round-robin over classes, each time from the block whose best
remaining candidate is the most uncertain, so a few confused spots never absorb the whole
budget. Blocks are squares of ``block_km`` on the map grid (a point's neighbours in the same
block would add little).
"""

from __future__ import annotations

import heapq
import logging
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from pyproj import Transformer

from landcoverpy.context import Context
from landcoverpy.errors import ModelError
from landcoverpy.raster.grid import block_windows
from landcoverpy.records import MapRecord

log = logging.getLogger(__name__)

PER_BLOCK = 3  # candidates kept per (block, class): at most this many points per block and class


def suggest(
    ctx: Context,
    maps: dict[str, MapRecord],
    n: int,
    block_km: float = 2.0,
    window: int = 2048,
    min_uncertainty: int = 1,
) -> pd.DataFrame:

    candidates: dict[tuple[str, int], dict[tuple[int, int], list[tuple[int, int, int]]]] = {}
    names: dict[int, str] = {}
    for tile in sorted(maps):
        rec = maps[tile]
        if "uncertainty" not in rec.outputs:
            raise ModelError(f"map {rec.id} has no uncertainty layer (made by an older version): classify again")
        names |= {v: n for n, v in rec.class_values("classification").items()}
        grid = rec.pixel_grid
        block_px = max(1, int(round(block_km * 1000 / grid.resolution)))
        unc_loc, cls_loc = rec.outputs["uncertainty"], rec.outputs["classification"]

        def scan(
            tile: str = tile, grid: Any = grid, block_px: int = block_px, unc_loc: Any = unc_loc, cls_loc: Any = cls_loc
        ) -> dict[tuple[str, int], dict[tuple[int, int], list[tuple[int, int, int]]]]:
            """This tile's candidates (read again whole if an outage cuts the reads)."""
            found: dict[tuple[str, int], dict[tuple[int, int], list[tuple[int, int, int]]]] = {}
            with (
                ctx.store.rasterio_env(),
                rasterio.open(ctx.store.raster_uri(unc_loc.bucket, unc_loc.key)) as unc_src,
                rasterio.open(ctx.store.raster_uri(cls_loc.bucket, cls_loc.key)) as cls_src,
            ):
                for win in block_windows(grid.height, grid.width, window):
                    unc = unc_src.read(1, window=win)
                    cls = cls_src.read(1, window=win)
                    ok = (cls > 0) & (unc != 255) & (unc >= min_uncertainty)
                    rows, cols = np.nonzero(ok)
                    if not len(rows):
                        continue
                    r_abs, c_abs = rows + int(win.row_off), cols + int(win.col_off)
                    u, k = unc[rows, cols].astype(np.int64), cls[rows, cols].astype(np.int64)
                    br, bc = r_abs // block_px, c_abs // block_px
                    # the PER_BLOCK most uncertain pixels of every (class, block) of this window
                    order = np.lexsort((-u, bc, br, k))
                    k_s, br_s, bc_s = k[order], br[order], bc[order]
                    start = np.ones(len(order), dtype=bool)
                    start[1:] = (k_s[1:] != k_s[:-1]) | (br_s[1:] != br_s[:-1]) | (bc_s[1:] != bc_s[:-1])
                    group_start = np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))
                    keep = order[(np.arange(len(order)) - group_start) < PER_BLOCK]
                    for i in keep:
                        heap = found.setdefault((tile, int(k[i])), {}).setdefault((int(br[i]), int(bc[i])), [])
                        item = (int(u[i]), int(r_abs[i]), int(c_abs[i]))
                        if len(heap) < PER_BLOCK:
                            heapq.heappush(heap, item)
                        elif item > heap[0]:
                            heapq.heapreplace(heap, item)
            return found

        candidates |= ctx.store.reading(scan, f"reading the maps of {tile}")

    # per class: blocks ordered by their best candidate; round-robin over classes
    per_class: dict[int, list[tuple[int, str, int, int]]] = {}
    for (tile, k), blocks in candidates.items():
        ranked = []
        for heap in blocks.values():
            for rank, (u, r, c) in enumerate(sorted(heap, reverse=True)):
                ranked.append((rank, -u, tile, r, c))  # first every block's best, then seconds...
        ranked.sort()
        per_class.setdefault(k, []).extend((-neg_u, tile, r, c) for _, neg_u, tile, r, c in ranked)
    chosen: list[tuple[int, int, str, int, int]] = []
    queues = {k: iter(v) for k, v in sorted(per_class.items())}
    while len(chosen) < n and queues:
        for k in list(queues):
            entry = next(queues[k], None)
            if entry is None:
                del queues[k]
                continue
            chosen.append((k, *entry))
            if len(chosen) == n:
                break
    records = []
    for k, u, tile, r, c in chosen:
        grid = maps[tile].pixel_grid
        x, y = grid.affine @ (c + 0.5, r + 0.5)
        lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
        records.append(
            {
                "latitude": round(lat, 7),
                "longitude": round(lon, 7),
                "tile": tile,
                "map_class": names.get(k, str(k)),
                "uncertainty": u,
                "category": "",
                "subcategory": "",
            }
        )
    frame = pd.DataFrame(
        records, columns=["latitude", "longitude", "tile", "map_class", "uncertainty", "category", "subcategory"]
    )
    frame.insert(0, "id", range(1, len(frame) + 1))
    log.info("suggested %d points over %d classes", len(frame), frame["map_class"].nunique() if len(frame) else 0)
    return frame
