"""Exporting a chosen trial as a YAML config with provenance.

The exported config is the deployment config: the trial's searched knobs applied to the study's
base config (the record's ``config``). If the budget scaled widths or clip geometry to fit the
machine, the trained proxy (``trained_config``) differs; the provenance block says so, and
``proxy=True`` exports the proxy itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from model import VRTSpikeConfig
from model.config import PROVENANCE_KEY
from search.files import atomic_path
from search.report.pareto import Policy, SelectionError, select_index
from search.study.record import StudyRecord, TrialRecord
from search.study.storage import StorageURL, StudyError

__all__ = ["choose_trial", "export_trial", "provenance"]

logger = logging.getLogger(__name__)


def choose_trial(
    study: optuna.Study,
    *,
    policy: Policy = "knee",
    within_db: float | None = None,
    max_latency_ms: float | None = None,
    trial_number: int | None = None,
) -> FrozenTrial:
    """Pick the trial to export: an explicit number, or a policy over the feasible front.

    Raises:
        StudyError: no such (completed) trial; SelectionError: empty front or no match.
    """
    if trial_number is not None:
        trials = study.get_trials(deepcopy=False)
        if not 0 <= trial_number < len(trials) or trials[trial_number].state != TrialState.COMPLETE:
            raise StudyError(
                f"trial {trial_number} of study {study.study_name!r} is not a completed trial"
            )
        return trials[trial_number]
    front = study.best_trials
    if not front:
        raise SelectionError(f"study {study.study_name!r} has no finished feasible trial to export")
    points = [(t.values[0], t.values[1]) for t in front]
    return front[select_index(points, policy, within_db=within_db, max_latency_ms=max_latency_ms)]


def provenance(
    study: optuna.Study, trial: TrialRecord, *, storage: StorageURL, policy: str, proxy: bool
) -> dict[str, Any]:
    """The ``PROVENANCE`` block of an export: where the config came from and what it measured."""
    out: dict[str, Any] = {
        "study": study.study_name,
        "storage": storage.redacted,
        "trial": trial.number,
        "selected_by": "trial number" if policy == "trial" else policy,
        "values": {"latency_ms": trial.latency_ms, "psnr_db": trial.psnr_db},
        "ssim": trial.ssim,
        "input_psnr_db": trial.input_psnr_db,
        "reference": trial.reference or None,
        "rung": StudyRecord.of(study).rung_number,
        "promoted_from_trial": trial.promoted_from,
        "reused_psnr_from_trial": trial.reused_from,
        "inherit": trial.inherit,
        "budget": trial.budget.get("name") or StudyRecord.of(study).budget,
        "latency_input": list(trial.latency_input),
        "latency_of": trial.latency_of,
        "device": trial.device,
        "device_name": trial.device_name,
        "versions": trial.versions,
        "seed": trial.seed,
        "config_exported": "trained proxy" if proxy else "deployment config",
        "measured_on_scaled_proxy": trial.scaled_proxy,
    }
    if trial.scaled_proxy and not proxy:
        measured = "psnr_db was" if trial.latency_target else "the values were"
        out["note"] = (
            f"{measured} measured on the budget's scaled proxy (trained_config); this file is "
            "the full-size deployment model with the same searched knobs"
        )
    return out


def export_trial(
    study: optuna.Study,
    trial: FrozenTrial,
    out: str | Path,
    *,
    storage: StorageURL,
    policy: str,
    proxy: bool = False,
) -> VRTSpikeConfig:
    """Write the trial's config in the guide's YAML format plus a ``PROVENANCE`` block.

    The file is written to a temporary name and renamed, so a failure leaves nothing behind.
    ``VRTSpikeConfig.from_yaml(out)`` rebuilds exactly the returned config.
    """
    rec = TrialRecord.of(trial)
    stored = rec.trained_config if proxy else rec.config
    if stored is None:
        what = "trained proxy" if proxy else "deployment config"
        raise StudyError(f"trial {trial.number} has no stored {what}; cannot rebuild it")
    cfg = VRTSpikeConfig.from_dict(stored)
    block = provenance(study, rec, storage=storage, policy=policy, proxy=proxy)
    with atomic_path(out) as tmp:
        tmp.write_text(cfg.to_yaml_text(extra={PROVENANCE_KEY: block}))
    logger.info("exported trial %d of %s to %s", trial.number, study.study_name, out)
    return cfg
