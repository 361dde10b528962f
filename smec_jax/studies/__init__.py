"""The lab: the reproduction, Pareto grids, analyses, benchmarks, the PyTorch peer and statistics. Nothing else in the package imports it."""
