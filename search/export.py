"""The front as a table, and exporting a chosen trial as a YAML config with provenance.

The exported config is the deployment config: the trial's searched knobs applied to the study's
base config (user attribute ``config``). If the budget scaled widths or clip geometry to fit the
machine, the trained proxy (``trained_config``) differs; the provenance block says so, and
``proxy=True`` exports the proxy itself.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from model import VRTSpikeConfig
from model.config import PROVENANCE_KEY
from search.pareto import Policy, SelectionError, select_index
from search.storage import redact_url
from search.study import StudyError

__all__ = ["FrontRow", "front_rows", "reference_rows", "choose_trial", "export_trial"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrontRow:
    """One trial as the ``pareto`` table shows it (speed-up and PSNR change vs the baseline)."""

    number: int
    latency_ms: float
    latency_cv: float | None
    psnr_db: float
    ssim: float | None
    input_psnr_db: float | None
    reference: str
    reused_from: int | None
    speedup: float | None
    delta_psnr_db: float | None
    feasible: bool
    params: int | None


def _baseline(study: optuna.Study) -> FrozenTrial | None:
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("reference") == "baseline":
            return t
    return None


def _row(t: FrozenTrial, base: FrozenTrial | None) -> FrontRow:
    a = t.user_attrs
    lat, psnr = t.values
    return FrontRow(
        number=t.number,
        latency_ms=lat,
        latency_cv=(a.get("latency") or {}).get("cv"),
        psnr_db=psnr,
        ssim=a.get("ssim"),
        input_psnr_db=a.get("input_psnr_db"),
        reference=a.get("reference", ""),
        reused_from=a.get("reused_from"),
        speedup=base.values[0] / lat if base is not None and lat > 0 else None,
        delta_psnr_db=psnr - base.values[1] if base is not None else None,
        feasible=bool(a.get("feasible", True)),
        params=a.get("params"),
    )


def front_rows(study: optuna.Study) -> list[FrontRow]:
    """The feasible Pareto front (``study.best_trials``), sorted by latency."""
    base = _baseline(study)
    rows = [_row(t, base) for t in study.best_trials]
    return sorted(rows, key=lambda r: (r.latency_ms, -r.psnr_db))


def reference_rows(study: optuna.Study) -> list[FrontRow]:
    """The completed reference trials (baseline, scheme A, scheme B), on the front or not."""
    base = _baseline(study)
    refs = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("reference")
    ]
    return [_row(t, base) for t in sorted(refs, key=lambda t: t.number)]


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


def export_trial(
    study: optuna.Study,
    trial: FrozenTrial,
    out: str | Path,
    *,
    storage_url: str,
    policy: str,
    proxy: bool = False,
) -> VRTSpikeConfig:
    """Write the trial's config in the guide's YAML format plus a ``PROVENANCE`` block.

    The file is written to a temporary name and renamed, so a failure leaves nothing behind.
    ``VRTSpikeConfig.from_yaml(out)`` rebuilds exactly the returned config.
    """
    a = trial.user_attrs
    key = "trained_config" if proxy else "config"
    if key not in a:
        raise StudyError(f"trial {trial.number} has no stored {key}; cannot rebuild it")
    cfg = VRTSpikeConfig.from_dict(a[key])
    scaled = a.get("trained_config") != a.get("config")
    provenance: dict[str, Any] = {
        "study": study.study_name,
        "storage": redact_url(storage_url),
        "trial": trial.number,
        "selected_by": "trial number" if policy == "trial" else policy,
        "values": {"latency_ms": trial.values[0], "psnr_db": trial.values[1]},
        "ssim": a.get("ssim"),
        "input_psnr_db": a.get("input_psnr_db"),
        "reference": a.get("reference"),
        "reused_psnr_from_trial": a.get("reused_from"),
        "budget": (a.get("budget") or {}).get("name"),
        "latency_input": list((a.get("latency") or {}).get("rgb_shape", [])),
        "device": a.get("device"),
        "device_name": a.get("device_name"),
        "versions": a.get("versions"),
        "seed": a.get("seed"),
        "config_exported": "trained proxy" if proxy else "deployment config",
        "measured_on_scaled_proxy": scaled,
    }
    if scaled and not proxy:
        provenance["note"] = (
            "the values were measured on the budget's scaled proxy (trained_config); this file is "
            "the full-size deployment model with the same searched knobs"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(cfg.to_yaml_text(extra={PROVENANCE_KEY: provenance}))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("exported trial %d of %s to %s", trial.number, study.study_name, out)
    return cfg
