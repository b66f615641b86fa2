"""Pictures and tables people read: confusion matrices, map quicklooks with legends, run reports."""

from __future__ import annotations

import io
import json
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import font_manager
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from landcoverpy.models.metrics import ClassificationScores


def _font_families() -> list[str]:
    """DejaVu Sans plus the installed fonts that cover other scripts, so class names in CJK
    (or other non-Latin scripts) draw in legends instead of empty boxes (matplotlib falls back
    glyph by glyph along this list). Only installed families are listed: no font warnings."""

    installed = {f.name for f in font_manager.fontManager.ttflist}
    wanted = [
        "DejaVu Sans",
        "Noto Sans CJK JP",
        "Noto Sans CJK SC",
        "WenQuanYi Micro Hei",
        "WenQuanYi Zen Hei",
        "Droid Sans Fallback",
        "Noto Sans",
    ]
    return [f for f in wanted if f in installed] or ["sans-serif"]


plt.rcParams["font.family"] = _font_families()


def confusion_matrix_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    m = ClassificationScores.of(metrics)
    return pd.DataFrame(
        m.confusion_matrix, index=pd.Index(m.labels, name="true"), columns=pd.Index(m.labels, name="predicted")
    )


def confusion_matrix_png(metrics: dict[str, Any], title: str) -> bytes:
    """Confusion matrix with the true class on the rows (y axis) and the predicted class on the
    columns (x axis), counts annotated, row-normalised colours."""
    m = ClassificationScores.of(metrics)
    cm, labels = np.asarray(m.confusion_matrix, dtype=float), m.labels
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    size = max(4.0, 0.7 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_title(
        f"{title}\nOA {metrics['overall_accuracy']:.3f}  kappa {metrics['kappa']:.3f}  "
        f"macro F1 {metrics['macro_f1']:.3f}",
        fontsize=10,
    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="row fraction")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def quicklook_png(
    values: np.ndarray, colours: dict[int, tuple[int, int, int]], names: dict[int, str], title: str
) -> bytes:
    """A class map (already downsampled) with a legend of the classes present."""
    present = [v for v in sorted(colours) if (values == v).any()]
    lut = np.zeros((256, 4))
    for v, rgb in colours.items():
        lut[v] = [c / 255 for c in rgb] + [1.0]
    rgba = lut[values]
    h, w = values.shape
    fig, ax = plt.subplots(figsize=(8, 8 * h / max(w, 1) + 0.5))
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    handles = [Patch(color=rgb_fraction(colours[v]), label=f"{v} {names.get(v, '')}") for v in present]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    # the legend also as PNG text (iTXt, UTF-8): exact names for tools and tests, whatever the fonts
    legend = json.dumps(
        [
            {"value": int(v), "name": names.get(v, ""), "colour": "#{:02x}{:02x}{:02x}".format(*colours[v])}
            for v in present
        ],
        ensure_ascii=False,
    )
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Title": title, "Legend": legend})
    plt.close(fig)
    return buf.getvalue()


def confidence_png(values: np.ndarray, title: str, label: str = "confidence (%)", nodata: int = 0) -> bytes:
    """A 0-100 score map (confidence, uncertainty) with a colour bar; ``nodata`` is transparent."""
    masked = np.ma.masked_equal(values, nodata)
    fig, ax = plt.subplots(figsize=(8, 8 * values.shape[0] / max(values.shape[1], 1) + 0.5))
    im = ax.imshow(masked, cmap=ListedColormap(plt.cm.viridis(np.linspace(0, 1, 20))), vmin=0, vmax=100)
    ax.set_axis_off()
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# Colour hints by class-name keyword, so maps read naturally (water blue, forest green...).
_HINTS: list[tuple[tuple[str, ...], tuple[int, int, int]]] = [
    (("ocean", "sea", "marine"), (8, 48, 107)),
    (("lagoon", "lake", "river", "estuar"), (66, 146, 198)),
    (("water", "agua"), (33, 113, 181)),
    (("marsh", "wetland", "humedal", "swamp"), (65, 171, 158)),
    (("forest", "bosque", "tree", "wood"), (0, 100, 27)),
    (("shrub", "matorral", "scrub"), (120, 150, 50)),
    (("grass", "pasto", "meadow", "pasture"), (173, 221, 142)),
    (("crop", "cultiv", "agri", "arable"), (255, 217, 47)),
    (("vegetation",), (49, 163, 84)),
    (("sand", "beach", "dune", "playa"), (253, 219, 160)),
    (("bare", "soil", "rock", "suelo"), (166, 118, 29)),
    (("urban", "built", "city", "artificial", "urbano"), (215, 48, 39)),
    (("snow", "ice", "glacier"), (240, 240, 255)),
]


def rgb_fraction(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    return (rgb[0] / 255, rgb[1] / 255, rgb[2] / 255)


def class_colours(values: dict[str, int]) -> dict[int, tuple[int, int, int]]:
    """A colour per class value: a natural colour when the class name says what it is, else a
    stable tab20 colour; grey for 1 = not classified when present."""
    cmap = plt.get_cmap("tab20")
    out: dict[int, tuple[int, int, int]] = {}
    used: set[tuple[int, int, int]] = set()
    for i, (name, value) in enumerate(sorted(values.items(), key=lambda kv: kv[1])):
        low = name.lower()
        hint = next((rgb for keys, rgb in _HINTS if any(k in low for k in keys) and rgb not in used), None)
        if name == "not classified":
            colour = (190, 190, 190)
        elif hint is not None:
            colour = hint
        else:
            r, g, b, _ = cmap(i % 20)
            colour = (int(r * 255), int(g * 255), int(b * 255))
        used.add(colour)
        out[value] = colour
    return out
