"""The packaged model (MLflow models-from-code): raw rows in, predictions out.

MLflow copies this file into the model folder and runs it at load time; ``set_model`` below
names the model. The booster is LightGBM's own text format and the feature spec is JSON, so
the artifact holds no pickle. The booster predicts on the numeric feature matrix
(``feature_matrix``), not a frame: a 1-row request costs about 2 ms in-process.
``mlpipeline/features/transform.py`` travels with the model as code, under the module name
``pipeline_features`` (see ``mlpipeline.serve.packaging.code_package``); this file imports nothing
else of this repository, so the model runs wherever MLflow, LightGBM and pandas do.

Requests are checked before anything is computed (``check_request``): a missing or unexpected
column, text in a numeric column, a missing value where training had none, an unseen category
(unless ``package.unseen_categories`` is ``missing``), no rows or too many rows raise an
``MlflowException`` with error code ``INVALID_PARAMETER_VALUE``, which the model server
answers with HTTP 400 and the message.
"""

from __future__ import annotations

import importlib
import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

BOOSTER = "booster"
METADATA = "metadata"
EXPLAIN = "explain"  # the request param (MLflow's params schema): per-row contributions
FEATURES_MODULE = (
    "pipeline_features"  # = mlpipeline.data.names.SHIPPED_FEATURES (this file runs alone)
)


class TabularModel(PythonModel):
    """A LightGBM booster behind the pipeline's own featurization.

    Regression: the predicted target, on its own scale. Classification: a frame with the
    predicted class (``prediction``) and one ``probability_<class>`` column per class.
    """

    def load_context(self, context) -> None:
        import lightgbm as lgb

        # this model's own copy of the featurization, held here: another model loaded later
        # in the same process replaces the module of that name in sys.modules
        self._features = importlib.import_module(FEATURES_MODULE)
        self._booster = lgb.Booster(model_file=context.artifacts[BOOSTER])
        with open(context.artifacts[METADATA]) as handle:
            self._meta = json.load(handle)
        self._spec = self._features.FeatureSpec(**self._meta["spec"])
        self._threads = int(self._meta.get("num_threads", 1))
        check_encoding(self._booster, self._spec, self._features)

    @property
    def input_columns(self) -> list[str]:
        return list(self._spec.inputs)

    def score(self, rows: pd.DataFrame, explain: bool = False) -> np.ndarray | pd.DataFrame:
        """Predictions for rows already known to be well-formed (no request checks); with
        ``explain``, each row's raw score and contributions (``explained_output``)."""
        features = self._features.feature_matrix(rows, self._spec)
        raw = self._booster.predict(features, num_threads=self._threads)
        output = self._features.model_output(raw, self._meta)
        if not explain:
            return output
        margins = self._booster.predict(features, raw_score=True, num_threads=self._threads)
        parts = self._booster.predict(features, pred_contrib=True, num_threads=self._threads)
        return self._features.explained_output(
            output, margins, parts, list(self._spec.features), self._meta
        )

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        explain = (params or {}).get(EXPLAIN, False)
        if not isinstance(explain, bool):  # MLflow's schema refuses most; null it lets through
            raise MlflowException(
                f"invalid request: params.{EXPLAIN} must be true or false, not {explain!r}",
                error_code=INVALID_PARAMETER_VALUE,
            )
        try:
            rows = self._features.check_request(
                pd.DataFrame(model_input),
                self._spec,
                max_rows=int(self._meta.get("max_batch_rows", 100_000)),
                unseen=self._meta.get("unseen_categories", "reject"),
            )
        except self._features.FeatureError as exc:
            raise MlflowException(
                f"invalid request: {exc}", error_code=INVALID_PARAMETER_VALUE
            ) from None
        return self.score(rows, explain)


def check_encoding(booster, spec, features) -> None:
    """The booster was trained on exactly the spec's features, in its order, with the spec's
    category levels: so the model's numeric feature matrix means to it what the training frame
    meant (checked once, at load, instead of on every request). The booster holds the
    features under ``features.model_names`` (names LightGBM accepts)."""
    categorical = [spec.categories[c] for c in spec.features if c in spec.categories]
    names = features.model_names(spec.features)
    if booster.feature_name() != names or (booster.pandas_categorical or []) != categorical:
        raise ValueError(
            f"the booster's features {booster.feature_name()} (categories "
            f"{booster.pandas_categorical}) do not match the feature spec {spec.features} "
            f"(categories {categorical}): package the model again"
        )


mlflow.models.set_model(TabularModel())
