"""Serving: the packaged MLflow model (``packaging``, ``serving``, ``card``), and the rollout of a
challenger beside the champion (``rollout``, ``router``, ``live``, ``rollout_report``)."""
