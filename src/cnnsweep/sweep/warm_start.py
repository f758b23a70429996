"""Warm starts: a search that begins from points already known to be good.

- ``hydra.sweeper.enqueue``: parameter sets (``{lr: 0.06, model.width: 24, ...}``, the search
  space's names) that become the study's first trials, in order;
- ``hydra.sweeper.warm_start``: ``{study_name: ..., storage: ...}``, another study over the same
  space whose completed trials are copied in, so the sampler starts from what it learnt.

Both happen once, when the study is created: of several workers started together exactly one
creates the study (the storage refuses a second study of that name), and only that one adds
the points; running the command again continues the study without adding them twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cnnsweep.sweep.storage import hide_password, open_storage, storage_url

log = logging.getLogger(__name__)


def plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def create_with_warm_start(
    study_name: str | None,
    storage: Any,
    directions: Sequence[str],
    enqueue: Sequence[dict[str, Any]] = (),
    warm_start: dict[str, Any] | None = None,
) -> str | None:
    """Create the study and add the known points; returns its name, or None when it already
    existed (another worker made it, or this is a rerun: its points are in already)."""
    import optuna

    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, directions=list(directions)
        )
    except optuna.exceptions.DuplicatedStudyError:
        return None
    for params in enqueue:
        study.enqueue_trial(dict(params), skip_if_exists=True)
    copied = copy_completed(study, warm_start) if warm_start else 0
    if enqueue or copied:
        log.info("study %r starts from %d enqueued point(s) and %d trial(s) of %s",
                 study.study_name, len(enqueue), copied,
                 _described(warm_start))  # fmt: skip
    return study.study_name


def copy_completed(study: Any, source: dict[str, Any]) -> int:
    """Copy the completed trials of the study ``source`` names into ``study``."""
    import optuna

    name, url = source.get("study_name"), source.get("storage")
    if not name or not url:
        raise ValueError("hydra.sweeper.warm_start needs study_name and storage")
    other = optuna.load_study(study_name=name, storage=open_storage(storage_url(url)))
    done = other.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    study.add_trials(done)
    return len(done)


def _described(source: dict[str, Any] | None) -> str:
    if not source:
        return "no other study"
    return f"study {source.get('study_name')!r} in {hide_password(str(source.get('storage')))}"
