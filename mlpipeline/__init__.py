"""The library beneath the pipeline's five stages (``stages/``) and its commands.

Layered one way: ``stages`` import it, it never imports ``stages``; within it, the commands
sit on top and the plain building blocks (config, io, features) at the bottom — see the
import-linter contracts in ``pyproject.toml``. The pandas path is the straight line; the
Dask engine sits behind one seam (``mlpipeline.engine``, ``mlpipeline.dask``).
"""
