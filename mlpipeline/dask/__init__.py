"""``engine: dask``: the same stages partition by partition on a Dask cluster, behind the
seam of ``mlpipeline.engine``. Dask is imported only here, and only when the engine is used."""
