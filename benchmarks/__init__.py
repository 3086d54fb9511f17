"""Benchmarks of the pipeline's stages (run as modules, e.g. ``python -m benchmarks.validate``)."""
