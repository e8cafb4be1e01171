"""Study storages: parse, check, open, and keep passwords out of everything shown.

Three kinds, chosen by the ``--storage`` URL:

- ``sqlite:///PATH`` (the default, ``studies/vrt_spike.db``): one worker process at a time.
- ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB``: any number of workers on any number of
  machines. Prefer no password in the URL: libpq reads ``~/.pgpass`` or ``PGPASSWORD``.
- ``journal:PATH``: Optuna's journal file storage, for several workers on one machine (or on a
  shared file system that supports the lock); it has no heartbeats, so a dead worker's trial is
  recovered by a worker on the same host (its process is gone), not by a timeout.

SQL storages record trial heartbeats (see :func:`open_storage`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.pool import NullPool

from model.errors import VRTSpikeError
from search.worker import RetryLostTrial

__all__ = [
    "StorageError",
    "ARTIFACT_DIR_ENV",
    "CONNECT_TIMEOUT_S",
    "default_storage_url",
    "redact_url",
    "storage_backend",
    "sqlite_path",
    "journal_path",
    "artifact_dir",
    "check_storage",
    "open_storage",
]

logger = logging.getLogger(__name__)

STUDIES_DIR = Path("studies")
ARTIFACT_DIR_ENV = "VRTSPIKE_ARTIFACT_DIR"
CONNECT_TIMEOUT_S = 10
"""Seconds to wait for a database server before reporting it unreachable."""
JOURNAL_PREFIX = "journal:"
URL_FORMS = "expected postgresql://USER@HOST:PORT/DB, sqlite:///PATH or journal:PATH"


class StorageError(VRTSpikeError):
    """A storage that cannot be parsed, reached or opened."""


def default_storage_url() -> str:
    """SQLite file under ``studies/`` (relative to the working directory)."""
    return f"sqlite:///{STUDIES_DIR / 'vrt_spike.db'}"


def journal_path(url: str) -> Path | None:
    """The log file of a ``journal:PATH`` URL (``journal:///abs`` also works), else None."""
    if not url.startswith(JOURNAL_PREFIX):
        return None
    rest = url[len(JOURNAL_PREFIX) :]
    if rest.startswith("///"):
        rest = rest[2:]
    if not rest or rest.endswith("/"):
        raise StorageError(f"journal storage {url!r}: give a file, e.g. journal:studies/vrt.log")
    return Path(rest)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe for logs, errors and attributes)."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return "<malformed storage URL>"


def storage_backend(url: str) -> str:
    """``sqlite``, ``postgresql``, ``journal``... of a storage URL.

    Raises:
        StorageError: a malformed URL.
    """
    if journal_path(url) is not None:
        return "journal"
    try:
        return sqlalchemy.engine.make_url(url).get_backend_name()
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:
        raise StorageError(f"malformed storage URL: {e} ({URL_FORMS})") from None


def sqlite_path(url: str) -> Path | None:
    """The database file of an ``sqlite:///PATH`` URL, else None.

    Raises:
        StorageError: a malformed URL.
    """
    if storage_backend(url) != "sqlite":
        return None
    database = sqlalchemy.engine.make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def artifact_dir(url: str) -> Path:
    """Artifact store folder: ``$VRTSPIKE_ARTIFACT_DIR`` if set (a folder every worker and the
    dashboard can reach, for studies on several machines), else beside the storage file
    (``<stem>_artifacts``), or ``studies/artifacts`` for servers."""
    shared = os.environ.get(ARTIFACT_DIR_ENV)
    if shared:
        return Path(shared)
    path = sqlite_path(url) or journal_path(url)
    if path is not None:
        return path.with_name(f"{path.stem}_artifacts")
    return STUDIES_DIR / "artifacts"


def _reason(e: BaseException, url: str) -> str:
    """One line from a driver error, with the URL (and so its password) replaced."""
    text = " ".join(str(getattr(e, "orig", None) or e).split())
    text = text.replace(url, redact_url(url))
    try:
        password = sqlalchemy.engine.make_url(url).password
    except (sqlalchemy.exc.ArgumentError, ValueError):
        password = None
    if password:
        text = text.replace(str(password), "***")
    return text[:300]


def _engine_kwargs(url: str) -> dict[str, Any]:
    if storage_backend(url) == "sqlite":
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}


def check_storage(url: str) -> None:
    """Fail fast on a storage that cannot be used, writing nothing.

    Parses the URL and, for a server, connects once (``SELECT 1``) without creating tables, so a
    wrong host, port, database name or password is reported before any work is done.

    Raises:
        StorageError: malformed URL, unsupported backend, unreachable server, rejected login.
    """
    shown = redact_url(url)
    backend = storage_backend(url)
    if backend == "journal":
        path = journal_path(url)
        if path is not None and path.is_dir():
            raise StorageError(f"journal storage {url}: {path} is a folder, not a log file")
        return
    if backend == "sqlite":
        if sqlite_path(url) is None:
            raise StorageError(f"storage {shown}: an in-memory SQLite study would be lost at exit")
        return
    if backend != "postgresql":
        raise StorageError(
            f"storage {shown}: backend {backend!r} is not supported (SQLite for one worker, "
            "PostgreSQL for several machines, journal:PATH for several workers on one)"
        )
    try:
        engine = sqlalchemy.create_engine(url, poolclass=NullPool, **_engine_kwargs(url))
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
        finally:
            engine.dispose()
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
        raise StorageError(f"cannot open storage {shown}: {_reason(e, url)}") from None


def open_storage(
    url: str, *, create: bool, heartbeat: int = 0, max_retry: int = 2
) -> optuna.storages.BaseStorage:
    """Open a storage (SQL tables created if missing).

    Args:
        url: See the module docstring.
        create: Allow creating a new SQLite or journal file (``False`` for read-only commands,
            so they never leave an empty storage behind).
        heartbeat: SQL storages: seconds between trial heartbeats (0: none). A running trial
            whose heartbeat is ``3 * heartbeat`` seconds old is failed by the next worker that
            starts a trial and re-queued (at most ``max_retry`` times per configuration).
        max_retry: See ``heartbeat``.

    Raises:
        StorageError: malformed URL, missing file (``create=False``), unreachable server or
            rejected credentials (the password is never shown).
    """
    shown = redact_url(url)
    path = sqlite_path(url) or journal_path(url)
    if path is not None:
        if not create and not path.is_file():
            raise StorageError(f"no study storage at {path} (run a study first, or pass --storage)")
        path.parent.mkdir(parents=True, exist_ok=True)
    if storage_backend(url) == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    beat: dict[str, Any] = {}
    if heartbeat > 0:
        beat = {
            "heartbeat_interval": heartbeat,
            "grace_period": 3 * heartbeat,
            "heartbeat_stale_trial_callback": RetryLostTrial(max_retry),
        }
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url), **beat)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
        raise StorageError(f"cannot open storage {shown}: {_reason(e, url)}") from None
