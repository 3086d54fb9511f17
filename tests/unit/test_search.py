from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mlpipeline.core.config import TrainParams
from mlpipeline.core.errors import PipelineError
from mlpipeline.model.boosting import (
    CrossValidator,
    cap_threads,
    feature_columns,
    loss,
    model_params,
)
from mlpipeline.model.search import (
    BestModels,
    Checkpoint,
    CoreShare,
    Trial,
    WarmStart,
    ask_batch,
    best_trial,
    checkpoint_key,
    history_frame,
    one_blas_thread,
    portable_point,
    run_search,
    seeded_runner,
    skopt_space,
    trial_runner,
    worker_plan,
)


def train_params(task: str = "regression", **search) -> TrainParams:
    return TrainParams.model_validate(
        {
            "task": task,
            "target_transform": "log1p" if task == "regression" else "none",
            "feature_sets": {"all": ["carat", "cut", "noise"], "carat": ["carat"]},
            "search": {
                "n_calls": 4,
                "n_initial_points": 2,
                "batch_size": 2,
                "cv_folds": 3,
                "early_stopping_rounds": 10,
                "max_rounds": 60,
                "space": {
                    "learning_rate": {
                        "type": "real",
                        "low": 0.05,
                        "high": 0.3,
                        "prior": "log-uniform",
                    },
                    "num_leaves": {"type": "integer", "low": 4, "high": 16},
                    "min_child_samples": {"type": "integer", "low": 5, "high": 30},
                    "feature_set": {"type": "categorical", "categories": ["all", "carat"]},
                },
                **search,
            },
        }
    )


def search(frame, y, params, jobs=1, checkpoint=None, on_trial=lambda t: None, kept=None):
    """The search with seed 7, its trials in ``jobs`` processes of one LightGBM thread."""
    runner = trial_runner(frame, y, params, 7, jobs, 1)
    return run_search(runner, params.search, 7, checkpoint, on_trial, kept)


def _search(data, params, checkpoint=None, jobs=1, seen=None):
    frame, price = data
    on_trial = seen.append if seen is not None else lambda t: None
    return search(frame, np.log1p(price), params, jobs, checkpoint, on_trial)


def _outcome(trials):
    return [(t.point, t.score, t.best_iteration) for t in trials]


def test_space_follows_params_types_and_priors():
    dims = skopt_space(train_params().search)
    assert [d.name for d in dims] == [
        "learning_rate",
        "num_leaves",
        "min_child_samples",
        "feature_set",
    ]
    assert type(dims[0]).__name__ == "Real" and dims[0].prior == "log-uniform"
    assert type(dims[1]).__name__ == "Integer"
    assert type(dims[3]).__name__ == "Categorical"


def test_model_params_set_threads_seed_and_drop_the_feature_set():
    params = model_params(
        {"num_leaves": 7, "feature_set": "all"}, train_params(), seed=3, threads=2
    )
    assert params["num_leaves"] == 7 and params["seed"] == 3 and params["num_threads"] == 2
    assert params["deterministic"] is True
    assert "feature_set" not in params


@pytest.mark.parametrize(
    ("jobs", "batch", "cores", "plan"),
    [(0, 2, 2, (2, 1)), (1, 2, 2, (1, 2)), (0, 1, 2, (1, 2)), (4, 4, 2, (2, 1)), (0, 4, 8, (4, 2))],
)
def test_workers_times_threads_never_exceed_the_cores(jobs, batch, cores, plan):
    assert worker_plan(batch, jobs, cores) == plan


@pytest.mark.parametrize(("busy", "jobs", "limit"), [(2, 2, 1), (1, 2, 2), (0, 2, 2), (4, 2, 1)])
def test_a_trial_takes_the_cores_its_finished_partners_left(busy, jobs, limit):
    share = CoreShare(SimpleNamespace(value=busy), total=2, jobs=jobs)
    assert share.limit() == limit


def test_trees_do_not_change_when_the_thread_cap_changes_between_rounds():
    """What lets a search worker take idle cores mid-training without changing the result."""
    import lightgbm as lgb

    rng = np.random.default_rng(3)
    x = rng.normal(size=(20_000, 8))
    y = x[:, 0] * 2 + np.sin(x[:, 1]) + rng.normal(scale=0.1, size=len(x))
    params = model_params({"num_leaves": 31}, train_params(), seed=1, threads=2)

    def fit(callbacks):
        booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=30, callbacks=callbacks)
        return booster.model_to_string().split("parameters:")[0]

    try:
        cap_threads(1)
        one_thread = fit([])
        switching = fit([lambda env: cap_threads(2 if env.iteration % 2 else 1)])
    finally:
        cap_threads(0)
    assert switching == one_thread == fit([])


def test_unknown_feature_in_a_set_is_named():
    with pytest.raises(PipelineError, match=r"feature_sets\.all names columns .*\['noise'\]"):
        feature_columns(train_params(), {"feature_set": "all"}, ["carat", "cut"])


def test_search_is_deterministic_and_logs_every_trial(synthetic_regression):
    seen = []
    first = _search(synthetic_regression, train_params(), seen=seen)
    again = _search(synthetic_regression, train_params())
    assert _outcome(first) == _outcome(again)
    assert [t.number for t in seen] == [0, 1, 2, 3]
    best = best_trial(first)
    history = history_frame(first)
    assert history["best_score"].is_monotonic_decreasing
    assert history["best_score"].iloc[-1] == best.score


def test_parallel_workers_give_the_same_result(synthetic_regression):
    serial = _search(synthetic_regression, train_params(), jobs=1)
    parallel = _search(synthetic_regression, train_params(), jobs=2)
    assert _outcome(serial) == _outcome(parallel)


def test_a_resumed_search_reuses_finished_trials_and_ends_the_same(synthetic_regression, tmp_path):
    params = train_params()
    whole = _search(synthetic_regression, params)
    path = tmp_path / "ck.jsonl"
    partial = Checkpoint(path)
    for trial in whole[:3]:
        partial.add(trial)
    with open(path, "a") as handle:
        handle.write('{"number": 3, "poi')  # a line cut short by a kill
    resumed = _search(synthetic_regression, params, Checkpoint(path))
    assert [t.reused for t in resumed] == [True, True, True, False]
    assert _outcome(resumed) == _outcome(whole)
    assert [list(t.point) for t in resumed] == [list(t.point) for t in whole]


def test_a_warm_start_is_told_before_the_first_ask_and_replays_the_same(
    synthetic_regression, tmp_path
):
    params = train_params(n_calls=2, n_initial_points=2)
    points = [
        {"learning_rate": lr, "num_leaves": leaves, "min_child_samples": 10, "feature_set": fs}
        for lr, leaves, fs in ((0.1, 8, "all"), (0.2, 4, "carat"), (0.06, 16, "all"))
    ]
    warm = WarmStart("source", points, [0.30, 0.35, 0.28])
    cold = _search(synthetic_regression, params)
    told = _search(synthetic_regression, params, Checkpoint(tmp_path / "ck.jsonl", warm))
    assert [t.point for t in told] != [t.point for t in cold]  # the GP asked: 3 told >= 2
    assert all(t.point not in warm.points for t in told)
    resumed = _search(synthetic_regression, params, Checkpoint(tmp_path / "ck.jsonl", warm))
    assert [t.reused for t in resumed] == [True, True]
    assert _outcome(resumed) == _outcome(told)


def test_points_are_scored_again_under_each_seeds_folds(synthetic_regression):
    frame, price = synthetic_regression
    params, y = train_params(), np.log1p(price)
    points = [
        {"learning_rate": 0.1, "num_leaves": 8, "min_child_samples": 10, "feature_set": "all"},
        {"learning_rate": 0.2, "num_leaves": 4, "min_child_samples": 20, "feature_set": "carat"},
    ]
    with seeded_runner(frame, y, params, 1, 1) as evaluate:
        scores = evaluate(points, [3, 4, 5])
    assert scores.shape == (2, 3)
    assert scores[1, 2] == CrossValidator(frame, y, params, 5, 1).evaluate(points[1])[0]
    assert len(set(scores[0])) == 3  # other folds, other scores


def test_checkpoint_key_follows_the_space_seed_and_data():
    base = checkpoint_key(train_params(), 1, "d")
    assert checkpoint_key(train_params(), 1, "d") == base
    assert checkpoint_key(train_params(n_calls=5), 1, "d") != base
    assert checkpoint_key(train_params(), 2, "d") != base
    assert checkpoint_key(train_params(), 1, "e") != base
    assert checkpoint_key(train_params(finalists=1), 1, "d") == base  # acts after the search


def test_out_of_fold_predictions_cover_every_row(synthetic_regression):
    frame, price = synthetic_regression
    params = train_params()
    cv = CrossValidator(frame, np.log1p(price), params, 1, 1)
    point = {"learning_rate": 0.1, "num_leaves": 8, "min_child_samples": 10, "feature_set": "all"}
    _, _, best_iteration, boosters = cv.evaluate(point)
    oof = cv.out_of_fold(point, boosters.boosters, best_iteration)
    assert oof.shape == (len(frame),) and np.isfinite(oof).all()


@pytest.mark.parametrize("jobs", [1, 2], ids=["in process", "two workers"])
def test_the_search_keeps_the_best_trials_fold_models(synthetic_regression, jobs):
    frame, price = synthetic_regression
    params, y = train_params(), np.log1p(price)
    kept = BestModels()
    trials = search(frame, y, params, jobs, kept=kept)
    best = best_trial(trials)
    assert kept.number == best.number and kept.score == best.score
    cv = CrossValidator(frame, y, params, 7, 1)
    again = cv.evaluate(best.point)[3].boosters  # what a second cross-validation would give
    assert np.array_equal(
        cv.out_of_fold(best.point, kept.boosters(best), best.best_iteration),
        cv.out_of_fold(best.point, again, best.best_iteration),
    )


def test_the_kept_models_are_the_best_few_and_the_bar_is_the_last_of_them():
    def trial(number, score):
        return Trial(number, {"n": number}, score, 0.0, 10, 0.0)

    kept = BestModels(2)
    assert kept.score == float("inf")  # fewer than two held: every trial's models are wanted
    for number, score in [(0, 0.5), (1, 0.3), (2, 0.4), (3, 0.3), (4, 0.9)]:
        models = None if number == 4 else [f"model {number}"]
        kept.offer(trial(number, score), models)
    assert sorted(kept.held) == [1, 3] and kept.number == 1  # ties: the earlier trial first
    assert kept.score == 0.3  # a new trial must beat the second best for its models
    assert kept.boosters(trial(2, 0.4)) is None  # dropped when two better ones came


def test_a_best_trial_replayed_from_a_checkpoint_has_no_kept_models(tmp_path, synthetic_regression):
    params = train_params()
    _search(synthetic_regression, params, Checkpoint(tmp_path / "c.jsonl"))
    kept = BestModels()
    frame, price = synthetic_regression
    checkpoint = Checkpoint(tmp_path / "c.jsonl")
    trials = search(frame, np.log1p(price), params, 1, checkpoint, kept=kept)
    assert all(t.reused for t in trials)
    assert kept.number == best_trial(trials).number and kept.boosters(best_trial(trials)) is None


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_classification_search_uses_stratified_folds_and_log_loss(synthetic_classes, task):
    frame, size = synthetic_classes
    labels = (size > 0).astype(int) if task == "binary" else size
    params = train_params(task)
    trials = search(frame, labels, params)
    assert params.search.metric == ("binary_logloss" if task == "binary" else "multi_logloss")
    assert 0 < best_trial(trials).score < 0.5  # far below a coin's log loss (0.69)
    cv = CrossValidator(frame, labels, params, 7, 1)
    for _, held_out in cv.folds:  # every fold holds each class in about its share
        share = np.bincount(labels[held_out]) / len(held_out)
        assert np.allclose(share, np.bincount(labels) / len(labels), atol=0.02)
    best = best_trial(trials)
    _, _, _, boosters = cv.evaluate(best.point)
    oof = cv.out_of_fold(best.point, boosters.boosters, best.best_iteration)
    assert oof.shape == ((len(frame),) if task == "binary" else (len(frame), 3))
    assert model_params(best.point, params, 7, 1, cv.num_class).get("num_class") == (
        3 if task == "multiclass" else None
    )


def test_auc_is_maximised_as_a_negated_loss(synthetic_classes):
    frame, size = synthetic_classes
    labels = (size > 0).astype(int)
    trials = search(frame, labels, train_params("binary", metric="auc"))
    assert all(-1 <= t.score < -0.9 for t in trials)  # an AUC above 0.9, negated
    assert loss("auc", loss("auc", 0.95)) == 0.95 and loss("rmse", 0.3) == 0.3


@pytest.mark.parametrize("size", [1, 2, 3])
def test_ask_batch_gives_the_points_of_scikit_optimizes_batch_ask(size):
    from skopt import Optimizer

    dims = skopt_space(train_params().search)

    def optimizer():
        opt = Optimizer(  # the search's acquisition optimizer, on fewer candidates
            dims,
            base_estimator="GP",
            n_initial_points=3,
            acq_optimizer="sampling",
            acq_optimizer_kwargs={"n_points": 500},
            random_state=5,
        )
        for seed in range(5):  # past the initial points: the Gaussian process proposes
            x = opt.space.rvs(1, random_state=seed)[0]
            opt.tell(x, float(seed % 3) + x[0])
        return opt

    with one_blas_thread():  # as the search fits its Gaussian process
        ours, theirs = optimizer(), optimizer()
        for _ in range(2):  # and the optimizer's random state stays in step
            asked = ask_batch(ours, size)
            assert asked == (theirs.ask(n_points=size) if size > 1 else [theirs.ask()])
            ours.tell(asked, [0.5 + i for i in range(size)])
            theirs.tell(asked, [0.5 + i for i in range(size)])


def test_proposed_points_are_rounded_to_six_digits_within_bounds():
    """Other CPUs' SIMD code changes the optimizer's proposals in the last bits: rounded, every
    machine evaluates the same point."""
    dims = skopt_space(train_params().search)
    point = portable_point(dims, [0.0673058153356468, 12, 7, "all"])
    assert point == [0.0673058, 12, 7, "all"]
    assert portable_point(dims, [0.29999999999, 12, 7, "all"])[0] == 0.3  # the high bound
    assert portable_point(dims, [0.0500000001, 4, 5, "carat"])[0] == 0.05


def test_a_spent_time_budget_ends_the_search_after_the_batch_under_way(
    synthetic_regression, caplog
):
    params = train_params(n_calls=6, time_budget_s=0.001)
    with caplog.at_level("WARNING"):
        trials = _search(synthetic_regression, params)
    assert len(trials) == params.search.batch_size  # the first batch, then the budget stops it
    assert "time budget of 0.001 s (train.search.time_budget_s) is spent after 2 of 6" in (
        caplog.text
    )
    assert len(_search(synthetic_regression, train_params(n_calls=6))) == 6  # no budget: all
