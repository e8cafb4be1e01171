"""One line per trial a worker ends: the study's count, the trial's figures, elapsed time, ETA.

:class:`Progress` is a study callback; it formats the line and hands it to the ``write``
function the command line gives it (library code does not print).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import optuna

from search.study.record import TrialRecord, study_tally

__all__ = ["Progress", "hms"]


def hms(seconds: float) -> str:
    """``H:MM:SS`` of a duration."""
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _notes(t: TrialRecord) -> str:
    tags = [f"ref {t.reference}"] if t.reference else []
    if t.retry_of is not None:
        tags.append(f"retry of #{t.retry_of}")
    if t.reused_from is not None:
        tags.append(f"PSNR reused from #{t.reused_from}")
    if t.skipped_training is not None:
        tags.append("not trained: over latency limit")
    return f"  ({'; '.join(tags)})" if tags else ""


class Progress:
    """Study callback writing one line per ended trial.

    The elapsed time counts from the callback's creation, so it includes building what the
    trials share (data set, latency table, parent); the ETA's rate counts from the start of the
    first trial this worker sees end, so those one-off builds do not inflate it.

    Args:
        total: Counted trials the study should hold (all workers together).
        write: Where lines go (the CLI passes ``print``).
        tag: This worker's ``K/N`` under ``--workers`` ("" for a lone worker).
    """

    def __init__(self, total: int, write: Callable[[str], None], tag: str = "") -> None:
        self.total, self.write, self.tag = total, write, f"w{tag} " if tag else ""
        self.start = time.perf_counter()
        self.first: tuple[int, datetime] | None = None  # (counted before it, its start)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        counted = study_tally(study).counted
        if self.first is None:
            self.first = (counted - 1, trial.datetime_start or datetime.now())
        counted_before, since = self.first
        elapsed = time.perf_counter() - self.start
        trials_time = max(1e-3, (datetime.now() - since).total_seconds())
        rate = max(1, counted - counted_before) / trials_time  # all workers together
        eta = max(0, self.total - counted) / rate
        t = TrialRecord.of(trial)
        what = f"{trial.state.name.lower():8s}"
        if t.values:
            what += f" latency {t.latency_ms:8.2f} ms  PSNR {t.psnr_db:6.2f} dB"
        else:
            what += f" {(t.fail_reason or '')[:80]}"
        self.write(
            f"{self.tag}[{counted:>3}/{self.total}] trial {trial.number:>3} {what}{_notes(t)}  "
            f"| elapsed {hms(elapsed)}  ETA {hms(eta)}"
        )
