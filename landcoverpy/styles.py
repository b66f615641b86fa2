"""Styles and category names that desktop GIS read beside a map.

- A QGIS style (``.qml`` with the raster's base name: QGIS loads it as the layer's default
  style): paletted with every class's name and colour for class maps; a graduated colour ramp
  for confidence and abundance maps.
- A GDAL auxiliary file (``.tif.aux.xml``) with the band's category names, so GDAL
  (``gdalinfo``, QGIS's identify tool, rasterio users through GDAL) show names, not numbers.

Pure text builders: the stages write the results next to the COGs.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

QGIS_VERSION = "3.28.0-Firenze"


def _hex(rgb: tuple[int, ...]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb[:3])


def _qgis_root(renderer: ET.Element) -> str:
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="AllStyleCategories")
    pipe = ET.SubElement(root, "pipe")
    pipe.append(renderer)
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def paletted_qml(classes: dict[int, tuple[str, tuple[int, int, int]]], band: int = 1) -> str:
    """Class value -> (name, colour). Nodata (0) is not listed: QGIS leaves it transparent."""
    renderer = ET.Element(
        "rasterrenderer", type="paletted", band=str(band), opacity="1", alphaBand="-1", nodataColor=""
    )
    palette = ET.SubElement(renderer, "colorPalette")
    for value, (name, rgb) in sorted(classes.items()):
        ET.SubElement(palette, "paletteEntry", value=str(value), color=_hex(rgb), alpha="255", label=name)
    return _qgis_root(renderer)


# Viridis at five stops, for graduated maps (confidence 0-100, abundance 0-1)
_RAMP = [(0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)), (1.0, (253, 231, 37))]


def graduated_qml(minimum: float, maximum: float, label: str, band: int = 1) -> str:
    """A continuous colour ramp (viridis) from ``minimum`` to ``maximum``."""
    renderer = ET.Element(
        "rasterrenderer",
        type="singlebandpseudocolor",
        band=str(band),
        opacity="1",
        alphaBand="-1",
        classificationMin=repr(float(minimum)),
        classificationMax=repr(float(maximum)),
        nodataColor="",
    )
    shader = ET.SubElement(
        ET.SubElement(renderer, "rastershader"),
        "colorrampshader",
        colorRampType="INTERPOLATED",
        classificationMode="1",
        clip="0",
        minimumValue=repr(float(minimum)),
        maximumValue=repr(float(maximum)),
        labelPrecision="2",
    )
    for frac, rgb in _RAMP:
        value = minimum + frac * (maximum - minimum)
        ET.SubElement(
            shader, "item", value=repr(float(value)), color=_hex(rgb), alpha="255", label=f"{value:g} {label}".strip()
        )
    return _qgis_root(renderer)


def category_aux_xml(names: dict[int, str], band: int = 1) -> str:
    """GDAL PAM file with the band's category names (entry i names value i; gaps are empty)."""
    root = ET.Element("PAMDataset")
    rb = ET.SubElement(root, "PAMRasterBand", band=str(band))
    cats = ET.SubElement(rb, "CategoryNames")
    top = max(names) if names else 0
    for value in range(top + 1):
        ET.SubElement(cats, "Category").text = names.get(value, "")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def read_paletted_qml(text: str) -> dict[int, tuple[str, str]]:
    """Value -> (label, colour) of a paletted QGIS style (for checks and tools)."""
    root = ET.fromstring(text.split("\n", 1)[1] if text.startswith("<!DOCTYPE") else text)
    return {int(e.get("value", "0")): (e.get("label", ""), e.get("color", "")) for e in root.iter("paletteEntry")}


def read_category_names(text: str, band: int = 1) -> list[str]:
    root = ET.fromstring(text)
    for rb in root.iter("PAMRasterBand"):
        if rb.get("band") == str(band):
            return [c.text or "" for c in rb.iter("Category")]
    return []
