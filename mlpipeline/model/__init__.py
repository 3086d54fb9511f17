"""The model: LightGBM's fits and cross-validation (``boosting``), the Bayesian search (``search``,
``warmstart``), training and its metrics, and the meta-analysis of experiments (``analysis``)."""
