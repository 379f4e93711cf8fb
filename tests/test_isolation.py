"""The label-free isolation forest as plain JSON trees (seqguard.train.isolation) and the tail pooling of
label-free percentiles (seqguard.scoring.ensemble.combine_percentiles)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqguard.features import FEATURE_NAMES
from seqguard.scoring.ensemble import ISOLATION, UNSUPERVISED, Ensemble, combine_percentiles
from seqguard.scoring.tabular import TreeModel
from seqguard.train.isolation import average_path_length, fit_isolation_forest


def _features(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
    x[:, :5] = np.round(x[:, :5])  # count-like columns: ties, as real aggregates have
    return x


def test_exported_forest_reproduces_scikit_learn_and_survives_json() -> None:
    from sklearn.ensemble import IsolationForest

    x = _features(600, 0)
    model = fit_isolation_forest(x, seed=3, n_trees=50)
    probe = _features(300, 1)
    probe[:10] *= 50  # far outside the training ranges
    reference = -IsolationForest(n_estimators=50, random_state=3, n_jobs=1).fit(x).score_samples(probe)
    np.testing.assert_allclose(2.0 ** model.decision_function(probe), reference, rtol=1e-9)
    again = TreeModel.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(again.decision_function(probe), model.decision_function(probe))
    # Single windows (the service's pointer-jumping path) score as in a batch.
    np.testing.assert_allclose(model.decision_function(probe[:2]), model.decision_function(probe)[:2], rtol=1e-12)
    assert model.decision_function(probe)[:10].mean() > model.decision_function(probe)[10:].mean()


def test_average_path_length_matches_the_paper() -> None:
    # c(n) = 2 H(n - 1) - 2 (n - 1) / n with H(i) = ln(i) + Euler's constant; c(2) = 1, c(1) = c(0) = 0.
    got = average_path_length(np.array([0, 1, 2, 256]))
    np.testing.assert_allclose(got, [0.0, 0.0, 1.0, 2 * (np.log(255) + np.euler_gamma) - 2 * 255 / 256])


def test_tail_pooling_lets_one_extreme_component_count() -> None:
    calm = [np.array([0.9]), np.array([0.9]), np.array([0.9])]
    one_extreme = [np.array([0.999]), np.array([0.5]), np.array([0.5])]
    assert combine_percentiles(one_extreme, "tail")[0] > combine_percentiles(calm, "tail")[0]
    assert combine_percentiles(one_extreme, "mean")[0] < combine_percentiles(calm, "mean")[0]  # what "tail" fixes
    np.testing.assert_allclose(combine_percentiles([np.array([0.0, 1.0])] * 2, "tail"), [0.0, 1.0])
    # Linear in the log tail shares (an entity's mean of window scores keeps the far tail): 10x rarer, +1/3.
    np.testing.assert_allclose(combine_percentiles([np.array([0.9, 0.99])], "tail"), [1 / 3, 2 / 3])
    with pytest.raises(ValueError, match="unknown label-free combination"):
        combine_percentiles(calm, "max")


def test_label_free_ensemble_keeps_the_forest_and_round_trips(tmp_path) -> None:
    x = _features(400, 2)
    forest = fit_isolation_forest(x, seed=0, n_trees=20)
    rng = np.random.default_rng(0)
    ens = Ensemble.fit([], [], None, np.zeros(len(x)), np.zeros((len(x), 0)), None,
                       unsupervised_reference=rng.uniform(size=len(x)), isolation=forest,
                       isolation_reference=forest.decision_function(x))
    assert ens.isolation is not None and ISOLATION in ens.reference
    assert ens.main.metrics["averaged"] == [UNSUPERVISED, ISOLATION] and ISOLATION in ens.degraded.inputs
    ens.save(tmp_path / "ensemble.json")
    back = Ensemble.load(tmp_path / "ensemble.json")
    np.testing.assert_array_equal(back.isolation.decision_function(x[:50]), forest.decision_function(x[:50]))
    assert back.main.thresholds == ens.main.thresholds and 0 < back.main.thresholds["review"] < 1.0
