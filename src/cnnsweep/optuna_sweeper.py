"""Hydra's Optuna sweeper, extended so that each job knows its trial and a trial can be pruned.

The plugin (``hydra_plugins.hydra_optuna_sweeper``) asks the study for a batch of trials, turns
their params into overrides (``_configure_trials``), launches the jobs and tells every trial
COMPLETE with the job's return value (FAIL on an exception). Its jobs never see their trial, so
nothing can be pruned. This subclass keeps that loop as it is and changes two things through the
one hook the plugin offers between ``ask`` and ``launch``, ``_configure_trials``:

1. Every job gets its trial identity as overrides: ``++optuna.study_name``, ``++optuna.storage``,
   ``++optuna.trial`` (the trial number) and ``++optuna.pruner=${hydra:sweeper.pruner}``. The job
   (``cnnsweep.pruning.OptunaTrial``) reports its validation accuracy per epoch to that trial and,
   when the pruner says so, stops and tells the study the trial is PRUNED itself.
2. The study's ``tell`` skips trials that are already finished (``skip_if_finished=True``), so the
   loop's COMPLETE for a returned job leaves a PRUNED trial PRUNED (unpatched, Optuna raises).

And three things a shared, resumable study needs:

- A relative sqlite path is made absolute (jobs may run elsewhere: submitit, another cwd), its
  folder is created, and sqlite waits for a lock (``?timeout=60``) instead of failing when two
  workers write at the same moment.
- The storage's tables are created with retries: two workers starting together both try.
- A seeded sampler draws the same proposals in every process, so a resumed study or a second
  worker would replay the first run's trials. The sampler is re-seeded with ``seed + n`` where
  ``n`` is the number of the first trial this process gets: a fresh single-worker search is
  exactly the plugin's, the others draw their own proposals.

Hydra only instantiates registered plugin classes: ``hydra_plugins/cnnsweep_optuna_sweeper``
(under ``src/``) exposes this one to Hydra's plugin scan.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig

log = logging.getLogger(__name__)

SQLITE_TIMEOUT_S = 60
SAMPLER_WHITELIST = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")


def storage_url(storage: str | None, cwd: str | Path | None = None) -> str | None:
    """``sqlite:///studies/x.db`` -> ``sqlite:////abs/studies/x.db?timeout=60`` (folder created).

    Other URLs (``postgresql://...``, ``mysql://...``) and None (in memory) are returned as given.
    """
    if not storage or not str(storage).startswith("sqlite:///"):
        return storage
    path, _, query = str(storage)[len("sqlite:///") :].partition("?")
    if path and path != ":memory:":
        file = Path(path) if Path(path).is_absolute() else Path(cwd or Path.cwd()) / path
        file.parent.mkdir(parents=True, exist_ok=True)
        path = str(file.resolve())
    params = dict(parse_qsl(query))
    params.setdefault("timeout", str(SQLITE_TIMEOUT_S))
    return f"sqlite:///{path}?{urlencode(params)}"


def _quote(value: Any) -> str:
    """A value as a quoted Hydra override string."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def trial_overrides(study_name: str, storage: str | None, number: int) -> tuple[str, ...]:
    """The overrides that tell a job which trial of which study it is."""
    return (
        f"++optuna.study_name={_quote(study_name)}",
        f"++optuna.storage={_quote(storage) if storage else 'null'}",
        f"++optuna.trial={number}",
        "++optuna.pruner=${hydra:sweeper.pruner}",
    )


def _create_tables(storage: str | None, attempts: int = 5) -> None:
    """Create the RDB storage's tables; a second worker doing the same at once may collide."""
    if not storage:
        return
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(attempts):
        try:
            optuna.storages.RDBStorage(storage).remove_session()
            return
        except SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + attempt)


class PruningOptunaSweeper(OptunaSweeper):
    """``hydra/sweeper=optuna`` in this project: the plugin's sweeper plus trial identity,
    PRUNED trials and a study that several workers can share (see the module docstring)."""

    def __init__(
        self, sampler: DictConfig, storage: str | None, pruner: Any = None, **kwargs: Any
    ) -> None:
        self.storage_url = storage_url(storage)
        super().__init__(sampler=sampler, storage=self.storage_url, **kwargs)
        self.sampler_config = sampler
        self.pruner = pruner  # reaches the jobs through the `${hydra:sweeper.pruner}` override
        self._reseeded = False
        self._plugin_configure_trials = self.sweeper._configure_trials
        self.sweeper._configure_trials = self._configure_trials  # the plugin's hook, extended

    def sweep(self, arguments: list[str]) -> None:
        _create_tables(self.storage_url)
        return super().sweep(arguments)

    def _configure_trials(self, trials: list[Any], *args: Any) -> Sequence[Sequence[str]]:
        study = trials[0].study
        if not isinstance(study.tell, functools.partial):
            study.tell = functools.partial(study.tell, skip_if_finished=True)
        self._reseed(trials[0])
        overrides = self._plugin_configure_trials(trials, *args)
        return [
            (*job, *trial_overrides(study.study_name, self.storage_url, trial.number))
            for job, trial in zip(overrides, trials, strict=True)
        ]

    def _reseed(self, first: Any) -> None:
        """Once per process, before the first params are drawn: seed -> seed + trial number."""
        if self._reseeded:
            return
        self._reseeded = True
        import optuna

        seed = self.sampler_config.get("seed")
        if seed is None or first.number == 0:
            return  # unseeded (proposals differ anyway), or a fresh study
        if isinstance(self.sweeper.sampler, optuna.samplers.GridSampler):
            return  # the grid sampler skips visited points by itself
        sampler = instantiate(
            self.sampler_config, seed=seed + first.number, _execution_whitelist_=SAMPLER_WHITELIST
        )
        self.sweeper.sampler = first.study.sampler = sampler
        log.info("Study has %d earlier trials: sampler seed %d", first.number, seed + first.number)
