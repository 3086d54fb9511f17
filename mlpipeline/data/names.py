"""Names used in more than one place: files inside outputs, MLflow artifacts and tags, and
the DVC outputs the registry reads from ``dvc.lock``. Paths of outputs live in ``dvc.yaml``."""

from __future__ import annotations

# featurize's output folder
TRAIN_FILE = "train.parquet"
TEST_FILE = "test.parquet"
TEST_ROWS_FILE = "test_rows.parquet"  # the test part's raw rows: what the gate scores models on
SPEC_FILE = "spec.json"

# train's model folder
BOOSTER_FILE = "booster.txt"
SUMMARY_FILE = "summary.json"
SEARCH_HISTORY = "search.csv"  # in the plots folder
PREDICTIONS = "predictions.csv"
IMPORTANCE = "importance.csv"
SLICES = "slices.csv"  # the test metric by segment
WORST_FILE = "worst_predictions.json"  # in the model folder: the card's worst predictions
CONFUSION = "confusion.csv"  # classification only, as the two curves
ROC = "roc.csv"
PRECISION_RECALL = "precision_recall.csv"

# the packaged model
SHIPPED_FEATURES = "pipeline_features"  # the module serving.py imports (it names it itself:
# it runs inside the model, without this package; a unit test holds the two equal)
MODEL_ARTIFACT = "model"  # the logged model's name in its run

# the rollout router (mlpipeline/serve/router.py):
# registered as <model_name><ROUTER_SUFFIX>, alias LIVE
ROUTER_SUFFIX, LIVE = "-router", "live"
SHIPPED_LIVE = "pipeline_live"  # serve/live.py inside the router (router.py names it too)
# what the rollout report recommends (and `registry promote|rollback --from-report` acts on)
PROMOTE, KEEP_WATCHING, ROLL_BACK = "promote", "keep watching", "roll back"

# the tables each stage's MLflow run lists as its datasets (MLflow's Datasets panel)
RAW_DATASET, TRAIN_DATASET, TEST_DATASET = "raw", "train", "test"

# registry aliases
CHAMPION, CHALLENGER = "champion", "challenger"

# the DVC outputs whose dvc.lock hashes every registered version carries
LOCKED_OUTPUTS = {  # lineage tag -> (stage, output path in dvc.yaml)
    "data.raw.md5": ("ingest", "data/raw/data.parquet"),
    "data.features.md5": ("featurize", "data/features"),
    "model.lgbm.md5": ("train", "models/lgbm"),
}
