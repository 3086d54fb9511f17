"""Shared basics every layer uses: the params model (``config``), the pipeline's error, the stages'
command line, and each stage's code dependencies."""
