"""``python -m benchmarks``: the pipeline's overhead against the bare libraries (see
``benchmarks.pipeline``)."""

from benchmarks.pipeline import main

raise SystemExit(main())
