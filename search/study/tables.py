"""Latency tables for a whole search space, built ahead of a study (``run_study.py latency-table``).

A study fills its tables on first need, trial by trial. Building them ahead measures, once, every
part that the space's configurations use at the target: the reference configurations and
``samples`` random ones cover every window, AMP dtype and stage of the space, and the chunk plans
a random sample reaches (a plan none of them reached is measured when a trial first needs it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import optuna
import torch

from model import VRTSpikeConfig, load_preset
from model.errors import ConfigError
from search.measure.latency_model import LatencyTable, Probe, probes_of, table_for
from search.study.space import SearchSpace

__all__ = ["build_space_tables", "space_configs"]

logger = logging.getLogger(__name__)

Report = Callable[[str], None]


def space_configs(space: SearchSpace, *, samples: int, seed: int = 0) -> list[VRTSpikeConfig]:
    """The reference configurations the space expresses, then ``samples`` random valid ones."""
    out = []
    for name in ("baseline", "scheme_a", "scheme_b"):
        cfg = load_preset(name)
        if space.params_for(cfg)[0] is not None:
            out.append(cfg)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(samples):
        trial = study.ask()
        try:
            out.append(space.sample(trial))
        except ConfigError:  # an impossible combination; the space's trials skip it too
            continue
        finally:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return out


def build_space_tables(
    space: SearchSpace,
    shape: tuple[int, int, int],
    device: torch.device | str,
    *,
    samples: int,
    seed: int = 0,
    report: Report | None = None,
) -> list[tuple[LatencyTable, int]]:
    """Measure every part the space's configurations need at ``shape``; returns, per table, the
    table and the parts measured now (0 where it was complete)."""
    tables: dict[str, tuple[LatencyTable, list[Probe]]] = {}
    for cfg in space_configs(space, samples=samples, seed=seed):
        table = table_for(cfg, shape, device)
        tables.setdefault(str(table.path), (table, []))[1].extend(probes_of(cfg, shape, device))
    out = []
    for table, probes in tables.values():
        probes = list(dict.fromkeys(probes))
        tag = f"{table.key.dtype} table"

        def progress(done: int, todo: int, what: str, seconds: float, tag: str = tag) -> None:
            if report is not None:
                report(f"{tag} [{done}/{todo}] {what} ({seconds:.1f} s)")

        _, measured = table.ensure(probes, progress)
        logger.info("%s: %d parts, %d measured now", table.path, len(probes), measured)
        out.append((table, measured))
    return out
