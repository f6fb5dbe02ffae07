"""The product's benchmarks: each script writes its section of BENCHMARKS.md.

Run them from the repository root as modules, e.g. ``python -m benchmarks.speed``.
"""
