"""Featurization: the transform shipped inside the model (``transform``: raw rows in, model
features out) and the featurize stage's split and spec (``prepare``)."""
