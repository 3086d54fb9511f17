"""Reading tables: the one reader every entry point uses (``io``), sources under DVC (``sources``),
column names LightGBM and MLflow accept (``names``), and what ``init`` learns from a table
(``profile``)."""
