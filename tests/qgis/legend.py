"""Run by Debian's python3 (with python3-qgis), not the project's: opens each raster as a person
opening it in QGIS does (the style beside it, ``name.qml``, loaded as the default style), and each
GeoPackage layer (``path.gpkg|layername=NAME``, its default style from the ``layer_styles``
table), and prints what the layer panel shows: renderer, classes with their labels, or the
legend."""

import json
import os
import sys

from qgis.core import QgsApplication, QgsRasterLayer, QgsVectorLayer

app = QgsApplication([], False)
app.initQgis()
out = {}
for path in sys.argv[1:]:
    if ".gpkg" in path:
        vector = QgsVectorLayer(path, "polygons", "ogr")  # loads the default style as QGIS does
        r = vector.renderer()
        entry = {"valid": vector.isValid(), "features": vector.featureCount(), "renderer": r.type() if r else None}
        if r is not None and r.type() == "categorizedSymbol":
            entry["field"] = r.classAttribute()
            entry["categories"] = {c.label(): c.symbol().color().name() for c in r.categories()}
        out[path] = entry
        continue
    layer = QgsRasterLayer(path, "map")
    msg, ok = layer.loadDefaultStyle()
    r = layer.renderer()
    entry = {"valid": layer.isValid(), "style_loaded": bool(ok), "renderer": r.type() if r else None}
    if r is not None and r.type() == "paletted":
        entry["classes"] = {str(c.value): c.label for c in r.classes()}
    elif r is not None:
        entry["legend"] = [label for label, _ in r.legendSymbologyItems()]
    out[path] = entry
print(json.dumps(out), flush=True)
os._exit(0)  # QGIS may crash while tearing down headless (exitQgis): what it showed is printed
