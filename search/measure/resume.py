"""Resumable training: the state of a run between two optimiser steps, saved and restored.

A long training (a fidelity truth job runs for about an hour on CPU) saves, every few steps, all
that the rest of the run depends on: the model, optimiser, scheduler and gradient-scaler states,
the batch stream's position and generator, the global RNGs (Python, NumPy, torch, CUDA), the
loss curve so far, the training seconds spent and the peak memory. Restored into a freshly
prepared run of the same configuration, seed and step count, it continues bit-identically on
the CPU at a fixed thread count (the remaining steps see the same batches, dropout masks and
optimiser moments as an uninterrupted run).

The file is written to a temporary name and renamed over the old one, so a run killed while
saving keeps the previous state. It records what run it belongs to (:class:`RunIdentity`); a
state of another run is refused, not silently continued.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.errors import VRTSpikeError
from search.files import atomic_path

__all__ = ["ResumeError", "RunIdentity", "capture_rng", "load_run_state", "restore_rng"]
__all__ += ["read_torch", "save_run_state"]

logger = logging.getLogger(__name__)

_FORMAT = 1


class ResumeError(VRTSpikeError, ValueError):
    """A saved training state is unreadable or belongs to another run (the message says which)."""


@dataclass(frozen=True)
class RunIdentity:
    """What makes two trainings the same run: a state saved by one resumes only the other.

    Attributes:
        config: The trained configuration as a dict (``VRTSpikeConfig.to_dict()``).
        seed: The training seed.
        steps: Optimiser steps of the whole run (the schedule spans them).
        budget: The budget's name.
        device: The device type (``cpu`` / ``cuda``).
    """

    config: dict[str, Any]
    seed: int
    steps: int
    budget: str
    device: str


def capture_rng() -> dict[str, Any]:
    """The global random states: Python's, NumPy's legacy one, torch's and every CUDA device's."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _as_tuple(value: Any) -> Any:
    """``random.setstate`` wants tuples where a saved state may hold lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def restore_rng(state: dict[str, Any]) -> None:
    """Set the global random states to what :func:`capture_rng` returned."""
    random.setstate(_as_tuple(state["python"]))
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def read_torch(path: str | Path, what: str, error: type[Exception]) -> Any:
    """``torch.load`` of ``path`` (weights only, tensors on the CPU); an unreadable file raises
    ``error("<path>: cannot read <what> (<why>)")``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt file raises pickle, struct, EOF... errors
        why = " ".join(str(err).split())[:300]
        raise error(f"{path}: cannot read {what} ({why})") from err


def save_run_state(path: Path, identity: RunIdentity, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists and dicts of them) for ``identity``,
    atomically: a temporary file in the same folder, then renamed over ``path``."""
    with atomic_path(path) as tmp:
        torch.save({"format": _FORMAT, "identity": asdict(identity), "state": state}, tmp)


def load_run_state(path: Path, identity: RunIdentity) -> dict[str, Any] | None:
    """The state saved at ``path`` for ``identity``; None if there is no file.

    Raises:
        ResumeError: the file is unreadable, of another format, or of another run.
    """
    if not path.exists():
        return None
    payload = read_torch(path, "the saved training state", ResumeError)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ResumeError(f"{path}: not a training state of format {_FORMAT}")
    saved = payload.get("identity", {})
    wanted = asdict(identity)
    differ = sorted(k for k in wanted if saved.get(k) != wanted[k])
    if differ:
        raise ResumeError(f"{path}: the saved training state is of another run (its "
                          f"{', '.join(differ)} differ); delete it to start afresh")  # fmt: skip
    return payload["state"]
