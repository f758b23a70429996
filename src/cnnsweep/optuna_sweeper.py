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
2. A job tells its trial how it ended (COMPLETE, PRUNED, FAIL) itself, before its heartbeat stops:
   the plugin tells a batch's trials only when the whole batch has ended, and meanwhile another
   worker would see a finished job's silent trial as stale, fail it and run it again. The
   study's ``tell`` in the plugin's loop skips trials that are already finished.

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
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

SQLITE_TIMEOUT_S = 60
JOURNAL = "journal:///"  # Optuna journal file: journal:///rel/x.log, journal:////abs/x.log
SAMPLER_WHITELIST = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")


def storage_url(storage: str | None, cwd: str | Path | None = None) -> str | None:
    """``sqlite:///studies/x.db`` -> ``sqlite:////abs/studies/x.db?timeout=60`` (folder created).

    A journal file, ``journal:///studies/x.log``, is made absolute the same way. Other URLs
    (``postgresql://...``, ``mysql://...``) and None (in memory) are returned as given.
    """
    if storage and str(storage).startswith(JOURNAL):
        file = Path(cwd or Path.cwd()) / str(storage)[len(JOURNAL) :]  # an absolute path wins
        file.parent.mkdir(parents=True, exist_ok=True)
        return JOURNAL + str(file.resolve())
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


def open_storage(url: str | None) -> Any:
    """The Optuna storage a URL names: a journal file (``journal:////abs/x.log``, for clusters
    without a database server; many processes append to it under a lock that works on NFS) or
    an RDB (sqlite, PostgreSQL, MySQL)."""
    import optuna

    if url and url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len(JOURNAL) :]))
    return optuna.storages.RDBStorage(url)


PASSWORD_KEYS = ("password", "passwd")  # query keys the MySQL and PostgreSQL drivers read


def _parse(url: str) -> Any:
    """SQLAlchemy's own reading of a URL (what the storage would connect with), or None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(str(url))
    except (ArgumentError, ValueError):
        return None


def has_password(url: str | None) -> bool:
    """True when a storage URL carries a password: in its user part as SQLAlchemy reads it
    (``user:pa?ss@host``), or as a ``password``/``passwd`` query key."""
    if not url or str(url).startswith(JOURNAL):
        return False
    parsed = _parse(url)
    if parsed is None:
        return False
    keys = {k.lower() for k in parsed.query}
    return parsed.password is not None or bool(keys & set(PASSWORD_KEYS))


def hide_password(url: str) -> str:
    """The URL with any password replaced by ``***`` (for errors, logs and notes)."""
    if not has_password(url):
        return str(url)  # as given: SQLAlchemy would re-encode a path's ":" and "@"
    parsed = _parse(url)
    hidden = {k: "***" for k in parsed.query if k.lower() in PASSWORD_KEYS}
    shown = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")  # the query's stars, as the user part shows them


STORAGE_FORMS = (
    "sqlite:///studies/x.db, postgresql://user@host/db, mysql://user@host/db or "
    "journal:///studies/x.log"
)


def storage_error(url: str | None) -> str | None:
    """Why ``url`` is no storage Optuna can open (None: it may be), without connecting."""
    if not url or str(url).startswith(JOURNAL):
        return None
    parsed = _parse(url)
    problem = "is not a URL"
    if parsed is not None:
        try:
            parsed.get_dialect()
            return None
        except Exception as e:  # NoSuchModuleError: an unknown dialect or a missing driver
            problem = f"cannot be opened ({type(e).__name__}: {e})".splitlines()[0]
    return (
        f"hydra.sweeper.storage={hide_password(str(url))} {problem}: use {STORAGE_FORMS} "
        "(or null: a study in memory)"
    )


PASSWORD_HELP = (
    "the storage URL carries a password, which every job would write into its overrides, rows "
    "and logs: remove it from the URL (postgresql://user@host/db) and give it to libpq in "
    "~/.pgpass (host:port:db:user:password, chmod 600) or in PGPASSWORD"
)


def direction_error(objective: str | None, direction: Any) -> str | None:
    """Why ``direction`` contradicts ``objective`` (a loss maximized, an accuracy minimized)."""
    if not isinstance(objective, str) or not isinstance(direction, str):
        return None  # not set, or several objectives: nothing to compare
    want = "minimize" if objective.endswith("_loss") else None
    if re.search(r"(^|_)acc(uracy)?$", objective):
        want = "maximize"
    if want is None or direction.lower() == want:
        return None
    kind = "a loss (lower is better)" if want == "minimize" else "an accuracy (higher is better)"
    return (
        f"objective={objective} is {kind} but hydra.sweeper.direction={direction}: "
        f"pass hydra.sweeper.direction={want}"
    )


def refuse(message: str) -> None:
    """One ``error:`` line and exit code 2, as train.py does for a bad knob (no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def worker_id() -> str:
    """``<host>-<pid>``: the suffix that gives each worker of a study its own sweep folder, so
    two started in the same second do not share one (nor number their jobs alike in it)."""
    return f"{socket.gethostname().split('.')[0]}-{os.getpid()}"


# ${cnnsweep.worker:} in the presets' hydra.sweep.dir; cached, so a job resolves its sweeper's
# value (Hydra copies the resolver cache into every job's config), not its own pid
OmegaConf.register_resolver("cnnsweep.worker", worker_id, use_cache=True, replace=True)


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
        "++optuna.heartbeat_interval=${hydra:sweeper.heartbeat_interval}",
    )


def is_rdb(url: str | None) -> bool:
    """A SQLAlchemy URL (sqlite, PostgreSQL, MySQL): the storages with heartbeats."""
    dialect = str(url or "").split(":", 1)[0].split("+", 1)[0]
    return dialect in ("sqlite", "postgresql", "mysql")


def heartbeat_storage(url: str, interval: int | None, grace: int | None, retries: int | None):
    """The study's RDB storage with heartbeats: a trial whose job stopped beating for
    ``grace`` seconds (its worker was killed) is marked FAIL by the next worker, and a retry
    with the same params is queued (at most ``retries`` per trial) that inherits its
    intermediate values; the retry's job continues from the dead trial's checkpoint."""
    import optuna

    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(
            retries, inherit_intermediate_values=True
        )
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=interval, grace_period=grace,
            heartbeat_stale_trial_callback=retry,
        )  # fmt: skip


def fail_stale_trials(storage: Any, study_name: str | None) -> None:
    """Mark the trials of dead workers FAIL (and queue their retries), if the study exists."""
    import optuna

    if not study_name or not isinstance(storage, optuna.storages.RDBStorage):
        return  # heartbeats need an RDB storage (sqlite, PostgreSQL, MySQL)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # a new study: nothing can be stale
        return
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9, and unchanged
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _create_tables(storage: str | None, attempts: int = 5) -> None:
    """Create the RDB storage's tables; a second worker doing the same at once may collide."""
    if not storage or not is_rdb(storage):
        return  # in memory, or a journal file (created on the first write)
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


def _tell_unless_finished(tell: Any) -> Any:
    """``study.tell`` for the plugin's loop: a trial its job already told (COMPLETE, PRUNED,
    FAIL) is left as it is, without Optuna's info line for every such trial."""
    import optuna

    @functools.wraps(tell)
    def tell_once(*args: Any, **kwargs: Any) -> Any:
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
        try:
            return tell(*args, skip_if_finished=True, **kwargs)
        finally:
            optuna.logging.set_verbosity(verbosity)

    tell_once.skips_finished = True  # type: ignore[attr-defined]
    return tell_once


class PruningOptunaSweeper(OptunaSweeper):
    """``hydra/sweeper=optuna`` in this project: the plugin's sweeper plus trial identity,
    PRUNED trials and a study that several workers can share (see the module docstring)."""

    def __init__(
        self,
        sampler: DictConfig,
        storage: str | None,
        pruner: Any = None,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        max_retry: int | None = None,
        objective: str | None = None,
        **kwargs: Any,
    ) -> None:
        # refused before the storage is opened, and before any job, row or log is written
        if has_password(storage):
            refuse(PASSWORD_HELP)
        if storage_error(storage):
            refuse(storage_error(storage))
        error = direction_error(objective, kwargs.get("direction"))
        if error:  # a study maximizing a loss would prune and rank backwards
            refuse(error)
        self.storage_url = storage_url(storage)
        super().__init__(sampler=sampler, storage=self.storage_url, **kwargs)
        if str(self.storage_url).startswith(JOURNAL):
            self.sweeper.storage = open_storage(self.storage_url)  # Optuna takes RDB URLs only
        self.sampler_config = sampler
        self.pruner = pruner  # reaches the jobs through the `${hydra:sweeper.pruner}` override
        # the tables first, with retries: workers started together collide creating them, and
        # the heartbeat storage below opens (and would create) them at once
        _create_tables(self.storage_url)
        if heartbeat_interval and is_rdb(self.storage_url):
            # Optuna expects heartbeats from Study.optimize; here each job beats for its trial
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed", UserWarning)
            self.sweeper.storage = heartbeat_storage(
                self.storage_url, heartbeat_interval, grace_period, max_retry
            )
        self._reseeded = False
        self._plugin_configure_trials = self.sweeper._configure_trials
        self.sweeper._configure_trials = self._configure_trials  # the plugin's hook, extended

    def sweep(self, arguments: list[str]) -> None:
        self._record_sweep()
        fail_stale_trials(self.sweeper.storage, self.sweeper.study_name)  # before the 1st ask
        return super().sweep(arguments)

    def _record_sweep(self) -> None:
        """``<sweep dir>/multirun.yaml``, as Hydra's basic sweeper writes it (``make
        tensorboard`` and the aggregate find sweeps by it). Never replaced: a worker that
        shares the folder (an explicit ``hydra.sweep.dir``) keeps the first one's."""
        config = self.sweeper.config
        folder = Path(str(config.hydra.sweep.dir))
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".multirun.yaml.{worker_id()}"
        tmp.write_text(OmegaConf.to_yaml(config))
        try:
            os.link(tmp, folder / "multirun.yaml")  # atomic, and fails if one exists
        except FileExistsError:
            log.info("%s has a multirun.yaml already: kept", folder)
        finally:
            tmp.unlink()

    def _configure_trials(self, trials: list[Any], *args: Any) -> Sequence[Sequence[str]]:
        study = trials[0].study
        fail_stale_trials(study._storage, study.study_name)  # a retry joins the next batch
        if not getattr(study.tell, "skips_finished", False):
            study.tell = _tell_unless_finished(study.tell)
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
