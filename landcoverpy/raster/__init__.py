"""Raster building blocks: grids and windows, masks, indices, composites, COG writing."""
