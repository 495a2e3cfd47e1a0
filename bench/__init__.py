"""The on-sale rush benchmark: `python -m bench rush|scale|soak|baselines` (see docs/benchmarks.md)."""
