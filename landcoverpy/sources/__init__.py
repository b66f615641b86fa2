"""Data providers. Each searches products for a tile and date range and streams their assets."""
