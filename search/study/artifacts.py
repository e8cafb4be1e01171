"""Files a study keeps beside its record: per trial the restored-frames strip and the stage
profile, per study the figures the report publishes. Names come from :mod:`search.study.record`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial

from search.data.images import write_rgb
from search.report.charts import stage_profile_csv, stage_profile_png
from search.study.record import PROFILE_SUFFIX, STRIP_SUFFIX

__all__ = ["TrialArtifacts", "strip_png", "upload_file"]

logger = logging.getLogger(__name__)

Target = optuna.Study | optuna.trial.Trial


def upload_file(
    store: optuna.artifacts.FileSystemArtifactStore, path: Path, target: Target, mimetype: str
) -> None:
    """Attach one file to a study or a running trial."""
    optuna.artifacts.upload_artifact(
        artifact_store=store, file_path=str(path), study_or_trial=target, mimetype=mimetype
    )


def strip_png(preview: Mapping[str, torch.Tensor], path: Path) -> None:
    """Middle frame of a preview clip as ``blurry | restored | sharp``, 8-bit PNG.

    Args:
        preview: ``blurry``, ``restored``, ``sharp``, each (T, 3, H, W) in [0, 1].
        path: The PNG to write.
    """
    t = preview["blurry"].shape[0] // 2
    tiles = [preview[k][t].float().clamp(0, 1) for k in ("blurry", "restored", "sharp")]
    gap = torch.ones(3, tiles[0].shape[1], 2)
    strip = torch.cat([tiles[0], gap, tiles[1], gap, tiles[2]], dim=2)  # (3, H, 3W + 4)
    write_rgb(path, (strip.numpy() * 255 + 0.5).astype(np.uint8))  # (3, H, W)


class TrialArtifacts:
    """Uploads a trial's files (nothing when there is no store, or for a ``FixedTrial``).

    Args:
        store: The study's artifact store (None: no artifacts).
        storage: The study's storage (needed to find a reused trial's files).
    """

    def __init__(
        self,
        store: optuna.artifacts.FileSystemArtifactStore | None,
        storage: optuna.storages.BaseStorage | None,
    ) -> None:
        self.store, self.storage = store, storage

    def _live(self, trial: optuna.trial.BaseTrial) -> bool:
        return self.store is not None and isinstance(trial, optuna.trial.Trial)

    def strip(self, trial: optuna.trial.BaseTrial, preview: Mapping[str, torch.Tensor]) -> None:
        """The restored-frames strip of validation clip 0."""
        if not self._live(trial):
            return
        assert self.store is not None and isinstance(trial, optuna.trial.Trial)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"trial{trial.number}{STRIP_SUFFIX}.png"
            strip_png(preview, path)
            upload_file(self.store, path, trial, "image/png")

    def profile(
        self, trial: optuna.trial.BaseTrial, per_stage_ms: Mapping[str, float], median_ms: float
    ) -> None:
        """The stage profile as a bar chart (``image/png``) and a ``part,ms,share`` CSV table."""
        if not self._live(trial):
            return
        assert self.store is not None and isinstance(trial, optuna.trial.Trial)
        title = f"trial {trial.number}: per-stage ms (median end-to-end {median_ms:.2f} ms)"
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / f"trial{trial.number}{PROFILE_SUFFIX}.png"
            csv = Path(tmp) / f"trial{trial.number}{PROFILE_SUFFIX}.csv"
            stage_profile_png(per_stage_ms, png, title=title)
            stage_profile_csv(per_stage_ms, csv)
            upload_file(self.store, png, trial, "image/png")
            upload_file(self.store, csv, trial, "text/csv")

    def copy_strip(self, trial: optuna.trial.BaseTrial, source: FrozenTrial) -> None:
        """Attach ``source``'s strip (under its own file name) to a trial that reuses its PSNR."""
        if not self._live(trial) or self.storage is None:
            return
        assert self.store is not None and isinstance(trial, optuna.trial.Trial)
        metas = optuna.artifacts.get_all_artifact_meta(source, storage=self.storage)
        with tempfile.TemporaryDirectory() as tmp:
            for meta in metas:
                if meta.filename.endswith(f"{STRIP_SUFFIX}.png"):  # not the source's profile
                    path = Path(tmp) / meta.filename
                    optuna.artifacts.download_artifact(
                        artifact_store=self.store, file_path=str(path), artifact_id=meta.artifact_id
                    )
                    upload_file(self.store, path, trial, "image/png")
