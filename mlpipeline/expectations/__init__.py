"""Great Expectations (GX Core 1.x) behind a few functions: suites as stable JSON files
(``suite``), validation in an in-memory context with a stable report (``validation``), and
the report as a page people read (``html``)."""
