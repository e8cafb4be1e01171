"""The elastic parent of a search space: trained once, inherited by every trial.

A parent is the space's largest configuration (every depth and window at the top of its range,
fused at every stage some candidate fuses at) at the budget's training widths, trained with
sandwich sampling as BigNAS and Once-for-All train theirs: each step runs the largest network,
the smallest (every depth and window at the bottom of its range) and ``budget.parent_subnets``
random candidates of the space on the same batch, with the parent's own weights
(:func:`search.inherit.as_child`), and their gradients add up. On the CPU the budget's
``parent_ranks`` processes share each step's sub-networks (:mod:`search.measure.sandwich`).
Afterwards every sub-network is a usable network with the shared weights; a trial takes its
weights (:func:`search.inherit.child_state_dict`) and fine-tunes them for the budget's steps.

The cache is ``studies/parents/`` (``$VRTSPIKE_PARENTS``: one folder every worker reaches when
they run on several machines), one file per key: the space and its file's digest, the budget's
settings, the seed, the data, the torch version and the ``model`` package's source digest. A file
is written whole (a temporary file renamed) under an exclusive lock of the host, so the workers
of a host build it once; the runner also builds it holding the storage gate, so workers on other
machines wait for it instead of training it again. The file has the format of a training
checkpoint (``python -m search.train_cli``), ``{"config", "state_dict", "budget", "result"}``
plus ``"key"``; ``--parent`` takes either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch

from model import VRTSpikeConfig
from model.errors import ConfigError, VRTSpikeError
from search.files import atomic_path
from search.inherit import (
    FREE,
    SHRINKABLE,
    InheritError,
    as_child,
    check_covered,
    child_state_dict,
)
from search.measure.budgets import Budget, apply_budget
from search.measure.checkpoint import load_checkpoint
from search.measure.device import library_versions, model_code_digest
from search.measure.train import StepProgress, TrainDataError, evaluate, train_model
from search.study.locks import host_lock
from search.study.space import Param, SearchSpace

__all__ = ["PARENTS_ENV", "Parent", "ParentError", "default_parent_dir", "elastic_bounds"]
__all__ += ["ensure_parent", "load_parent", "parent_file", "parent_key"]

logger = logging.getLogger(__name__)

PARENTS_ENV = "VRTSPIKE_PARENTS"
_FUSE_STAGES = "MODEL.FUSE.STAGES"


class ParentError(VRTSpikeError):
    """A parent that cannot be built or used: a space it cannot cover, an unreadable file, a
    checkpoint that does not cover the space (the message names the key)."""


def default_parent_dir() -> Path:
    """``$VRTSPIKE_PARENTS`` if set, else ``studies/parents`` under the cwd."""
    env = os.environ.get(PARENTS_ENV)
    return Path(env) if env else Path.cwd() / "studies" / "parents"


# ---- the space's extremes ----------------------------------------------------------------------


def _stage_union(p: Param) -> list[int]:
    return sorted({s for stages in p.candidate_values() for s in stages})


def _extreme_value(space: SearchSpace, p: Param, base_value: Any, largest: bool) -> Any:
    if p.path.startswith(SHRINKABLE):
        values = p.candidate_values()
        return max(values) if largest else min(values)
    if p.path == _FUSE_STAGES:
        return _stage_union(p)  # fusion placement is sampled; both extremes fuse where any may
    if p.path.startswith(FREE):
        return base_value
    raise ParentError(
        f"space {space.name} searches {p.path}, which a parent cannot cover: inheritance shrinks "
        f"only {', '.join(SHRINKABLE)} (use --from-scratch)"
    )


def elastic_bounds(space: SearchSpace) -> tuple[VRTSpikeConfig, VRTSpikeConfig]:
    """(largest, smallest) deployment configs of the space, both in fp32.

    Raises:
        ParentError: the space searches a key inheritance cannot cover (e.g. widths or heads).
    """
    out = []
    for largest in (True, False):
        cfg = space.base_config()
        for p in space.params:
            if all(cfg.get(path) == value for path, value in p.when):
                value = _extreme_value(space, p, cfg.get(p.path), largest)
                cfg = cfg.with_overrides({p.path: value})
        out.append(cfg.with_overrides({"TRAIN.AMP_ENABLED": False}))
    return out[0], out[1]


class _Sandwich:
    """Per step: the whole parent, its smallest child and ``n`` random children of the space."""

    def __init__(
        self, space: SearchSpace, budget: Budget, parent: VRTSpikeConfig, *, n: int, seed: int
    ) -> None:
        self.space, self.budget, self.parent, self.n = space, budget, parent, n
        self.smallest = apply_budget(elastic_bounds(space)[1], budget, widths_of=parent)
        self._study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))

    def _random(self) -> VRTSpikeConfig:
        while True:
            trial = self._study.ask()
            try:
                cfg = self.space.sample(trial)
            except ConfigError:  # an impossible combination; the space's trials skip it too
                continue
            finally:
                self._study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return apply_budget(cfg, self.budget, widths_of=self.parent)

    def __call__(self, step: int) -> Sequence[VRTSpikeConfig | None]:
        return [None, self.smallest, *(self._random() for _ in range(self.n))]


# ---- the parent ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parent:
    """A trained parent: its (training) config and weights, where it came from, what it scored.

    Attributes:
        cfg: The config the weights belong to (the budget's widths for a built parent; the
            checkpoint's own for a user's).
        state: Its state dict (CPU tensors).
        key: Digest of the cache key (a built parent), or ``file:`` and the digest of the
            file's bytes (a user's checkpoint, ``--parent``).
        path: The file it was read from or written to.
        result: What its build measured (``psnr_db``, ``smallest_psnr_db``...), or the
            checkpoint's own result.
    """

    cfg: VRTSpikeConfig
    state: Mapping[str, torch.Tensor] = field(repr=False)
    key: str
    path: Path
    result: Mapping[str, Any] = field(repr=False)

    def child_config(self, cfg: VRTSpikeConfig, budget: Budget) -> VRTSpikeConfig:
        """What a trial of deployment config ``cfg`` trains: the budget's settings, the parent's
        widths."""
        return apply_budget(cfg, budget, widths_of=self.cfg)

    def child_state(self, child: VRTSpikeConfig, *, seed: int) -> dict[str, torch.Tensor]:
        """The child's inherited weights (:func:`~search.inherit.child_state_dict`)."""
        return child_state_dict(self.cfg, self.state, child, seed=seed)

    def check_covers(self, space: SearchSpace, budget: Budget) -> None:
        """Raise :class:`ParentError` naming the key if some candidate of the space is not
        covered (it suffices that the largest is: every other shrinks from it)."""
        largest = self.child_config(elastic_bounds(space)[0], budget)
        try:
            check_covered(self.cfg, largest)
        except InheritError as e:
            raise ParentError(f"{self.path} does not cover space {space.name}: {e}") from e

    def describe(self) -> dict[str, Any]:
        """What a trial and a study record about the parent."""
        return {"key": self.key, "path": str(self.path)}


_NOT_PARENT = ("description", "steps", "finetune_lr", "latency_frames", "latency_size")
_NOT_PARENT += ("latency_warmup", "latency_repeats", "latency_blocks")
"""Budget fields that only a trial uses: they do not change the parent."""


def parent_key(space: SearchSpace, budget: Budget, *, seed: int, data: str) -> dict[str, Any]:
    """Everything a built parent depends on."""
    settings = {k: v for k, v in budget.to_dict().items() if k not in _NOT_PARENT}
    return {
        "space": space.name,
        "space_digest": hashlib.sha256(Path(space.source).read_bytes()).hexdigest()[:12],
        "budget": settings,
        "seed": seed,
        "data": data,
        "torch": str(library_versions()["torch"]),
        "model_code": model_code_digest(),
    }


def _digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def load_parent(path: str | Path) -> Parent:
    """Read a parent file or a user's checkpoint (``{"config", "state_dict", ...}``).

    Raises:
        ParentError: unreadable, not a checkpoint, or its weights do not fit its config.
    """
    path = Path(path)
    try:
        payload = load_checkpoint(path, required=("config", "state_dict"))
    except TrainDataError as e:
        raise ParentError(str(e)) from e
    try:
        cfg = VRTSpikeConfig.from_dict(payload["config"])
        child_state_dict(cfg, payload["state_dict"], cfg)  # every weight of its own config
    except VRTSpikeError as e:
        raise ParentError(f"{path}: {e}") from e
    key = payload.get("key")
    if key is None:  # a user's checkpoint: identified by its bytes
        key = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    else:
        key = _digest(key)
    return Parent(cfg, payload["state_dict"], key, path, dict(payload.get("result") or {}))


def _write(path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` whole: a temporary file beside ``path``, then renamed over it."""
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)


def _build(
    space: SearchSpace,
    budget: Budget,
    data: Any,
    *,
    device: torch.device,
    seed: int,
    progress: StepProgress | None,
) -> tuple[VRTSpikeConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Train the parent; returns its config, its state and what it scored."""
    started = time.perf_counter()
    cfg = apply_budget(elastic_bounds(space)[0], budget)
    sandwich = _Sandwich(space, budget, cfg, n=budget.parent_subnets, seed=seed)
    ranks = budget.parent_ranks if device.type == "cpu" else 1
    trained = train_model(
        cfg, budget, data, device=device, seed=seed, steps=budget.parent_steps,
        subnets=sandwich, progress=progress, ranks=ranks,
    )  # fmt: skip
    with as_child(trained.model, sandwich.smallest) as smallest:  # type: ignore[arg-type]
        scores, _ = evaluate(
            smallest, data.val, device=device, amp=None, num_clips=budget.num_val_clips
        )
    r = trained.result.to_dict()
    r.pop("loss_curve")
    result = {
        **r,
        "subnets": budget.parent_subnets,
        "ranks": ranks,
        "smallest_psnr_db": scores["psnr_db"],
        "build_seconds": time.perf_counter() - started,
    }
    state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
    return cfg, state, result


def parent_file(
    space: SearchSpace, budget: Budget, *, seed: int, data_name: str, folder: Path | None = None
) -> tuple[Path, str]:
    """Where the space's parent for this budget, seed and data is cached, and its key's digest.

    Raises:
        ParentError: the space searches a key no parent covers.
    """
    elastic_bounds(space)  # refuse an uncoverable space before anything waits or trains
    digest = _digest(parent_key(space, budget, seed=seed, data=data_name))
    folder = folder or default_parent_dir()
    return folder / f"{space.name}-{budget.name}-s{seed}-{digest}.pt", digest


def ensure_parent(
    space: SearchSpace,
    budget: Budget,
    data: Any,
    *,
    device: torch.device | str,
    seed: int,
    data_name: str,
    folder: Path | None = None,
    progress: StepProgress | None = None,
) -> tuple[Parent, bool]:
    """The space's parent for this budget and seed: read from the cache, or built and cached.

    Returns:
        (the parent, True if it was built by this call).

    Raises:
        ParentError: the space searches a key no parent covers.
    """
    path, digest = parent_file(space, budget, seed=seed, data_name=data_name, folder=folder)
    key = parent_key(space, budget, seed=seed, data=data_name)
    with host_lock("parent", str(path.resolve())):
        if path.exists():
            logger.info("parent %s: cached", path)
            return load_parent(path), False
        logger.info("parent %s: building (%d sandwich steps)", path, budget.parent_steps)
        cfg, state, result = _build(
            space, budget, data, device=torch.device(device), seed=seed, progress=progress
        )
        payload = {"config": cfg.to_dict(), "state_dict": state, "budget": budget.to_dict(),
                   "result": result, "key": key}  # fmt: skip
        _write(path, payload)
    return Parent(cfg, state, digest, path, result), True
