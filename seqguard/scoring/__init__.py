"""Scoring without torch: rules, the unsupervised detector, the ensemble stacker and the one `Scorer`.

The service imports this package, so nothing here may import torch (a test holds it to that).
"""

from seqguard.scoring.scorer import Decision, Scorer, ScorerError

__all__ = ["Decision", "Scorer", "ScorerError"]
