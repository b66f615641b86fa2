"""The asset layer: the one place that knows every asset kind.

For each kind (product, cloud mask, composite, DEM layer, training dataset, model, hierarchy, map,
abundance dataset, abundance model, abundance map) it owns

- what the id hashes: the parameter records (:mod:`.params`) and the id functions (:mod:`.ids`),
  derived from the ids of the inputs, every parameter that changes the content, and a format
  version;
- where the objects live: bucket and key functions (:mod:`.keys`); keys contain the id, so an
  object at a key is never replaced by different content;
- the lookups the stages need (:mod:`.lookup`), computed with exactly the id rules the builders
  use;
- publication: files with size and checksum, the human-friendly ``latest/`` alias, pruning
  (:mod:`.publish`), and STAC (:mod:`.stac`);
- the run lease that serialises runs on one catalog (:mod:`.lease`).

Stages import this package to find their inputs and to name their outputs; no stage imports
another stage to find an asset. Submodules are imported explicitly (``from landcoverpy.assets
import ids``) so importing the package stays cheap and free of cycles.
"""
