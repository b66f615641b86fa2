"""Running stages as Dask tasks: cluster connection, task helpers, the whole workflow."""
