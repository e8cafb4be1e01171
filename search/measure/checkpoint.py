"""Training checkpoints: ``{"config", "state_dict", "budget", "result"}`` written and read.

``python -m search.train_cli`` writes them; ``--init`` and an elastic parent (``--parent``) read
them. ``VRTSpikeConfig.from_dict(ckpt["config"])`` rebuilds exactly the saved network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model import VRTSpikeConfig
from search.measure.budgets import Budget
from search.measure.resume import read_torch
from search.measure.train import TrainDataError, TrainedModel

__all__ = ["load_checkpoint", "save_checkpoint"]

_KEYS = ("config", "state_dict", "budget", "result")


def save_checkpoint(
    path: str | Path, trained: TrainedModel, *, cfg: VRTSpikeConfig, budget: Budget
) -> None:
    """Write ``{"config", "state_dict", "budget", "result"}`` (config, budget, result as dicts).

    ``cfg`` is the configuration that was trained (after :func:`apply_budget`), so
    ``VRTSpikeConfig.from_dict(ckpt["config"])`` rebuilds exactly the saved network.
    """
    payload = {
        "config": cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in trained.model.state_dict().items()},
        "budget": budget.to_dict(),
        "result": trained.result.to_dict(),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def load_checkpoint(path: str | Path, *, required: tuple[str, ...] = _KEYS) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    Args:
        path: The file.
        required: Keys it must have (default: all four of a training checkpoint).

    Raises:
        TrainDataError: unreadable file or not a checkpoint with those keys.
    """
    payload = read_torch(path, "checkpoint", TrainDataError)
    if not isinstance(payload, dict) or set(required) - set(payload):
        raise TrainDataError(f"{path}: not a checkpoint (needs keys {list(required)})")
    return payload
