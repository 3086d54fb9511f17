"""Tracking: MLflow runs with lineage (``runs``), the model registry (``registry``), and the charts
logged with them (``plots``)."""
