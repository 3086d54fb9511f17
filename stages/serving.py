"""The packaged model (MLflow models-from-code): raw rows in, predictions out.

MLflow copies this file into the model folder and runs it at load time; ``set_model`` below
names the model. The booster is LightGBM's own text format and the feature spec is JSON, so
the artifact holds no pickle. ``stages/features.py`` travels with the model as code, under the
module name ``pipeline_features`` (see ``stages.package.code_package``).
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

BOOSTER = "booster"
METADATA = "metadata"


class TabularModel(PythonModel):
    """A LightGBM booster behind the pipeline's own featurization.

    Regression: the predicted target, on its own scale. Classification: a frame with the
    predicted class (``prediction``) and one ``probability_<class>`` column per class.
    """

    def load_context(self, context) -> None:
        import lightgbm as lgb
        from pipeline_features import FeatureSpec

        self._booster = lgb.Booster(model_file=context.artifacts[BOOSTER])
        with open(context.artifacts[METADATA]) as handle:
            meta = json.load(handle)
        self._spec = FeatureSpec(**meta["spec"])
        self._meta = meta
        self._threads = int(meta.get("num_threads", 1))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        from pipeline_features import build_features, model_output

        features = build_features(pd.DataFrame(model_input), self._spec)
        raw = self._booster.predict(features, num_threads=self._threads, validate_features=True)
        return model_output(raw, self._meta)


mlflow.models.set_model(TabularModel())
