"""Study storages: URLs made absolute, opened (RDB or journal file), checked (passwords,
unknown forms), heartbeats and stale trials, tables created with retries."""

from __future__ import annotations

import fcntl
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

SQLITE_TIMEOUT_S = 60
JOURNAL = "journal:///"  # Optuna journal file: journal:///rel/x.log, journal:////abs/x.log


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


@contextmanager
def one_ask_at_a_time(url: str | None) -> Iterator[None]:
    """Around ``study.ask()``: for a sqlite study, an exclusive lock on ``<db>.ask.lock``.
    Optuna hands out a waiting (enqueued or retried) trial by reading its state and then setting
    it RUNNING; sqlite does not lock the read, so two workers asking at the same moment could
    both take the same trial. PostgreSQL and MySQL lock the row (SELECT ... FOR UPDATE)."""
    with sqlite_lock(url, ".ask.lock"):
        yield


@contextmanager
def sqlite_lock(url: str | None, suffix: str) -> Iterator[None]:
    """An exclusive lock on the file ``<db><suffix>`` beside a sqlite database (``url``, made
    absolute); nothing for other URLs, whose servers lock for themselves."""
    if not url or not str(url).startswith("sqlite:///"):
        yield
        return
    path = str(url)[len("sqlite:///") :].partition("?")[0]
    with open(f"{path}{suffix}", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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


def create_tables(storage: str | None, attempts: int = 5) -> None:
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
