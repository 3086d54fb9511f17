"""Training on a Dask cluster: each search trial is a cluster task (each worker loads the
training features once and keeps them for the whole search), the refit is ``lightgbm.dask``
on the partitions, and the test scores are computed per partition."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.core.config import Params, TrainParams
from mlpipeline.dask import cluster
from mlpipeline.data.io import path_md5
from mlpipeline.features.transform import model_frame, model_names
from mlpipeline.model.boosting import CrossValidator, feature_columns, model_params
from mlpipeline.model.search import Checkpoint, Trial, best_trial, kept_trial, run_search
from mlpipeline.model.training import Fitted, Target, read_split

LEARNED = "__learned_target__"

# Each Dask worker builds one validator per search (its features loaded once, by ``loader``).
_VALIDATORS: dict[str, CrossValidator] = {}


def load_learned(path: str, digest: str, target: Target) -> tuple[pd.DataFrame, np.ndarray]:
    """The training features and the target LightGBM fits (run by each Dask worker; ``digest``
    of the data names it in the workers' cache)."""
    del digest
    frame, values = read_split(Path(path), target.name)
    return frame, target.learned(values, "training")[1]


def _validator(loader: Callable, train_json: str, seed: int, threads: int) -> CrossValidator:
    # the loader's arguments name the data and its digest: a long-lived cluster's workers
    # never reuse features that have changed since
    key = f"{loader!r}|{train_json}|{seed}|{threads}"
    if key not in _VALIDATORS:
        _VALIDATORS.clear()  # one search's data at a time
        frame, y = loader()
        train = TrainParams.model_validate_json(train_json)
        _VALIDATORS[key] = CrossValidator(frame, y, train, seed, threads)
    return _VALIDATORS[key]


def _forget_validators() -> None:
    _VALIDATORS.clear()


def _trial(loader, train_json: str, seed: int, threads: int, number: int, point: dict) -> Trial:
    cv = _validator(loader, train_json, seed, threads)
    return kept_trial(cv, number, point, keep_below=float("-inf"))[0]


def _out_of_fold(loader, train_json: str, seed: int, threads: int, best: Trial) -> np.ndarray:
    cv = _validator(loader, train_json, seed, threads)
    boosters = cv.evaluate(best.point)[3].boosters  # deterministic: the best trial again
    return cv.out_of_fold(best.point, boosters, best.best_iteration)


class ClusterTrials:
    """Trials as tasks on a Dask cluster: each worker loads the training features itself
    (``loader`` runs on the worker) and keeps them for the whole search."""

    def __init__(self, client: Any, loader: Callable, train: TrainParams, seed: int) -> None:
        self.client = client
        workers = client.scheduler_info()["workers"].values()
        self.threads = min(w["nthreads"] for w in workers)
        self.slots = sum(w["nthreads"] for w in workers) // self.threads
        self.args = (loader, train.model_dump_json(), seed, self.threads)

    @contextmanager
    def runner(self) -> Iterator[Callable]:
        def evaluate(batch: list[tuple[int, dict]], keep_below: float) -> list[tuple[Trial, None]]:
            del keep_below  # models stay on the workers; out_of_fold recomputes them there
            submit = partial(self.client.submit, _trial, *self.args, pure=False)
            futures = [submit(number, point) for number, point in batch]
            return [(trial, None) for trial in self.client.gather(futures)]

        yield evaluate

    def out_of_fold(self, best: Trial) -> np.ndarray:
        return self.client.submit(_out_of_fold, *self.args, best, pure=False).result()

    def release(self) -> None:
        """Free the features the workers hold (a shared cluster outlives the stage)."""
        self.client.run(_forget_validators)


def _with_learned(frame: pd.DataFrame, target: Target) -> pd.DataFrame:
    return frame.assign(**{LEARNED: target.learned(frame[target.name], "training")[1]})


def refit_on_cluster(
    client: Any, path: Path, columns: list[str], lightgbm_params: dict, rounds: int, target: Target
) -> Any:
    """The chosen configuration trained with ``lightgbm.dask`` on the partitioned training
    features, on the cluster's workers, under the names the booster holds (``model_names``)."""
    import lightgbm as lgb

    # one frame for features and target, so that both keep the same partitions
    frame = cluster.read_parquet(path, columns=[*columns, target.name])
    frame = frame.map_partitions(_with_learned, target)
    model = lgb.DaskLGBMRegressor(client=client, n_estimators=rounds, **lightgbm_params)
    inputs = frame[columns].rename(columns=dict(zip(columns, model_names(columns), strict=True)))
    model.fit(inputs, frame[LEARNED])
    return model.booster_


def predict_partitions(booster: Any, path: Path, columns: list[str], threads: int) -> np.ndarray:
    """Raw scores of every row of a partitioned table, partition by partition on the cluster."""
    import dask

    frame = cluster.read_parquet(path, columns=columns)
    predict = dask.delayed(_predict, pure=True)
    parts = dask.compute(*[predict(booster, part, threads) for part in frame.to_delayed()])
    return np.concatenate(parts)


def _predict(booster: Any, frame: pd.DataFrame, threads: int) -> np.ndarray:
    return booster.predict(model_frame(frame, list(frame.columns)), num_threads=threads)


def fit_on_cluster(
    client: Any,
    inputs: dict[str, Path],
    target: Target,
    params: Params,
    checkpoint: Checkpoint,
    on_trial: Callable[[Trial], None],
) -> Fitted:
    """``mlpipeline.model.training.fit`` on a Dask cluster: trials and out-of-fold scores as tasks,
    the refit with ``lightgbm.dask``, test scores per partition."""
    import pyarrow.parquet as pq

    train, seed = params.train, params.seed
    loader = partial(load_learned, str(inputs["train"]), path_md5(inputs["train"]), target)
    trials_on = ClusterTrials(client, loader, train, seed)
    try:
        trials = run_search(trials_on.runner(), train.search, seed, checkpoint, on_trial)
        best = best_trial(trials)
        oof = trials_on.out_of_fold(best)
    finally:
        trials_on.release()
    names = pq.ParquetDataset(inputs["train"]).schema.names
    columns = feature_columns(train, best.point, [c for c in names if c != target.name])
    final = model_params(best.point, train, seed, trials_on.threads, target.num_class)
    rounds = best.best_iteration
    booster = refit_on_cluster(client, inputs["train"], columns, final, rounds, target)
    test_scores = predict_partitions(booster, inputs["test"], columns, trials_on.threads)
    return Fitted(trials, best, oof, booster, columns, final, test_scores)


class DaskTrain:
    """``mlpipeline.engine.train``'s engine on a cluster: trials as tasks, the refit with
    ``lightgbm.dask``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def fit(
        self,
        inputs: dict[str, Path],
        target: Target,
        params: Params,
        checkpoint: Checkpoint,
        on_trial: Callable[[Trial], None],
    ) -> Fitted:
        return fit_on_cluster(self.client, inputs, target, params, checkpoint, on_trial)
