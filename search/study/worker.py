"""One worker's trial loop: exact study totals, heartbeats, retries of lost trials, clean Ctrl-C.

Any number of workers (processes, on any number of machines) run :func:`run_worker` on the same
study. Under the storage gate each worker fails stale trials, counts, and creates its next trial,
so the study ends with exactly the requested number of *counted* trials: complete, pruned, and
failed trials that were not retried. A trial whose worker died (heartbeat stale) or was stopped
(Ctrl-C, SIGTERM) ends failed and is re-queued with the same parameters; its retry counts
instead. A retry records the attempts it retries and why (:func:`search.study.record.retry_trial`,
in Optuna's own retry convention, so ``RetryHeartbeatStaleTrialCallback.retried_trial_number``
reads it).

Heartbeats: Optuna records them only inside ``Study.optimize``; this loop uses ask/tell (it must
create trials under the gate), so it runs its own heartbeat thread with the storage's public
``record_heartbeat``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from search.study import record
from search.study.locks import StorageGate
from search.study.record import TrialWriter, study_tally

__all__ = [
    "WorkerStopped",
    "stop_reason",
    "worker_id",
    "requeue",
    "RetryLostTrial",
    "fail_dead_local_trials",
    "run_worker",
]

logger = logging.getLogger(__name__)

Callback = Callable[[optuna.Study, FrozenTrial], None]


class WorkerStopped(KeyboardInterrupt):
    """A stop signal (SIGINT or SIGTERM) that arrived where it could not interrupt at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def stop_reason(e: KeyboardInterrupt) -> str:
    """``Ctrl-C`` for SIGINT (a plain KeyboardInterrupt), else the signal's name."""
    if isinstance(e, WorkerStopped) and e.signum != signal.SIGINT:
        return signal.Signals(e.signum).name
    return "Ctrl-C"


def worker_id() -> str:
    """``host:pid`` of this process, recorded on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def requeue(study: optuna.Study, trial: FrozenTrial, *, reason: str, max_retry: int) -> int | None:
    """Enqueue a retry of a failed trial with the same parameters (:func:`record.retry_trial`).

    Returns:
        The retry's trial number, or None when ``max_retry`` retries were already made.
    """
    if len(record.retry_history(trial)) + 1 > max_retry:
        logger.warning("trial %d failed (%s); not retried again", trial.number, reason)
        return None
    before = len(study.get_trials(deepcopy=False))
    study.add_trial(record.retry_trial(trial, reason=reason))
    logger.warning("trial %d failed (%s); re-queued as trial %d", trial.number, reason, before)
    return before


class RetryLostTrial:
    """Heartbeat-stale callback of ``RDBStorage``: re-queue the lost trial (:func:`requeue`)."""

    def __init__(self, max_retry: int) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        who = record.worker_of(trial) or "its worker"
        requeue(
            study,
            trial,
            reason=f"lost: {who} stopped sending heartbeats (killed or disconnected)",
            max_retry=self.max_retry,
        )


def _pid_alive(pid: int) -> bool:
    """True while process ``pid`` of this host runs (a zombie awaiting its parent is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _local_pid(trial: FrozenTrial) -> int | None:
    """The pid of the trial's worker if it ran on this host (see :func:`worker_id`), else None."""
    host, _, pid = record.worker_of(trial).rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def _running_here(study: optuna.Study) -> bool:
    """True if a running trial belongs to a worker on this host (its death is detectable)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return any(_local_pid(t) is not None for t in running)


def fail_dead_local_trials(study: optuna.Study, *, max_retry: int) -> list[int]:
    """Fail and re-queue running trials whose worker was on this host and has exited.

    Needs no heartbeat: a worker restarted after a crash recovers its host's lost trials at
    once, instead of after the heartbeat grace period (and on storages without heartbeats).

    Returns:
        The numbers of the trials failed here.
    """
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = _local_pid(t)
        if pid is None or _pid_alive(pid):
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # another worker got there first
            continue
        failed.append(t.number)
        frozen = study._storage.get_trial(t._trial_id)
        who = record.worker_of(frozen)
        requeue(study, frozen, reason=f"lost: {who} is no longer running", max_retry=max_retry)
    return failed


class _Heartbeat:
    """Records a trial's heartbeat now and then every ``interval`` seconds until stopped."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, interval: int) -> None:
        self._storage, self._trial_id, self._interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval > 0:
            storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)  # type: ignore[attr-defined]
            except Exception as e:  # a transient storage error must not end the trial
                logger.warning("heartbeat of trial id %d failed: %s", self._trial_id, e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@contextlib.contextmanager
def _shielded(pending: list[int] | None = None) -> Iterator[None]:
    """Defer SIGINT/SIGTERM while the storage is written (main thread only).

    Signals that arrive are appended to ``pending`` when given (the caller acts on them);
    otherwise the first one is raised as :class:`WorkerStopped` when the block ends.
    """
    raise_pending = pending is None
    pending = [] if pending is None else pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {
        s: signal.signal(s, lambda n, _f: pending.append(n))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if pending and raise_pending:
        raise WorkerStopped(pending[0])


def heartbeat_interval(storage: optuna.storages.BaseStorage) -> int:
    """The storage's heartbeat interval in seconds (0: no heartbeats).

    A study wraps an ``RDBStorage`` in Optuna's cache; both answer the heartbeat interface.
    """
    getter = getattr(storage, "get_heartbeat_interval", None)
    return int((getter() if getter is not None else None) or 0)


def run_worker(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Sequence[float]],
    *,
    total: int,
    gate: StorageGate,
    catch: tuple[type[BaseException], ...] = (),
    callbacks: Sequence[Callback] = (),
    timeout: float | None = None,
    max_retry: int = 2,
) -> int:
    """Evaluate trials until the study holds ``total`` counted trials (or ``timeout`` passes).

    Args:
        study: The study (its storage may have heartbeats enabled).
        objective: Returns ``(latency_ms, psnr_db)``; raises ``TrialPruned`` to prune.
        total: Counted trials the study should hold, across all workers.
        gate: The storage gate.
        catch: Exceptions that fail a trial (with its reason) without stopping the worker.
        callbacks: Called with ``(study, frozen_trial)`` after each trial this worker ends.
        timeout: Seconds after which no new trial is started.
        max_retry: Retries of one configuration after lost or interrupted attempts.

    Returns:
        The number of trials this worker ended.

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM (:class:`WorkerStopped`); the running trial was
            ended failed with the reason and re-queued first.
    """
    storage = study._storage
    interval = heartbeat_interval(storage)
    started, done = time.monotonic(), 0
    pending: list[int] = []  # signals that arrived while the gate was held
    while timeout is None or time.monotonic() - started < timeout:
        with gate.hold(), _shielded(pending):
            fail_dead_local_trials(study, max_retry=max_retry)
            fail_stale_trials(study)  # no-op without heartbeats
            trial = _next_trial(study, total=total)
            beat = None if trial is None else _Heartbeat(storage, trial._trial_id, interval)
        if trial is None and not pending:
            if study_tally(study).counted >= total or not (interval or _running_here(study)):
                break  # nothing left, or nothing a lost trial could be found by
            logger.info("last trials are running elsewhere; waiting for them to end or be lost")
            time.sleep(interval or 2)
            continue
        frozen = _run_one(study, trial, objective, catch, beat=beat, pending=pending, gate=gate,
                          max_retry=max_retry)  # fmt: skip
        done += 1
        if frozen is not None:
            for callback in callbacks:
                callback(study, frozen)
    return done


def _run_one(
    study: optuna.Study,
    trial: optuna.Trial | None,
    objective: Callable[[optuna.Trial], Sequence[float]],
    catch: tuple[type[BaseException], ...],
    *,
    beat: _Heartbeat | None,
    pending: list[int],
    gate: StorageGate,
    max_retry: int,
) -> FrozenTrial | None:
    """Evaluate one trial with its heartbeat running; a stop signal fails and re-queues it."""
    try:
        if pending:
            raise WorkerStopped(pending[0])
        assert trial is not None
        return _evaluate(study, trial, objective, catch)
    except KeyboardInterrupt as e:
        if beat is not None:
            beat.stop()
        if trial is not None:
            with gate.hold():
                _interrupted(study, trial, e, max_retry)
        raise
    finally:
        if beat is not None:
            beat.stop()


def _next_trial(study: optuna.Study, *, total: int) -> optuna.Trial | None:
    """A new trial if the study needs one (call under the gate), else None.

    Running trials hold their slots: None while they fill the last ones.
    """
    now = study_tally(study)
    if now.counted + now.running >= total:
        return None
    with warnings.catch_warnings():  # "supposed to be used with optimize": see the module doc
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        trial = study.ask()
    TrialWriter(trial).worker(worker_id())
    return trial


def _evaluate(
    study: optuna.Study,
    trial: optuna.Trial,
    objective: Callable[[optuna.Trial], Sequence[float]],
    catch: tuple[type[BaseException], ...],
) -> FrozenTrial | None:
    """Run the objective and tell the result; None when another worker already ended the trial."""
    values: Sequence[float] | None = None
    state = TrialState.COMPLETE
    try:
        values = objective(trial)
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except catch as e:
        state = TrialState.FAIL
        logger.warning("trial %d failed: %s", trial.number, e)
        TrialWriter(trial).failed(f"{type(e).__name__}: {e}", keep=True)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        with _shielded():
            _tell(study, trial, TrialState.FAIL, None, reason=f"{type(e).__name__}: {e}")
        raise
    with _shielded():
        return _tell(study, trial, state, values)


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    state: TrialState,
    values: Sequence[float] | None,
    *,
    reason: str | None = None,
) -> FrozenTrial | None:
    try:
        if reason is not None:
            TrialWriter(trial).failed(reason)
        if state == TrialState.COMPLETE:
            return study.tell(trial, values)
        return study.tell(trial, state=state)
    except (UpdateFinishedTrialError, ValueError, RuntimeError) as e:
        # Another worker failed this trial as stale (its heartbeats were late); its retry will
        # measure it again. Nothing of this attempt is kept.
        logger.warning("trial %d was already ended elsewhere; result dropped (%s)", trial.number, e)
        return None


def _interrupted(
    study: optuna.Study, trial: optuna.Trial, e: KeyboardInterrupt, max_retry: int
) -> None:
    reason = f"interrupted ({stop_reason(e)}) in worker {worker_id()}"
    with _shielded():
        frozen = _tell(study, trial, TrialState.FAIL, None, reason=reason)
        if frozen is not None:
            requeue(study, frozen, reason=reason, max_retry=max_retry)
    logger.warning("trial %d ended as failed: %s", trial.number, reason)
