"""Study storages: a storage URL parsed once into a value, checked, opened; passwords kept out.

Three kinds, chosen by the ``--storage`` URL:

- ``sqlite:///PATH`` (the default, ``studies/vrt_spike.db``): one worker process at a time.
- ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB``: any number of workers on any number of
  machines. Prefer no password in the URL: libpq reads ``~/.pgpass`` or ``PGPASSWORD``.
- ``journal:PATH`` (relative or absolute) or ``journal:///ABSOLUTE/PATH``: Optuna's journal file
  storage, for several workers on one machine; it has no heartbeats, so a dead worker's trial is
  recovered by a worker on the same host (its process is gone), not by a timeout.
  ``journal://NAME`` is refused: whether NAME is a host or a file would be a guess.

:meth:`StorageURL.parse` is the only parser: every other module takes the value (its ``path``,
its ``redacted`` form, its ``artifact_dir``) and never reads the string again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.pool import NullPool

from model.errors import VRTSpikeError

__all__ = [
    "ARTIFACT_DIR_ENV",
    "CONNECT_TIMEOUT_S",
    "StorageError",
    "StorageURL",
    "StudyError",
    "load_existing_study",
]

logger = logging.getLogger(__name__)

STUDIES_DIR = Path("studies")
ARTIFACT_DIR_ENV = "VRTSPIKE_ARTIFACT_DIR"
CONNECT_TIMEOUT_S = 10
"""Seconds to wait for a database server before reporting it unreachable."""
_JOURNAL = "journal:"
_URL_FORMS = "expected postgresql://USER@HOST:PORT/DB, sqlite:///PATH or journal:PATH"
_SUPPORTED = (
    "SQLite for one worker, PostgreSQL for several machines, journal:PATH for several workers "
    "on one"
)

Backend = Literal["sqlite", "postgresql", "journal"]
LostTrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


class StorageError(VRTSpikeError):
    """A storage that cannot be parsed, reached or opened."""


class StudyError(VRTSpikeError):
    """A study that cannot be created, loaded or continued as asked."""


@dataclass(frozen=True)
class StorageURL:
    """A parsed ``--storage`` URL (see the module docstring).

    Attributes:
        text: The URL as given (it may hold a password: show :attr:`redacted` instead).
        backend: ``sqlite``, ``postgresql`` or ``journal``.
        path: The database or log file (SQLite and journal), None for a server.
    """

    text: str
    backend: Backend
    path: Path | None

    @classmethod
    def default(cls) -> StorageURL:
        """SQLite file ``studies/vrt_spike.db`` (relative to the working directory)."""
        return cls.parse(f"sqlite:///{STUDIES_DIR / 'vrt_spike.db'}")

    @classmethod
    def parse(cls, text: str | None) -> StorageURL:
        """Parse a URL (None: :meth:`default`); nothing is opened or written.

        Raises:
            StorageError: malformed URL, unsupported backend, in-memory SQLite, a journal URL
                without a file.
        """
        if text is None:
            return cls.default()
        if text.startswith(_JOURNAL):
            return cls(text, "journal", _journal_file(text))
        try:
            url = sqlalchemy.engine.make_url(text)
            backend = url.get_backend_name()
        except (sqlalchemy.exc.ArgumentError, ValueError) as e:
            raise StorageError(f"malformed storage URL: {e} ({_URL_FORMS})") from None
        shown = url.render_as_string(hide_password=True)
        if backend == "postgresql":
            return cls(text, "postgresql", None)
        if backend != "sqlite":
            raise StorageError(
                f"storage {shown}: backend {backend!r} is not supported ({_SUPPORTED})"
            )
        if not url.database or url.database == ":memory:":
            raise StorageError(f"storage {shown}: an in-memory SQLite study would be lost at exit")
        return cls(text, "sqlite", Path(url.database))

    @property
    def redacted(self) -> str:
        """The URL with any password replaced by ``***`` (safe for logs, errors, attributes)."""
        if self.backend == "journal":
            return self.text
        return sqlalchemy.engine.make_url(self.text).render_as_string(hide_password=True)

    @property
    def lock_name(self) -> str:
        """What identifies this storage on a host: the resolved file, or the redacted URL."""
        return str(self.path.resolve()) if self.path is not None else self.redacted

    def artifact_dir(self) -> Path:
        """Artifact folder: ``$VRTSPIKE_ARTIFACT_DIR`` if set (one folder every worker and the
        dashboard reach, for studies on several machines), else beside the storage file
        (``<stem>_artifacts``), or ``studies/artifacts`` for a server."""
        shared = os.environ.get(ARTIFACT_DIR_ENV)
        if shared:
            return Path(shared)
        if self.path is not None:
            return self.path.with_name(f"{self.path.stem}_artifacts")
        return STUDIES_DIR / "artifacts"

    def artifact_store(self) -> optuna.artifacts.FileSystemArtifactStore:
        """The study's artifact store (its folder is created if missing)."""
        folder = self.artifact_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return optuna.artifacts.FileSystemArtifactStore(str(folder))

    def check(self) -> None:
        """Fail fast on a storage that cannot be used, writing nothing.

        A server gets one connection (``SELECT 1``, no tables created), so a wrong host, port,
        database or password is reported before any work is done.

        Raises:
            StorageError: a journal path that is a folder, an unreachable server, a rejected
                login (the password is never shown).
        """
        if self.backend == "journal" and self.path is not None and self.path.is_dir():
            raise StorageError(f"journal storage {self.text}: {self.path} is a folder, not a log")
        if self.backend != "postgresql":
            return
        try:
            engine = sqlalchemy.create_engine(self.text, poolclass=NullPool, **self.engine_kwargs())
            try:
                with engine.connect() as conn:
                    conn.execute(sqlalchemy.text("SELECT 1"))
            finally:
                engine.dispose()
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
            raise StorageError(f"cannot open storage {self.redacted}: {self.reason(e)}") from None

    def open(
        self,
        *,
        create: bool,
        heartbeat: int = 0,
        on_lost: LostTrialCallback | None = None,
    ) -> optuna.storages.BaseStorage:
        """Open the storage (SQL tables created if missing).

        Args:
            create: Allow creating a new SQLite or journal file (False for read-only commands,
                so they never leave an empty storage behind).
            heartbeat: SQL storages: seconds between trial heartbeats (0: none). A running trial
                whose heartbeat is ``3 * heartbeat`` seconds old is failed by the next worker
                that starts a trial, and ``on_lost`` is called with it.
            on_lost: What to do with a trial failed for a stale heartbeat (e.g. re-queue it).

        Raises:
            StorageError: a missing file (``create=False``), an unreachable server or rejected
                credentials (the password is never shown).
        """
        if self.path is not None:
            if not create and not self.path.is_file():
                raise StorageError(
                    f"no study storage at {self.path} (run a study first, or pass --storage)"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.backend == "journal":
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(str(self.path)))
        beat: dict[str, Any] = {}
        if heartbeat > 0:
            beat = {
                "heartbeat_interval": heartbeat,
                "grace_period": 3 * heartbeat,
                "heartbeat_stale_trial_callback": on_lost,
            }
        try:
            return optuna.storages.RDBStorage(self.text, engine_kwargs=self.engine_kwargs(), **beat)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
            raise StorageError(f"cannot open storage {self.redacted}: {self.reason(e)}") from None

    def engine_kwargs(self) -> dict[str, Any]:
        """SQLAlchemy engine options: a busy timeout for SQLite, a connect timeout for servers."""
        if self.backend == "sqlite":
            return {"connect_args": {"timeout": 30}}
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}

    def reason(self, e: BaseException) -> str:
        """One line from a driver error, with the URL and its password replaced."""
        text = " ".join(str(getattr(e, "orig", None) or e).split())
        text = text.replace(self.text, self.redacted)
        url = None if self.backend == "journal" else sqlalchemy.engine.make_url(self.text)
        password = url.password if url is not None else None
        if password:
            text = text.replace(str(password), "***")
        return text[:300]


def _journal_file(text: str) -> Path:
    """The log file of ``journal:PATH`` or ``journal:///ABSOLUTE/PATH``."""
    rest = text[len(_JOURNAL) :]
    if rest.startswith("///"):
        rest = rest[2:]  # keep one slash: an absolute path
    elif rest.startswith("//"):
        raise StorageError(
            f"journal storage {text!r}: write journal:PATH (relative or absolute) or "
            "journal:///ABSOLUTE/PATH; journal://NAME is ambiguous"
        )
    if not rest or rest.endswith("/"):
        raise StorageError(f"journal storage {text!r}: give a file, e.g. journal:studies/vrt.log")
    return Path(rest)


def load_existing_study(storage: StorageURL, study_name: str) -> optuna.Study:
    """Load a study for reading (nothing is created).

    Raises:
        StorageError: no storage there; StudyError: no such study (the message lists the
            studies there).
    """
    opened = storage.open(create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage=opened)]
    if study_name not in names:
        listing = ", ".join(names) if names else "none"
        raise StudyError(
            f"no study {study_name!r} in {storage.redacted} (studies there: {listing})"
        )
    return optuna.load_study(study_name=study_name, storage=opened)
