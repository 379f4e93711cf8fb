"""The trained components that more than one training path needs: their folder names and the tabular fit.

The main run (`pipeline`), the studies and the out-of-fold scorer all fit the same components; the names and the
fit live here so that none of them imports another (a cycle would make the order of imports matter).
"""

from __future__ import annotations

import numpy as np

from seqguard.scoring.tabular import TreeModel
from seqguard.train.config import TrainConfig

BERT = "behaviour_bert"
RNN = "sequence_rnn"


def fit_tabular(x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> TreeModel:
    t = cfg.tabular
    return TreeModel.fit(x, y, t.max_iter, t.max_leaf_nodes, t.learning_rate, t.negative_share, cfg.seed)
