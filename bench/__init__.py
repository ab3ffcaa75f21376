"""Benchmarks, outside `make test`: `python -m bench` (the pipeline) and `python -m bench.index_scale`."""
