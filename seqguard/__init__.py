"""seqguard: e-commerce behaviour-sequence anomaly detection, from events to an SLO-checked endpoint."""

__version__ = "0.1.0"
