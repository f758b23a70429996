"""Conditional search spaces: parameters that exist only for some values of another.

The Optuna sweeper's ``hydra.sweeper.custom_search_space`` names a function ``(config, trial)``
that it calls for every trial after the ``params`` are drawn; whatever the function suggests is
passed to the job as overrides, like the ``params``. A model without a ``width`` (``network``,
``lenet``, ``bn_cnn``) then gets no ``model.width`` at all, where a flat space would draw one
for every trial and TPE would learn from a knob that did nothing::

    python train.py -m hydra/sweeper=optuna hydra/launcher=joblib hydra.sweeper.n_jobs=2 \\
        'model=choice(network,bn_cnn,cnn,resnet)' 'lr=tag(log,interval(1e-3,1e-1))' \\
        hydra.sweeper.custom_search_space=cnnsweep.sweep.spaces.width_where_the_model_has_one
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

MODEL_CONFIGS = Path(__file__).resolve().parents[3] / "conf" / "model"
WIDTHS = (16, 24, 32)  # channels of the first stage; write your own function for others


def has_width(model: str) -> bool:
    """Whether ``conf/model/<model>.yaml`` has a ``width`` knob."""
    path = MODEL_CONFIGS / f"{model}.yaml"
    return path.is_file() and "width" in OmegaConf.load(path)


def width_where_the_model_has_one(config: Any, trial: Any) -> None:
    """``model.width`` from ``WIDTHS`` for a trial whose ``model`` has one; nothing otherwise."""
    model = trial.params.get("model") or trial.user_attrs.get("model")  # swept, or fixed
    model = model or OmegaConf.select(config, "model.name")
    if model and has_width(str(model)):
        trial.suggest_categorical("model.width", WIDTHS)
