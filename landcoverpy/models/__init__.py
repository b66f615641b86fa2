"""Models: hierarchical LULC classifiers, their metrics, and the BRITS abundance model."""
