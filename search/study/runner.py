"""Running a study: storage, sampler, reference trials, resume to N counted trials.

Every study records the budget and space it was run with and refuses to mix either. The guide's
baseline, scheme A and scheme B are enqueued once, before any sampled trial, where the space can
express them (the study's ``references`` record says which were skipped and why).

A promotion (:mod:`search.study.promote`) runs the same way: its rung study is created and its
promoted trials enqueued once, under the storage gate, and the workers run them.

Several workers (processes on one or many machines) may run the same study on PostgreSQL; see
:mod:`search.study.worker` for how they share it and :mod:`search.study.locks` for the locks.
SQLite serves one worker process at a time; a second one is refused with a message naming
PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from model import load_preset
from search.measure.budgets import Budget
from search.measure.target import LatencyTarget, format_shape
from search.measure.train import NonFiniteLossError, StepProgress
from search.study import record
from search.study.artifacts import TrialArtifacts
from search.study.locks import DeviceLock, StorageGate, single_worker_lock
from search.study.objective import Limits, Objective
from search.study.parent import Parent, ensure_parent, load_parent, parent_file
from search.study.promote import Promotion, below_ready, rung_budget, select_promoted
from search.study.record import DIRECTIONS, METRIC_NAMES, StudyRecord, TrialRecord
from search.study.space import SearchSpace
from search.study.storage import StorageURL, StudyError, load_existing_study
from search.study.worker import RetryLostTrial, run_worker

__all__ = ["REFERENCES", "SAMPLERS", "StudySettings", "data_name", "load_data", "make_sampler"]
__all__ += ["run_study"]

logger = logging.getLogger(__name__)

REFERENCES = ("baseline", "scheme_a", "scheme_b")
SAMPLERS = ("tpe", "nsga2", "gp", "random")


def make_sampler(name: str, *, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """The named sampler, configured for a two-objective study of ``n_trials`` trials."""
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True
        )
    if name == "nsga2":
        population = max(4, min(50, n_trials // 5))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if name == "gp":
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise StudyError("sampler gp needs scipy: pip install scipy") from None
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise StudyError(f"unknown sampler {name!r} (valid: {', '.join(SAMPLERS)})")


@dataclass(frozen=True)
class StudySettings:
    """Everything a run needs; see ``run_study.py run --help``."""

    space: SearchSpace
    budget: Budget
    n_trials: int
    study_name: str
    storage: StorageURL
    sampler: str = "tpe"
    seed: int = 0
    device: str = "cpu"
    data: str = "synthetic"
    timeout: float | None = None
    limits: Limits = Limits()
    heartbeat: int = 20
    max_retry: int = 2
    train_threads: int | None = None
    latency: LatencyTarget | None = None
    parent: str | None = None
    from_scratch: bool = False
    promotion: Promotion | None = None

    @property
    def target(self) -> LatencyTarget:
        """The latency target (default: the budget's latency shape, source ``auto``); a rung
        measures it directly."""
        target = self.latency or LatencyTarget(self.budget.latency_shape)
        return target if self.promotion is None else LatencyTarget(target.shape, "measured")

    @property
    def trial_budget(self) -> Budget:
        """What each trial trains and validates with: the budget, or its rung's."""
        p = self.promotion
        return self.budget if p is None else rung_budget(self.budget, p.rung, p.steps)

    @property
    def name(self) -> str:
        """The name of the study this run works on (a promotion's: its rung study)."""
        return self.study_name if self.promotion is None else self.promotion.name

    def describe(self) -> str:
        """One line: the study, its storage (password hidden) and what this run does."""
        b = self.trial_budget
        work = (
            f"{self.n_trials} trials in all"
            if self.promotion is None
            else f"rung {self.promotion.rung} of {self.study_name}: {b.steps} steps, "
            f"{b.num_val_clips} validation clips"
        )
        sampler = self.sampler if self.promotion is None else "none (promoted trials)"
        return (
            f"study {self.name} on {self.storage.redacted}: space {self.space.name}, "
            f"budget {self.budget.name}, sampler {sampler}, device {self.device}, "
            f"latency at {format_shape(self.target.shape)} "
            f"({self.target.source_on(self.device)}), weights {self.weights}, {work}"
        )

    @property
    def weights(self) -> str:
        """Where each trial's weights start, in words."""
        if self.from_scratch:
            return "from scratch"
        return f"from {self.parent}" if self.parent else f"from the {self.space.name} parent"


def load_data(source: str, budget: Budget, *, seed: int) -> Any:
    """Train/val splits for the budget: the cached synthetic set, or a Spk-GoPro root."""
    from search.data import load_spk_gopro, load_synthetic

    if source == "synthetic":
        return load_synthetic(budget.data_spec(seed), crop=budget.crop_size, seed=seed)
    root = Path(source)
    if not root.is_dir():
        raise StudyError(f"--data {source}: not a folder (give 'synthetic' or a Spk-GoPro root)")
    common = dict(clip_len=budget.clip_len, num_bins=budget.num_bins, seed=seed)
    train = load_spk_gopro(root, split="train", crop=budget.crop_size, flips=True, **common)
    val = load_spk_gopro(root, split="test", **common)
    return _Splits(train=train, val=val)


@dataclass(frozen=True)
class _Splits:
    train: Any
    val: Any


def data_name(source: str) -> str:
    """``--data`` as a parent's key records it: ``synthetic`` or the resolved data root."""
    return source if source == "synthetic" else str(Path(source).resolve())


def _user_parent(s: StudySettings) -> Parent | None:
    """``--parent PATH``, read and checked against the space (None without it)."""
    if s.parent is None:
        return None
    parent = load_parent(s.parent)
    parent.check_covers(s.space, s.budget)
    return parent


def _parent_key(s: StudySettings, user: Parent | None) -> str:
    """The key of the parent the study's trials inherit from, or ``scratch``."""
    if s.from_scratch:
        return "scratch"
    if user is not None:
        return user.key
    return parent_file(s.space, s.budget, seed=s.seed, data_name=data_name(s.data))[1]


def _parent(
    s: StudySettings, user: Parent | None, data: Any, progress: StepProgress | None
) -> Parent | None:
    """The parent the trials inherit from: the user's, the space's (built if not cached), or
    None from scratch."""
    if user is not None or s.from_scratch:
        return user
    parent, _ = ensure_parent(
        s.space, s.budget, data, device=s.device, seed=s.seed, data_name=data_name(s.data),
        progress=progress,
    )  # fmt: skip
    return parent


def _identity(s: StudySettings, parent: str) -> dict[str, Any]:
    """What a run must share with a study to continue it (:meth:`StudyRecord.identity`)."""
    digest = hashlib.sha256(Path(s.space.source).read_bytes()).hexdigest()[:12]
    target = {"shape": list(s.target.shape), "source": s.target.source_on(s.device)}
    return record.study_identity(
        budget=s.budget.name,
        space=s.space.name,
        space_digest=digest,
        seed=s.seed,
        latency_target=target,
        parent=parent,
        rung=None if s.promotion is None else s.promotion.record(s.budget),
    )


def _check_identity(study: optuna.Study, wanted: dict[str, Any], hint: str) -> None:
    """Refuse a run whose identity differs from the study's record, naming the key."""
    have = StudyRecord.of(study).identity()
    for key, value in wanted.items():
        had = have[key]
        if had != value:
            was = f"{key} {had!r}" if had is not None else f"no {key} (an earlier version)"
            raise StudyError(
                f"study {study.study_name!r} was run with {was}; this run asks for {value!r}: "
                f"results would not be comparable ({hint})"
            )


def _claim_study(study: optuna.Study, s: StudySettings, parent: str) -> None:
    """Record budget/space/seed/parent on a new study; refuse a run that would mix them."""
    wanted = _identity(s, parent)
    if StudyRecord.of(study).claimed:
        _check_identity(study, wanted, "use another --study-name")
        return
    record.claim_study(
        study,
        wanted,
        budget_settings=s.trial_budget.to_dict(),
        base=s.space.base,
        metric_names=list(METRIC_NAMES),
    )


def _enqueue_references(study: optuna.Study, space: SearchSpace) -> dict[str, str]:
    """Enqueue the guide's reference configs once; returns ``{name: "enqueued" | reason}``."""
    have = StudyRecord.of(study)
    if have.references_enqueued:
        return have.references
    status: dict[str, str] = {}
    for name in REFERENCES:
        params, why = space.params_for(load_preset(name))
        if params is None:
            status[name] = f"skipped: {why}"
            logger.info("reference %s not enqueued: %s", name, why)
            continue
        record.enqueue_reference(study, params, name)
        status[name] = "enqueued"
    record.set_references(study, status)
    return status


def _promoted(s: StudySettings, p: Promotion, parent: str) -> list[optuna.trial.FrozenTrial]:
    """The trials a new rung study re-measures; checks the rung-0 study first (nothing is
    written when it does not match, or when the rung below is missing or unfinished)."""
    base = load_existing_study(s.storage, p.base)
    rung0 = dataclasses.replace(s, promotion=None)
    _check_identity(base, _identity(rung0, parent), "promote with the run's own settings")
    if p.rung > 1 and p.rung - 1 not in StudyRecord.of(base).rungs:
        raise StudyError(f"study {p.base!r} has no rung {p.rung - 1}: promote --rung "
                         f"{p.rung - 1} first")  # fmt: skip
    below = base if p.rung == 1 else load_existing_study(s.storage, p.below)
    return select_promoted(below_ready(below), p.top)


def _open_rung(
    s: StudySettings, p: Promotion, parent: str, storage: optuna.storages.BaseStorage
) -> optuna.Study:
    """Create (once: its promoted trials enqueued, the rung-0 study told) or load a rung study.

    A new rung study is created only after the promotion was checked; one whose enqueueing was
    interrupted gets the trials it misses.
    """
    new = p.name not in optuna.get_all_study_names(storage)
    promoted = _promoted(s, p, parent) if new else None
    study = optuna.create_study(storage=storage, study_name=p.name, load_if_exists=True,
                                directions=list(DIRECTIONS),
                                sampler=optuna.samplers.RandomSampler(seed=s.seed))  # fmt: skip
    _claim_study(study, s, parent)
    if StudyRecord.of(study).promoted is not None:
        return study
    promoted = promoted if promoted is not None else _promoted(s, p, parent)
    queued = {(r.promoted_from or {}).get("trial") for r in map(TrialRecord.of, study.trials)}
    below = optuna.load_study(study_name=p.below, storage=storage)
    for trial in promoted:
        if trial.number not in queued:
            record.enqueue_promoted(study, below, trial)
    record.set_promoted(study, [t.number for t in promoted])
    record.add_rung(optuna.load_study(study_name=p.base, storage=storage), p.rung, p.name)
    return study


def _open_study(s: StudySettings, parent: str) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """Create or load the study, claim it and enqueue the references (under the gate); for a
    promotion, its rung study and the promoted trials."""
    storage = s.storage.open(
        create=True, heartbeat=s.heartbeat, on_lost=RetryLostTrial(s.max_retry)
    )
    if s.promotion is not None:
        return _open_rung(s, s.promotion, parent, storage), storage
    study = optuna.create_study(
        storage=storage,
        study_name=s.study_name,
        directions=list(DIRECTIONS),
        sampler=make_sampler(s.sampler, seed=s.seed, n_trials=s.n_trials),
        load_if_exists=True,
    )
    _claim_study(study, s, parent)
    _enqueue_references(study, s.space)
    return study, storage


def _objective(
    s: StudySettings,
    data: Any,
    storage: optuna.storages.BaseStorage,
    device_lock: DeviceLock,
    parent: Parent | None,
) -> Objective:
    return Objective(
        space=s.space,
        budget=s.trial_budget,
        data=data,
        device=s.device,
        seed=s.seed,
        artifacts=TrialArtifacts(s.storage.artifact_store(), storage),
        limits=s.limits,
        device_lock=device_lock,
        train_threads=s.train_threads,
        target=s.target,
        parent=parent,
    )


def run_study(
    s: StudySettings,
    *,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None,
    on_ready: Callable[[optuna.Study], None] | None = None,
    parent_progress: StepProgress | None = None,
) -> optuna.Study:
    """Create or join the study and work on it until it holds ``s.n_trials`` counted trials.

    Any number of processes may call this with the same PostgreSQL storage and study name; the
    total is the study's, not this process's. Nothing is written before the storage, the data and
    the study's budget/space have been checked.

    Args:
        s: The run's settings.
        callbacks: Called with ``(study, frozen_trial)`` after each trial this worker ends.
        on_ready: Called once the study is open and claimed, before the first trial.
        parent_progress: Called after each step of building the space's parent (if not cached).

    Raises:
        StorageError: the storage cannot be used; StudyError: a second worker on SQLite, or a
            budget/space that differs from the study's own.
        KeyboardInterrupt: Ctrl-C/SIGTERM; the running trial ended failed and was re-queued.
    """
    s.storage.check()
    with single_worker_lock(s.storage):
        data = load_data(s.data, s.trial_budget, seed=s.seed)  # bad data fails before writing
        user = _user_parent(s)  # and a --parent that does not cover the space
        key = _parent_key(s, user)
        gate = StorageGate(s.storage)
        device_lock = DeviceLock(s.device)
        try:
            with gate.hold():  # the first worker builds the parent; the others wait for it
                study, storage = _open_study(s, key)
                parent = _parent(s, user, data, parent_progress)
            if on_ready is not None:
                on_ready(study)
            objective = _objective(s, data, storage, device_lock, parent)
            promoted = StudyRecord.of(study).promoted
            with device_lock.registered():
                run_worker(
                    study,
                    objective,
                    total=s.n_trials if promoted is None else len(promoted),
                    gate=gate,
                    catch=(NonFiniteLossError, torch.OutOfMemoryError, MemoryError),
                    callbacks=callbacks or (),
                    timeout=s.timeout,
                    max_retry=s.max_retry,
                )
        finally:
            gate.close()
    return study
