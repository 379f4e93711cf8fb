"""The evaluation suite (`make evaluate`): every evaluation set, every score, one report."""
