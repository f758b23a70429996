"""Hydra-configured PyTorch image classifiers: train, sweep, aggregate, predict."""

__version__ = "0.1.0"
