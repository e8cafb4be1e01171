"""Promotion: the trials worth it are re-measured at a higher fidelity, rung by rung.

A study's trials are cheap: a short fine-tune and, on the CPU, a predicted latency. Rung ``r`` of
a study ``S`` is its own Optuna study ``S@r<r>`` in the same storage, at a higher fidelity:
:data:`ETA` ** r times the fine-tuning steps (from the same parent's weights) and validation
clips, and the latency measured directly at the study's target. Its trials are the promoted
trials of the rung below, enqueued with their parameters and ``promoted_from``.

Which trials go up (as multi-objective ASHA does it): the rung below's complete feasible trials
ranked by non-dominated sorting (:func:`~search.report.pareto.promotion_order`), the first
``top`` of them (default: the whole first front, or ``ceil(n / ETA)`` of the ``n`` complete
trials if that is more), trials with the same parameters counted once, plus every reference
trial. Trials that share an accuracy key are trained once at the rung (the objective reuses the
PSNR, as at rung 0).

Optuna cannot prune a multi-objective study, and optuna-dashboard shows one fidelity per study:
hence one plain study per rung.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.measure.budgets import Budget
from search.report.pareto import nondominated_fronts, promotion_order
from search.study.record import StudyRecord, TrialRecord, study_tally
from search.study.storage import StorageURL, StudyError, load_existing_study

__all__ = ["ETA", "Promotion", "PromotionError", "below_ready", "rung_budget", "rung_name"]
__all__ += ["finished", "open_rung", "select_promoted"]

logger = logging.getLogger(__name__)

ETA = 3
"""Each rung multiplies fine-tuning steps and validation clips by this, and promotes about
``1 / ETA`` of the trials below."""


class PromotionError(StudyError):
    """A promotion that cannot run: no trials below, an unfinished rung below, a bad ``--top``."""


def rung_name(base: str, rung: int) -> str:
    """The study name of rung ``rung`` of study ``base`` (rung 0 is ``base`` itself)."""
    return base if rung == 0 else f"{base}@r{rung}"


def rung_budget(budget: Budget, rung: int, steps: int | None = None) -> Budget:
    """The budget of rung ``rung``: ``steps`` (default ``ETA ** rung`` times the budget's) and
    ``ETA ** rung`` times the validation clips; warm-up scaled with the steps."""
    factor = ETA**rung
    steps = steps or budget.steps * factor
    warmup = min(steps - 1, round(budget.warmup_steps * steps / budget.steps))
    return dataclasses.replace(
        budget, steps=steps, warmup_steps=warmup, num_val_clips=budget.num_val_clips * factor
    )


@dataclass(frozen=True)
class Promotion:
    """Rung ``rung`` (>= 1) of the study ``base``.

    Attributes:
        base: The rung-0 study's name.
        rung: The rung to run.
        steps: Fine-tuning steps at this rung (default: ``ETA ** rung`` times the budget's).
        top: How many trials of the rung below go up (default: see the module docstring).
    """

    base: str
    rung: int = 1
    steps: int | None = None
    top: int | None = None

    def __post_init__(self) -> None:
        if self.rung < 1:
            raise PromotionError(f"--rung {self.rung}: promotion runs rungs 1 and up")
        if self.top is not None and self.top < 1:
            raise PromotionError(f"--top {self.top}: at least one trial must go up")
        if self.steps is not None and self.steps < 2:
            raise PromotionError(f"--steps {self.steps}: a rung trains at least 2 steps")

    @property
    def name(self) -> str:
        """The rung study's name."""
        return rung_name(self.base, self.rung)

    @property
    def below(self) -> str:
        """The name of the study it promotes from."""
        return rung_name(self.base, self.rung - 1)

    def record(self, budget: Budget) -> dict[str, Any]:
        """The rung study's ``rung`` record (part of its identity) for the rung-0 budget."""
        b = rung_budget(budget, self.rung, self.steps)
        return {"base": self.base, "rung": self.rung, "below": self.below, "steps": b.steps,
                "val_clips": b.num_val_clips, "top": self.top}  # fmt: skip


def below_ready(below: optuna.Study) -> list[FrozenTrial]:
    """The complete trials of the rung below, which must have finished.

    Raises:
        PromotionError: it has trials still running or waiting, or no complete trial.
    """
    t = study_tally(below)
    if t.running or t.waiting:
        raise PromotionError(
            f"study {below.study_name!r} still has {t.running} running and {t.waiting} waiting "
            "trials: promote it when they are done"
        )
    done = [x for x in below.get_trials(deepcopy=False) if x.state == TrialState.COMPLETE]
    if not done:
        raise PromotionError(f"study {below.study_name!r} has no complete trial to promote")
    return done


def _params_key(trial: FrozenTrial) -> str:
    return json.dumps(trial.params, sort_keys=True, default=str)


def _distinct(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The earliest trial of each set of parameters."""
    seen: dict[str, FrozenTrial] = {}
    for t in sorted(trials, key=lambda t: t.number):
        seen.setdefault(_params_key(t), t)
    return list(seen.values())


def select_promoted(done: Sequence[FrozenTrial], top: int | None) -> list[FrozenTrial]:
    """The trials that go up, in promotion order (see the module docstring), references last.

    Trials with the same parameters count once (the earliest stands for them).
    """
    distinct = _distinct(done)
    feasible = [t for t in distinct if TrialRecord.of(t).feasible]
    points = [(t.values[0], t.values[1]) for t in feasible]
    if top is None:
        first = len(nondominated_fronts(points)[0]) if points else 0
        top = max(first, math.ceil(len(distinct) / ETA))
    chosen = [feasible[i] for i in promotion_order(points)[:top]]
    # the references always go up: the dominance report needs them
    chosen += [t for t in distinct if TrialRecord.of(t).reference and t not in chosen]
    logger.info("promoting %d of %d trials: %s", len(chosen), len(done),
                [t.number for t in chosen])  # fmt: skip
    return chosen


def finished(study: optuna.Study) -> bool:
    """True for a rung study all of whose promoted trials have ended (and any rung-0 study)."""
    promoted = StudyRecord.of(study).promoted
    if promoted is None:
        return True
    t = study_tally(study)
    return t.running == t.waiting == 0 and t.counted >= len(promoted)


def open_rung(storage: StorageURL, study_name: str, rung: int | None) -> optuna.Study:
    """The study a report or an export reads: rung ``rung`` of ``study_name``, or by default its
    highest rung whose promoted trials have all ended (the study itself when it has none).

    Raises:
        StorageError, StudyError: no such storage or study, or no such rung.
    """
    base = load_existing_study(storage, study_name)
    rungs = StudyRecord.of(base).rungs
    if rung is None:
        for r in sorted(rungs, reverse=True):
            study = load_existing_study(storage, rungs[r])
            if finished(study):
                return study
        return base
    if rung == 0:
        return base
    if rung not in rungs:
        have = ", ".join(str(r) for r in [0, *sorted(rungs)])
        raise StudyError(f"study {study_name!r} has no rung {rung} (its rungs: {have})")
    return load_existing_study(storage, rungs[rung])
