"""Training: labelled windows and the honest split, BERT pretraining + fine-tuning, the RNN, the optional text LM,
the detector / rules / ensemble, the checkpoint folder, and evaluation.

Modules import torch lazily (inside functions), so importing this package stays cheap.
"""
