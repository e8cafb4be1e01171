"""Locks that let several worker processes share one study and one device safely.

- :class:`StorageGate`: one mutex per study storage, across processes and machines. Held while a
  worker creates the storage's tables, claims its study, enqueues the reference trials, fails stale
  trials and creates its next trial, so the tables are created once (concurrent creation of
  Optuna's schema fails on PostgreSQL: duplicate enum type), the reference configs are enqueued
  exactly once, trial numbers never collide (Optuna numbers a trial by counting the rows before it,
  which two concurrent inserts can both see the same way) and a study never overshoots its total.
  Each hold is short (milliseconds), so one mutex for all the storage's studies costs nothing.
  PostgreSQL: a session advisory lock (released by the server when the connection drops, so a
  killed worker never leaves it held); SQLite and journal files: a file lock in :func:`lock_dir`
  (so journal workers must share a host).
- :class:`DeviceLock`: a per-host, per-device reader/writer lock. Training and evaluation hold it
  shared; latency measurement holds it exclusively, so a latency is never measured while another
  worker trains on the same GPU (or the same CPU). Writers are not starved: a waiting writer closes
  a turnstile that new readers must pass. Workers also register with it, so CPU workers can split
  the cores between them while training (oversubscribed OpenMP threads spin-wait: a forward
  took 2-4 s with 2 threads against 90 ms with 1 while another process used one of 2 cores).
- :func:`single_worker_lock`: refuses a second worker process on one SQLite file.

All file locks are ``flock`` locks: the kernel drops them when their process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import sqlalchemy
from sqlalchemy.pool import NullPool

from model.errors import VRTSpikeError
from search.measure.device import device_key
from search.study.storage import StorageURL

__all__ = ["LockError", "StorageGate", "DeviceLock", "host_lock", "lock_dir", "single_worker_lock"]

logger = logging.getLogger(__name__)

LOCK_DIR_ENV = "VRTSPIKE_LOCK_DIR"
SEVERAL_WORKERS = (
    "SQLite cannot serve several worker processes (Optuna's enqueued trials race there): use "
    "PostgreSQL for several machines (--storage postgresql://USER@HOST/DB) or Optuna's journal "
    "file storage for one machine (--storage journal:studies/vrt_spike.log); see 'Running on "
    "many GPUs' in the README"
)


class LockError(VRTSpikeError):
    """A lock that cannot be taken as asked."""


def lock_dir() -> Path:
    """Folder for host-local lock files (``$VRTSPIKE_LOCK_DIR`` or ``<tmp>/vrt-spike-locks``)."""
    path = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "vrt-spike-locks")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _host_lock_path(kind: str, what: str) -> Path:
    """A lock file in :func:`lock_dir` named after ``what`` (nothing is written beside studies)."""
    return lock_dir() / f"{kind}-{hashlib.sha256(what.encode()).hexdigest()[:16]}.lock"


def _advisory_key(text: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[IO[str]]:
    with open(path, "a+") as f:
        fcntl.flock(f, mode)
        try:
            yield f
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def host_lock(kind: str, what: str) -> Iterator[None]:
    """Hold an exclusive lock of this host on ``what`` (e.g. a cache file) for the block."""
    with _flock(_host_lock_path(kind, what), fcntl.LOCK_EX):
        yield


class StorageGate:
    """Mutex shared by every worker of a storage's studies (see the module docstring).

    Args:
        storage: The study storage.
    """

    def __init__(self, storage: StorageURL) -> None:
        self._key = _advisory_key("vrt-spike:storage-gate")
        self._engine: sqlalchemy.Engine | None = None
        self._path: Path | None = None
        if storage.backend == "postgresql":
            self._engine = sqlalchemy.create_engine(storage.text, poolclass=NullPool)
        else:
            self._path = _host_lock_path("gate", storage.lock_name)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the gate for the ``with`` block (blocks until it is free)."""
        if self._engine is not None:
            with self._engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
        else:
            assert self._path is not None
            with _flock(self._path, fcntl.LOCK_EX):
                yield

    def close(self) -> None:
        """Release the gate's connection pool."""
        if self._engine is not None:
            self._engine.dispose()


class DeviceLock:
    """Reader/writer lock on one device of this host (training shared, timing exclusive).

    Args:
        device: ``cpu``, ``cuda`` or ``cuda:K``.
        folder: Where the lock files live (default :func:`lock_dir`).
    """

    def __init__(self, device: str, *, folder: Path | None = None) -> None:
        base = folder or lock_dir()
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", device_key(device))
        self.name = key
        self._rw = base / f"device-{key}.lock"
        self._turnstile = base / f"device-{key}.turnstile"

    @contextlib.contextmanager
    def registered(self) -> Iterator[None]:
        """Count this process among the device's workers for the ``with`` block."""
        path = self._rw.with_name(f"{self._rw.stem}.worker-{os.getpid()}")
        with _flock(path, fcntl.LOCK_EX):
            try:
                yield
            finally:
                path.unlink(missing_ok=True)

    def workers(self) -> int:
        """Live registered workers of this device on this host (at least 1)."""
        alive = 0
        for path in self._rw.parent.glob(f"{self._rw.stem}.worker-*"):
            try:
                with open(path, "a+") as f:
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # free: its worker is gone
                    fcntl.flock(f, fcntl.LOCK_UN)
            except BlockingIOError:
                alive += 1
            except FileNotFoundError:
                pass
        return max(1, alive)

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the device with other trainers (waits while a latency measurement runs)."""
        with _flock(self._turnstile, fcntl.LOCK_EX):
            pass  # blocked here while a writer waits or measures
        with _flock(self._rw, fcntl.LOCK_SH):
            yield

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the device alone (waits until no other worker trains or measures on it)."""
        with _flock(self._turnstile, fcntl.LOCK_EX):
            rw = open(self._rw, "a+")  # noqa: SIM115 - released below, after the turnstile
            try:
                fcntl.flock(rw, fcntl.LOCK_EX)
            except BaseException:
                rw.close()
                raise
        try:
            yield
        finally:
            fcntl.flock(rw, fcntl.LOCK_UN)
            rw.close()


@contextlib.contextmanager
def single_worker_lock(storage: StorageURL) -> Iterator[None]:
    """Hold a SQLite study database for one worker process; refuse a second one (any other
    storage needs no such lock: the block just runs).

    Raises:
        LockError: another process already runs a study on this file. The message names the
            storages that serve several workers.
    """
    if storage.backend != "sqlite":
        yield
        return
    path = _host_lock_path("sqlite", storage.lock_name)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockError(
                f"{storage.redacted} is already used by another worker process; {SEVERAL_WORKERS}"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
