"""The stored record: every key a trial or a study keeps in the storage, written and read here only.

A trial's record lives in Optuna's user attributes (JSON values) plus two system attributes of
Optuna's own retry convention; a study's in the study's user attributes. This module is the
schema: the keys are spelled here and nowhere else, :class:`TrialWriter` is the one writer of a
trial's attributes (used by the objective and the worker), and :class:`TrialRecord` /
:class:`StudyRecord` are the typed readers every report uses. Records written by earlier
versions load too: a key a version did not write reads as None (or the stated default).

Trial keys (user attributes), by who writes them:

====================  ==========================================================================
``config``            the deployment config (guide format): the trial's knobs on the space's base
``trained_config``    what the budget trained and timed (widths scaled, clip geometry)
``accuracy_key``      hash of everything in ``trained_config`` that can change its PSNR
``budget``            the budget's settings (``Budget.to_dict()``)
``seed``              weights, data order, latency inputs
``space``             the space's name
``device``            ``cpu``, ``cuda:0``...; ``device_name``: CPU model or GPU name
``versions``          python, torch, optuna, numpy
``params`` ``flops``  parameter count, forward FLOPs at the latency input; ``flops_per_part``
``latency``           measured: :class:`~search.measure.latency.Latency` as a dict (median, p90,
                      cv, ...); predicted: ``Prediction.to_dict()`` (median, table, terms); both
                      with ``source``
``latency_target``    what the latency is of: ``{"shape", "device", "embed_dims", "amp",
                      "source"}`` (the deployment config at the study's target)
``per_stage_ms``      the stage profile (part -> ms), measured or predicted
``train``             the training summary (loss first/min/every, seconds, PSNR gain...)
``ssim``              validation SSIM; ``input_psnr_db`` / ``input_ssim``: the blurry input's
``inherit``           ``{"parent", "parent_path", "psnr_db_inherited", "psnr_db"}``: the elastic
                      parent the weights came from, the PSNR before and after fine-tuning
``reused_from``       trial whose PSNR this trial reused (chunking-only difference)
``skipped_training``  why the trial was not trained (over the latency limit)
``constraint:<name>`` constraint value (value - limit; > 0 infeasible), mirrored for the dashboard
``peak_mem_gb``       peak memory of the latency and training passes
``feasible``          all constraints <= 0
``device_windows``    ``{timed|trained: [waited_s, start, end]}``: when the device was held
``seconds``           the objective's wall time
``worker``            ``host:pid`` of the worker that ran it
``reference``         ``baseline`` / ``scheme_a`` / ``scheme_b`` for the guide's configurations
``promoted_from``     ``{"study", "trial"}``: in a rung study, the trial of the rung below this
                      one re-measures
``retry_of``          the failed trial this one retries; ``retry_reason``: why it failed
``fail_reason``       why the trial failed or was pruned
====================  ==========================================================================

System attributes (Optuna's retry convention): ``failed_trial`` (the first failed attempt) and
``retry_history`` (every failed attempt, oldest first).

Study keys: ``budget`` (name), ``budget_settings``, ``space``, ``space_digest``, ``seed``,
``latency_target`` (``{"shape", "source"}``: the target every trial's latency is taken at),
``parent`` (the key of the elastic parent every trial inherits from, or ``"scratch"``),
``base`` (the space's base preset), ``references`` (name -> ``enqueued`` or why skipped),
``hypervolume`` (``{"reference", "value", "trials"}`` of the last published figure).
Promotion (:mod:`search.study.promote`): a rung study has ``rung`` (``{"base", "rung", "below",
"steps", "val_clips", "top"}``: what it re-measures and at which fidelity; part of its identity),
``promoted`` (the trial numbers of the rung below, in promotion order) and ``agreement``
(``{"latency_ms", "psnr_db", "trials"}``: Kendall tau of the promoted trials between the rung
below and this one); the rung-0 study has ``rungs`` (rung number as text -> rung study name).

Artifacts: per trial ``trial<N>`` + :data:`STRIP_SUFFIX` ``.png`` (restored frames) and
:data:`PROFILE_SUFFIX` ``.png``/``.csv`` (stage profile); per study :func:`hv_figure_name`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.measure.target import describe_target

__all__ = [
    "DIRECTIONS",
    "METRIC_NAMES",
    "PROFILE_SUFFIX",
    "STRIP_SUFFIX",
    "StudyRecord",
    "Tally",
    "TrialRecord",
    "TrialSetup",
    "TrialWriter",
    "claim_study",
    "enqueue_promoted",
    "enqueue_reference",
    "has_fail_reason",
    "hv_figure_name",
    "reference_of",
    "retry_history",
    "retry_trial",
    "add_rung",
    "set_agreement",
    "set_hypervolume",
    "set_promoted",
    "set_references",
    "study_identity",
    "study_tally",
    "tally",
    "worker_of",
]

logger = logging.getLogger(__name__)

METRIC_NAMES = ("latency_ms", "psnr_db")
"""The study's objectives, in order (stored as Optuna's metric names)."""
DIRECTIONS = ("minimize", "maximize")
"""Their directions."""
STRIP_SUFFIX = "_blurry_restored_sharp"
"""File-name tail of the restored-frames strip artifact (``trial<N>_blurry_restored_sharp.png``)."""
PROFILE_SUFFIX = "_stage_profile"
"""File-name tail of the stage-profile artifacts (``.png`` chart, ``.csv`` table)."""

_CONSTRAINT = "constraint:"
_RETRY_HISTORY, _FAILED_TRIAL = "retry_history", "failed_trial"  # Optuna's retry convention
_FIXED_PARAMS = "fixed_params"  # where Optuna keeps the parameters a trial was enqueued with
_SETUP_KEYS = (
    "config",
    "trained_config",
    "accuracy_key",
    "budget",
    "seed",
    "device",
    "device_name",
    "versions",
    "space",
    "params",
    "flops",
    "flops_per_part",
)
_ACCURACY_KEYS = ("train", "ssim", "input_psnr_db", "input_ssim")


def hv_figure_name(completed: int) -> str:
    """File name of the hypervolume figure covering ``completed`` completed trials."""
    return f"hypervolume_{completed}trials.png"


# ---- trials ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialSetup:
    """What a trial records before it is measured (see the module table)."""

    config: dict[str, Any]
    trained_config: dict[str, Any]
    accuracy_key: str
    budget: dict[str, Any]
    seed: int
    device: str
    device_name: str
    versions: dict[str, str]
    space: str
    params: int
    flops: int
    flops_per_part: dict[str, int]


class TrialWriter:
    """The one writer of a running trial's user attributes (a live trial or a ``FixedTrial``)."""

    def __init__(self, trial: optuna.trial.BaseTrial) -> None:
        self.trial = trial

    def _set(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            self.trial.set_user_attr(key, value)

    def worker(self, worker_id: str) -> None:
        """The ``host:pid`` of the worker running the trial."""
        self._set({"worker": worker_id})

    def setup(self, s: TrialSetup) -> None:
        """Config, budget, device and cost: known before anything is measured."""
        self._set({key: getattr(s, key) for key in _SETUP_KEYS})

    def latency(
        self,
        latency: Mapping[str, Any],
        per_stage_ms: Mapping[str, float],
        target: Mapping[str, Any],
    ) -> None:
        """The latency record (measured or predicted), its stage profile and what it is of."""
        self._set(
            {
                "latency": dict(latency),
                "per_stage_ms": dict(per_stage_ms),
                "latency_target": dict(target),
            }
        )

    def trained(self, result: Mapping[str, Any]) -> None:
        """A training result (``TrainResult.to_dict()``): its summary and validation scores.

        The loss curve is kept as its first value, its minimum and about 50 evenly spaced
        points (``loss_curve_every``).
        """
        summary = dict(result)
        curve = summary.pop("loss_curve")
        summary["loss_first"], summary["loss_min"] = curve[0], min(curve)
        summary["loss_curve_every"] = curve[:: max(1, len(curve) // 50)]
        self._set({"train": summary, **{k: result[k] for k in _ACCURACY_KEYS[1:]}})

    def evaluated(self, scores: Mapping[str, float]) -> None:
        """Validation scores of an untrained network (``evaluate``'s dict)."""
        self._set({k: scores[k] for k in _ACCURACY_KEYS[1:]})

    def skipped(self, reason: str) -> None:
        """Why the trial was not trained."""
        self._set({"skipped_training": reason})

    def inherited(self, parent: Mapping[str, Any], inherited_db: float, psnr_db: float) -> None:
        """Where the weights came from (``Parent.describe()``), the PSNR before fine-tuning and
        after."""
        self._set(
            {
                "inherit": {
                    "parent": parent["key"],
                    "parent_path": parent["path"],
                    "psnr_db_inherited": inherited_db,
                    "psnr_db": psnr_db,
                }
            }
        )

    def reused(self, source: TrialRecord) -> None:
        """The accuracy figures of ``source`` (same accuracy key): its training and scores."""
        self._set(
            {
                "reused_from": source.psnr_source,
                "inherit": source.inherit,
                "train": source.train,
                "ssim": source.ssim,
                "input_psnr_db": source.input_psnr_db,
                "input_ssim": source.input_ssim,
            }
        )

    def constraints(self, values: Mapping[str, float], peak_mem_gb: float) -> None:
        """Constraint values (value - limit) on Optuna's API and mirrored, peak memory, feasible.

        optuna-dashboard 0.21 ignores ``Trial.set_constraint``, hence the mirror.
        """
        for name, value in values.items():
            if hasattr(self.trial, "set_constraint"):
                self.trial.set_constraint(name, value)
            self._set({f"{_CONSTRAINT}{name}": value})
        self._set({"peak_mem_gb": peak_mem_gb, "feasible": all(v <= 0 for v in values.values())})

    def finished(self, device_windows: Mapping[str, list[float]], seconds: float) -> None:
        """When the device was held, and the objective's wall time."""
        self._set({"device_windows": dict(device_windows), "seconds": round(seconds, 3)})

    def failed(self, reason: str, *, keep: bool = False) -> None:
        """Why the trial failed or was pruned (``keep``: only if no reason is recorded yet)."""
        if keep and "fail_reason" in self.trial.user_attrs:
            return
        self._set({"fail_reason": reason[:500]})


@dataclass(frozen=True)
class TrialRecord:
    """A stored trial, read once into typed fields (see the module table for each key)."""

    number: int
    state: TrialState
    values: tuple[float, ...] | None
    config: dict[str, Any] | None = None
    trained_config: dict[str, Any] | None = None
    accuracy_key: str | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    space: str | None = None
    device: str | None = None
    device_name: str | None = None
    versions: dict[str, str] | None = None
    params: int | None = None
    flops: int | None = None
    latency: dict[str, Any] = field(default_factory=dict)
    latency_target: dict[str, Any] | None = None
    per_stage_ms: dict[str, float] = field(default_factory=dict)
    train: dict[str, Any] | None = None
    ssim: float | None = None
    input_psnr_db: float | None = None
    input_ssim: float | None = None
    inherit: dict[str, Any] | None = None
    reused_from: int | None = None
    skipped_training: str | None = None
    constraints: dict[str, float] = field(default_factory=dict)
    peak_mem_gb: float | None = None
    feasible: bool = True
    worker: str | None = None
    reference: str = ""
    promoted_from: dict[str, Any] | None = None
    retry_of: int | None = None
    retry_reason: str | None = None
    fail_reason: str | None = None
    retry_history: tuple[int, ...] = ()

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        """Read a stored trial (any version of the record)."""
        a = trial.user_attrs
        constraints = {
            k.removeprefix(_CONSTRAINT): float(v) for k, v in a.items() if k.startswith(_CONSTRAINT)
        }
        return cls(
            number=trial.number,
            state=trial.state,
            values=tuple(trial.values) if trial.values else None,
            config=a.get("config"),
            trained_config=a.get("trained_config"),
            accuracy_key=a.get("accuracy_key"),
            budget=dict(a.get("budget") or {}),
            seed=a.get("seed"),
            space=a.get("space"),
            device=a.get("device"),
            device_name=a.get("device_name"),
            versions=a.get("versions"),
            params=a.get("params"),
            flops=a.get("flops"),
            latency=dict(a.get("latency") or {}),
            latency_target=a.get("latency_target"),
            per_stage_ms=dict(a.get("per_stage_ms") or {}),
            train=a.get("train"),
            ssim=a.get("ssim"),
            input_psnr_db=a.get("input_psnr_db"),
            input_ssim=a.get("input_ssim"),
            inherit=a.get("inherit"),
            reused_from=a.get("reused_from"),
            skipped_training=a.get("skipped_training"),
            constraints=constraints,
            peak_mem_gb=a.get("peak_mem_gb"),
            feasible=bool(a.get("feasible", True))
            and all(v <= 0 for v in trial.constraints.values()),
            worker=a.get("worker"),
            reference=a.get("reference", ""),
            promoted_from=a.get("promoted_from"),
            retry_of=a.get("retry_of"),
            retry_reason=a.get("retry_reason"),
            fail_reason=a.get("fail_reason"),
            retry_history=tuple(trial.system_attrs.get(_RETRY_HISTORY, ())),
        )

    @property
    def latency_ms(self) -> float:
        """The first objective (the trial must be complete)."""
        assert self.values is not None, f"trial {self.number} has no values"
        return self.values[0]

    @property
    def psnr_db(self) -> float:
        """The second objective (the trial must be complete)."""
        assert self.values is not None, f"trial {self.number} has no values"
        return self.values[1]

    @property
    def latency_cv(self) -> float | None:
        """Coefficient of variation of the timed forwards."""
        return self.latency.get("cv")

    @property
    def latency_input(self) -> tuple[int, ...]:
        """(B, T, 3, H, W) of the latency input (empty if unknown)."""
        return tuple(self.latency.get("rgb_shape", ()))

    @property
    def latency_of(self) -> str | None:
        """What the latency is of, in words (None for a trial from before latency targets)."""
        t = self.latency_target
        return None if t is None else describe_target(tuple(t["shape"]), t["source"])

    @property
    def psnr_source(self) -> int:
        """The trial that trained the network whose PSNR this trial reports."""
        return self.number if self.reused_from is None else self.reused_from

    @property
    def trained_here(self) -> bool:
        """True when this trial trained its own network (its PSNR can be reused)."""
        return self.train is not None and self.skipped_training is None

    @property
    def scaled_proxy(self) -> bool:
        """True when the budget trained something other than the deployment config."""
        return self.trained_config != self.config


def reference_of(trial: FrozenTrial) -> str:
    """The reference name of a (possibly still waiting) trial, "" for a sampled one."""
    return trial.user_attrs.get("reference", "")


def worker_of(trial: FrozenTrial) -> str:
    """The ``host:pid`` that ran a trial ("" if not recorded)."""
    return str(trial.user_attrs.get("worker", ""))


def retry_history(trial: FrozenTrial) -> tuple[int, ...]:
    """Numbers of the failed attempts this trial retries (oldest first)."""
    return tuple(trial.system_attrs.get(_RETRY_HISTORY, ()))


def has_fail_reason(trial: optuna.trial.BaseTrial) -> bool:
    """True when a running trial already recorded why it failed."""
    return "fail_reason" in trial.user_attrs


def retry_trial(trial: FrozenTrial, *, reason: str) -> FrozenTrial:
    """A WAITING copy of a failed trial's parameters that records what it retries.

    Its parameters are those it had suggested plus those it was enqueued with (Optuna's
    ``fixed_params``): a trial stopped before it suggested them (e.g. while loading its data)
    still retries the enqueued configuration. Only ``reference`` and ``promoted_from`` are
    carried over; everything else is measured again.
    """
    history = [*retry_history(trial), trial.number]
    attrs: dict[str, Any] = {"retry_of": trial.number, "retry_reason": reason}
    for key in ("reference", "promoted_from"):
        if trial.user_attrs.get(key):
            attrs[key] = trial.user_attrs[key]
    system: dict[str, Any] = {_FAILED_TRIAL: history[0], _RETRY_HISTORY: history}
    fixed = {**trial.system_attrs.get(_FIXED_PARAMS, {}), **trial.params}
    if fixed:
        system[_FIXED_PARAMS] = fixed
    return optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs=attrs,
        system_attrs=system,
    )


def enqueue_reference(study: optuna.Study, params: dict[str, Any], name: str) -> None:
    """Enqueue one of the guide's reference configurations under its name."""
    study.enqueue_trial(params, user_attrs={"reference": name})


def enqueue_promoted(study: optuna.Study, below: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue a trial of the rung below (its parameters, its reference name, where it came
    from) into a rung study."""
    attrs: dict[str, Any] = {"promoted_from": {"study": below.study_name, "trial": trial.number}}
    if reference_of(trial):
        attrs["reference"] = reference_of(trial)
    study.enqueue_trial(trial.params, user_attrs=attrs)


@dataclass(frozen=True)
class Tally:
    """Where a study stands.

    Attributes:
        counted: Complete + pruned + failed trials that were not retried.
        running: Trials being evaluated now (including ones whose worker died and was not yet
            detected).
        waiting: Enqueued trials not yet started (references, retries).
        retried: Failed trials that were re-queued (not counted).
    """

    counted: int
    running: int
    waiting: int
    retried: int


def tally(trials: Sequence[FrozenTrial]) -> Tally:
    """Count a study's trials (see :class:`Tally`)."""
    retried: set[int] = set()
    for t in trials:
        retried.update(retry_history(t))
    counted = running = waiting = failed_retried = 0
    for t in trials:
        if t.state == TrialState.RUNNING:
            running += 1
        elif t.state == TrialState.WAITING:
            waiting += 1
        elif t.state == TrialState.FAIL and t.number in retried:
            failed_retried += 1
        else:
            counted += 1
    return Tally(counted, running, waiting, failed_retried)


def study_tally(study: optuna.Study) -> Tally:
    """:func:`tally` of all the study's trials."""
    return tally(study.get_trials(deepcopy=False))


# ---- studies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyRecord:
    """A study's own attributes, read once (see the module docstring for each key)."""

    name: str
    budget: str | None
    budget_settings: dict[str, Any]
    space: str | None
    space_digest: str | None
    seed: int | None
    latency_target: dict[str, Any] | None
    parent: str | None
    base: str | None
    references: dict[str, str]
    hypervolume: dict[str, Any]
    rung: dict[str, Any] | None = None
    promoted: tuple[int, ...] | None = None
    rungs: dict[int, str] = field(default_factory=dict)
    agreement: dict[str, Any] | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord:
        """Read a study's attributes (any version of the record)."""
        a = study.user_attrs
        return cls(
            name=study.study_name,
            budget=a.get("budget"),
            budget_settings=dict(a.get("budget_settings") or {}),
            space=a.get("space"),
            space_digest=a.get("space_digest"),
            seed=a.get("seed"),
            latency_target=a.get("latency_target"),
            parent=a.get("parent"),
            base=a.get("base"),
            references=dict(a.get("references") or {}),
            hypervolume=dict(a.get("hypervolume") or {}),
            rung=a.get("rung"),
            promoted=tuple(a["promoted"]) if "promoted" in a else None,
            rungs={int(r): name for r, name in (a.get("rungs") or {}).items()},
            agreement=a.get("agreement"),
        )

    @property
    def claimed(self) -> bool:
        """True once a run recorded its budget and space on the study."""
        return self.budget is not None

    @property
    def references_enqueued(self) -> bool:
        """True once the reference configurations were enqueued (or found unexpressible)."""
        return bool(self.references)

    def identity(self) -> dict[str, Any]:
        """What a run must share with the study to continue it."""
        keys = ("budget", "space", "space_digest", "seed", "latency_target", "parent", "rung")
        return {key: getattr(self, key) for key in keys}

    @property
    def rung_number(self) -> int:
        """0 for a study that samples its trials, r for rung r of a promotion."""
        return int(self.rung["rung"]) if self.rung else 0

    def latency_of(self) -> str:
        """What the study's latencies are of, in words.

        A study from before latency targets timed the budget's scaled training proxy at the
        budget's latency input.
        """
        target = self.latency_target
        if target is None:
            b = self.budget_settings
            size = b.get("latency_size", "?")
            shape = f"1x{b.get('latency_frames', '?')}x3x{size}x{size}"
            return f"the budget's scaled training proxy at {shape}, measured"
        return describe_target(tuple(target["shape"]), target["source"])

    def psnr_of(self) -> str:
        """What the study's PSNRs are of, in words: where the weights started, how long trained."""
        steps = self.budget_settings.get("steps", "?")
        if self.parent in (None, "scratch"):
            return f"{steps} training steps from each trial's own initialisation"
        return f"inheriting from elastic parent {self.parent}, then {steps} fine-tuning steps"


def study_identity(
    *,
    budget: str,
    space: str,
    space_digest: str,
    seed: int,
    latency_target: dict[str, Any],
    parent: str,
    rung: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The identity a run claims a study with (the keys of :meth:`StudyRecord.identity`);
    ``rung`` only for a rung study."""
    return {
        "budget": budget,
        "space": space,
        "space_digest": space_digest,
        "seed": seed,
        "latency_target": latency_target,
        "parent": parent,
        "rung": rung,
    }


def claim_study(
    study: optuna.Study,
    identity: Mapping[str, Any],
    *,
    budget_settings: Mapping[str, Any],
    base: str,
    metric_names: list[str],
) -> None:
    """Record a new study's identity (budget, space, digest, seed, latency target), budget and
    base preset."""
    for key, value in identity.items():
        if value is not None:
            study.set_user_attr(key, value)
    study.set_user_attr("budget_settings", dict(budget_settings))
    study.set_user_attr("base", base)
    study.set_metric_names(metric_names)


def set_references(study: optuna.Study, status: Mapping[str, str]) -> None:
    """Record which reference configurations were enqueued (or why not)."""
    study.set_user_attr("references", dict(status))


def set_hypervolume(
    study: optuna.Study, *, reference: tuple[float, float], value: float, trials: int
) -> None:
    """Record the published hypervolume figure's reference point, value and trial count."""
    if not math.isfinite(value):
        raise ValueError(f"hypervolume must be finite, got {value}")
    study.set_user_attr(
        "hypervolume", {"reference": list(reference), "value": value, "trials": trials}
    )


def set_promoted(study: optuna.Study, numbers: Sequence[int]) -> None:
    """Record, on a rung study, the trials of the rung below it re-measures (in order)."""
    study.set_user_attr("promoted", list(numbers))


def add_rung(base: optuna.Study, rung: int, name: str) -> None:
    """Record on the rung-0 study that rung ``rung`` is the study ``name``."""
    rungs = {str(r): n for r, n in StudyRecord.of(base).rungs.items()}
    base.set_user_attr("rungs", {**rungs, str(rung): name})


def set_agreement(study: optuna.Study, agreement: Mapping[str, Any]) -> None:
    """Record a rung study's rank agreement with the rung below (Kendall tau per objective)."""
    study.set_user_attr("agreement", dict(agreement))
