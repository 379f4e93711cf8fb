import numpy as np
import pytest

from seqguard.scoring.entity import aggregate_entity_labels, aggregate_entity_scores


def test_entity_scores_do_not_grow_with_window_count() -> None:
    ids = np.array(["long"] * 9 + ["short"])
    scores = np.array([0.1] * 8 + [0.95] + [0.6])
    by_mean = aggregate_entity_scores(ids, scores, "mean").set_index("entity_id")
    by_max = aggregate_entity_scores(ids, scores, "max").set_index("entity_id")
    assert by_max.loc["long", "score"] > by_max.loc["short", "score"]
    assert by_mean.loc["long", "score"] < by_mean.loc["short", "score"]
    assert by_mean.loc["long", "n_windows"] == 9
    assert list(by_mean.index) == ["long", "short"]


def test_nan_windows_are_ignored_and_unknown_method_is_named() -> None:
    out = aggregate_entity_scores(np.array(["a", "a", "b"]), np.array([np.nan, 0.4, np.nan]), "median")
    assert out.set_index("entity_id").loc["a", "score"] == pytest.approx(0.4)
    assert np.isnan(out.set_index("entity_id").loc["b", "score"])
    with pytest.raises(ValueError, match="'p90' is not one of max, mean, median"):
        aggregate_entity_scores(np.array(["a"]), np.array([0.1]), "p90")


def test_entity_label_is_any_window() -> None:
    labels = aggregate_entity_labels(np.array(["a", "a", "b"]), np.array([0, 1, 0]))
    assert labels.to_dict() == {"a": 1, "b": 0}
