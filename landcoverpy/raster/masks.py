"""Cloud / shadow / nodata masks on arrays. ``True`` means *invalid* (masked out).

One definition (:class:`MaskSettings`) is used by composites for training and for prediction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

# Scene Classification Layer classes masked by default: 3 cloud shadow, 8 cloud medium
# probability, 9 cloud high probability, 10 thin cirrus, 11 snow/ice (ESA L2A ATBD).
DEFAULT_SCL_CLASSES = (3, 8, 9, 10, 11)
# Also invalid in any case: 0 no data, 1 saturated/defective.
SCL_NODATA_CLASSES = (0, 1)


@dataclass(frozen=True)
class MaskSettings:
    scl_classes: tuple[int, ...] = DEFAULT_SCL_CLASSES
    cloud_probability_threshold: float = 0.4  # s2cloudless, L1C
    dilation_pixels: int = 0  # extra dilation of the final mask, in 10 m pixels
    cloudless_average_over: int = 4  # s2cloudless smoothing disk radius at the 60 m working grid
    cloudless_dilation: int = 2  # s2cloudless dilation disk radius at the 60 m working grid
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["scl_classes"] = list(self.scl_classes)
        return d


def scl_mask(scl: np.ndarray, classes: tuple[int, ...] = DEFAULT_SCL_CLASSES) -> np.ndarray:
    """True where the SCL class is cloud/shadow/snow (``classes``) or no data/defective. On the
    uint8 SCL one table lookup per pixel (``np.isin`` compares every pixel with every class)."""
    if scl.dtype == np.uint8:
        return scl_table(classes)[scl]
    return np.isin(scl, tuple(classes) + SCL_NODATA_CLASSES)


def scl_table(classes: tuple[int, ...] = DEFAULT_SCL_CLASSES) -> np.ndarray:
    """``scl_mask`` as a table over the 256 values of a uint8 SCL: ``scl_table(c)[scl]`` is
    ``scl_mask(scl, c)``."""
    table = np.zeros(256, dtype=bool)
    table[[c for c in (*classes, *SCL_NODATA_CLASSES) if 0 <= c < 256]] = True
    return table


def probability_mask(probability: np.ndarray, threshold: float) -> np.ndarray:
    """True where the cloud probability exceeds ``threshold`` (NaN probability = invalid)."""
    with np.errstate(invalid="ignore"):
        return ~(probability <= threshold)


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary dilation with a disk of radius ``pixels`` (0 = unchanged)."""
    if pixels <= 0:
        return mask
    r = int(pixels)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = xx * xx + yy * yy <= r * r
    return ndimage.binary_dilation(mask, structure=disk)


def apply_mask(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Copy of ``values`` (float) with masked pixels set to NaN."""
    out = values.astype("float32", copy=True)
    out[mask] = np.nan
    return out
