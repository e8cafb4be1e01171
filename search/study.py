"""Running a study: storage, sampler, reference trials, resume to N counted trials.

Every study records the budget and space it was run with and refuses to mix either. The guide's
baseline, scheme A and scheme B are enqueued once, before any sampled trial, where the space can
express them (the study's ``references`` attribute says which were skipped and why).

Several workers (processes on one or many machines) may run the same study on PostgreSQL; see
:mod:`search.worker` for how they share it and :mod:`search.locks` for the locks. SQLite serves
one worker process at a time; a second one is refused with a message naming PostgreSQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from model import load_preset
from model.errors import VRTSpikeError
from search.budgets import Budget
from search.locks import DeviceLock, StorageGate, single_worker_lock
from search.objective import Objective
from search.space import SearchSpace
from search.storage import (
    artifact_dir,
    check_storage,
    open_storage,
    redact_url,
    sqlite_path,
)
from search.train import NonFiniteLossError
from search.worker import run_worker

__all__ = [
    "StudyError",
    "StudySettings",
    "DIRECTIONS",
    "METRIC_NAMES",
    "REFERENCES",
    "SAMPLERS",
    "load_existing_study",
    "make_sampler",
    "load_data",
    "run_study",
]

logger = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")
METRIC_NAMES = ("latency_ms", "psnr_db")
REFERENCES = ("baseline", "scheme_a", "scheme_b")
SAMPLERS = ("tpe", "nsga2", "gp", "random")


class StudyError(VRTSpikeError):
    """A study that cannot be created, loaded or continued as asked."""


def load_existing_study(url: str, study_name: str) -> optuna.Study:
    """Load a study for reading (nothing is created).

    Raises:
        StudyError: no storage or no such study (the message lists the studies there).
    """
    storage = open_storage(url, create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
    if study_name not in names:
        listing = ", ".join(names) if names else "none"
        raise StudyError(f"no study {study_name!r} in {redact_url(url)} (studies there: {listing})")
    return optuna.load_study(study_name=study_name, storage=storage)


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
    storage_url: str
    sampler: str = "tpe"
    seed: int = 0
    device: str = "cpu"
    data: str = "synthetic"
    timeout: float | None = None
    max_latency_ms: float | None = None
    max_memory_gb: float | None = None
    heartbeat: int = 20
    max_retry: int = 2
    train_threads: int | None = None


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


def _space_digest(space: SearchSpace) -> str:
    return hashlib.sha256(Path(space.source).read_bytes()).hexdigest()[:12]


def _claim_study(study: optuna.Study, s: StudySettings) -> None:
    """Record budget/space/seed on a new study; refuse a run that would mix them."""
    attrs = study.user_attrs
    wanted = {
        "budget": s.budget.name,
        "space": s.space.name,
        "space_digest": _space_digest(s.space),
        "seed": s.seed,
    }
    if "budget" not in attrs:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
        study.set_user_attr("budget_settings", s.budget.to_dict())
        study.set_user_attr("base", s.space.base)
        study.set_metric_names(list(METRIC_NAMES))
        return
    for key, value in wanted.items():
        if attrs.get(key) != value:
            raise StudyError(
                f"study {s.study_name!r} was run with {key} {attrs.get(key)!r}; this run asks for "
                f"{value!r}: results would not be comparable (use another --study-name)"
            )


def _enqueue_references(study: optuna.Study, space: SearchSpace) -> dict[str, str]:
    """Enqueue the guide's reference configs once; returns ``{name: "enqueued" | reason}``."""
    if "references" in study.user_attrs:
        return dict(study.user_attrs["references"])
    status: dict[str, str] = {}
    for name in REFERENCES:
        params, why = space.params_for(load_preset(name))
        if params is None:
            status[name] = f"skipped: {why}"
            logger.info("reference %s not enqueued: %s", name, why)
            continue
        study.enqueue_trial(params, user_attrs={"reference": name})
        status[name] = "enqueued"
    study.set_user_attr("references", status)
    return status


def run_study(
    s: StudySettings,
    *,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None,
) -> optuna.Study:
    """Create or join the study and work on it until it holds ``s.n_trials`` counted trials.

    Any number of processes may call this with the same PostgreSQL storage and study name; the
    total is the study's, not this process's. Nothing is written before the storage, the data and
    the study's budget/space have been checked.

    Raises:
        StudyError: storage problems, a second worker on SQLite, or a budget/space that differs
            from the study's own.
        KeyboardInterrupt: Ctrl-C/SIGTERM; the running trial ended failed and was re-queued.
    """
    check_storage(s.storage_url)
    db = sqlite_path(s.storage_url)
    hold = (
        single_worker_lock(db, shown_url=redact_url(s.storage_url))
        if db is not None
        else contextlib.nullcontext()
    )
    with hold:
        data = load_data(s.data, s.budget, seed=s.seed)  # bad data fails before any write
        gate = StorageGate(s.storage_url)
        device_lock = DeviceLock(s.device)
        try:
            with gate.hold():
                storage = open_storage(
                    s.storage_url, create=True, heartbeat=s.heartbeat, max_retry=s.max_retry
                )
                study = optuna.create_study(
                    storage=storage,
                    study_name=s.study_name,
                    directions=list(DIRECTIONS),
                    sampler=make_sampler(s.sampler, seed=s.seed, n_trials=s.n_trials),
                    load_if_exists=True,
                )
                _claim_study(study, s)
                _enqueue_references(study, s.space)
            objective = Objective(
                space=s.space,
                budget=s.budget,
                data=data,
                device=s.device,
                seed=s.seed,
                artifact_store=optuna.artifacts.FileSystemArtifactStore(
                    _ensure(artifact_dir(s.storage_url))
                ),
                max_latency_ms=s.max_latency_ms,
                max_memory_gb=s.max_memory_gb,
                storage=storage,
                device_lock=device_lock,
                train_threads=s.train_threads,
            )
            with device_lock.registered():
                run_worker(
                    study,
                    objective,
                    total=s.n_trials,
                    gate=gate,
                    catch=(NonFiniteLossError, torch.OutOfMemoryError, MemoryError),
                    callbacks=callbacks or (),
                    timeout=s.timeout,
                    max_retry=s.max_retry,
                )
        finally:
            gate.close()
    return study


def _ensure(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return str(path)
