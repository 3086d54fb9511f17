"""Data quality: Great Expectations suites and validation (``suite``, ``validation``, ``html``),
drift statistics (``drift``), and checks of a new batch against the model (``monitoring``)."""
