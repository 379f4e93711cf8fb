"""Window scores -> one score per entity (an account, a device, a session).

Risk teams act on entities, and an entity's score must not grow with the number of its windows: benign accounts
have more windows than bad ones, so `max` favours them into false positives on long histories. The method is a
trained choice (saved with the checkpoint, see `ENTITY_AGGREGATION_KEY`) and used by `evaluate`, `seqguard score`
(single machine and Spark) and reports alike, so this module is the only place it is computed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

EntityAggregation = Literal["max", "mean", "median"]
AGGREGATIONS: tuple[EntityAggregation, ...] = ("max", "mean", "median")
DEFAULT_AGGREGATION: EntityAggregation = "mean"
# Key under which the training pipeline records its chosen method (in the checkpoint's ensemble metadata and
# in the Triton repository manifest).
ENTITY_AGGREGATION_KEY = "entity_aggregation"


def check_aggregation(method: str) -> EntityAggregation:
    if method not in AGGREGATIONS:
        raise ValueError(f"entity aggregation: {method!r} is not one of {', '.join(AGGREGATIONS)}")
    return method  # type: ignore[return-value]


def aggregate_entity_scores(entity_ids: np.ndarray | pd.Series, scores: np.ndarray | pd.Series,
                            method: str = DEFAULT_AGGREGATION) -> pd.DataFrame:
    """One row per entity, in order of first appearance: entity_id, score, n_windows.

    NaN window scores (a window that could not be scored) are ignored; an entity with no scored window keeps NaN.
    """
    how = check_aggregation(method)
    frame = pd.DataFrame({"entity_id": np.asarray(entity_ids), "score": np.asarray(scores, dtype=np.float64)})
    grouped = frame.groupby("entity_id", sort=False)["score"]
    out = grouped.agg(how).rename("score").to_frame()
    out["n_windows"] = grouped.size()
    return out.reset_index()


def aggregate_entity_labels(entity_ids: np.ndarray | pd.Series, labels: np.ndarray | pd.Series) -> pd.Series:
    """An entity is positive when any of its windows is: the label a chargeback or a bot list gives per entity."""
    frame = pd.DataFrame({"entity_id": np.asarray(entity_ids), "label": np.asarray(labels).astype(np.int64)})
    return frame.groupby("entity_id", sort=False)["label"].max()
