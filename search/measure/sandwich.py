"""A parent's sandwich steps shared by several CPU processes (ranks).

On a few CPU cores the short budgets' networks are small and overhead-bound: one process with two
threads trains barely faster than with one, while two one-thread processes together run about
1.7x the forwards of one two-thread process (``benchmarks/fidelity.py``'s shards measured it).
A sandwich step is several independent forward/backward passes on one batch (the whole network,
its smallest child, random children), so the budget's ``parent_ranks`` processes each run a share
of them: rank 0 the whole network (the most expensive), the others the children dealt in turn.
After every step's backward the ranks add their gradients up (``gloo`` all-reduce over a
file store in a temporary folder) and take the same optimiser step, so their weights stay equal;
rank 0 writes its weights, loss curve and timing to that folder for the calling process.

The schedule of sub-networks is drawn once in the calling process, so every rank trains the
same sequence, and each rank seeds itself as :func:`~search.measure.train.train_model` does
(same initial weights, same batches). What differs from one process is the order in which
gradients are summed and the stochastic-depth draws of each sub-network, so the weights agree
with a one-process build closely, not bit for bit: the budget's ``parent_ranks`` is part of a
parent's cache key.
"""

from __future__ import annotations

import datetime
import logging
import pickle
import queue as queue_module
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from model import VRTSpikeConfig
from search.measure.budgets import Budget
from search.measure.train import StepProgress, _prepare, _run_steps

__all__ = ["run_ranks", "share"]

logger = logging.getLogger(__name__)

_TIMEOUT = datetime.timedelta(minutes=10)
"""How long a rank waits for the others in one all-reduce before it gives up."""

Nets = Sequence[VRTSpikeConfig | None]


def share(nets: Nets, rank: int, ranks: int) -> list[VRTSpikeConfig | None]:
    """Rank ``rank``'s part of one step's sub-networks: rank 0 the first (the whole network),
    ranks 1.. the others in turn (one rank: all of them)."""
    if not 1 <= ranks <= len(nets) or not 0 <= rank < ranks:
        raise ValueError(f"rank {rank} of {ranks} cannot share {len(nets)} sub-networks")
    if ranks == 1:
        return list(nets)
    return [nets[0]] if rank == 0 else list(nets[1:][rank - 1 :: ranks - 1])


def _sync(model: nn.Module, loss_sum: float, runs: int) -> float:
    """Add every rank's gradients into ``model``'s; returns the mean loss over all ranks.

    A parameter no rank computed a gradient for keeps none (AdamW then skips it, as it would in
    one process)."""
    params = [p for p in model.parameters() if p.requires_grad]
    flat = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1)
                      for p in params])  # fmt: skip
    stats = torch.tensor([float(p.grad is not None) for p in params] + [loss_sum, runs],
                         dtype=torch.float64)  # fmt: skip
    dist.all_reduce(flat)
    dist.all_reduce(stats)
    offset = 0
    for p, seen in zip(params, stats[:-2].tolist(), strict=True):
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p) if seen > 0 else None
        offset += n
    return float(stats[-2] / stats[-1])


@dataclass(frozen=True)
class _Job:
    """What every rank needs (pickled into each spawned process)."""

    cfg: VRTSpikeConfig
    budget: Budget
    data: Any
    seed: int
    schedule: list[list[VRTSpikeConfig | None]]
    ranks: int
    threads: int
    folder: Path


def _rank(rank: int, job: _Job, messages: Any) -> None:
    """One rank: train its share of every step; rank 0 reports progress and saves the result."""
    torch.set_num_threads(job.threads)
    try:
        dist.init_process_group("gloo", init_method=(job.folder / "store").as_uri(), rank=rank,
                                world_size=job.ranks, timeout=_TIMEOUT)  # fmt: skip
        steps = len(job.schedule)
        s = _prepare(job.cfg, job.budget, job.data, device=torch.device("cpu"), seed=job.seed,
                     init_state=None, steps=steps)  # fmt: skip
        progress = (lambda *a: messages.put(("step", a))) if rank == 0 else None
        curve, seconds, peak = _run_steps(
            s, job.cfg, steps, lambda step: share(job.schedule[step], rank, job.ranks),
            progress, sync=_sync,
        )  # fmt: skip
        if rank == 0:
            torch.save({"state": s.model.state_dict(), "curve": curve, "seconds": seconds,
                        "peak": peak}, job.folder / "rank0.pt")  # fmt: skip
    except Exception as e:  # the caller re-raises it and stops the other ranks
        try:
            pickle.dumps(e)
        except Exception:
            e = RuntimeError(f"sandwich rank {rank}: {type(e).__name__}: {e}")
        messages.put(("error", e))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(
    model: nn.Module,
    cfg: VRTSpikeConfig,
    budget: Budget,
    data: Any,
    *,
    seed: int,
    schedule: list[list[VRTSpikeConfig | None]],
    ranks: int,
    progress: StepProgress | None = None,
) -> tuple[list[float], float, float]:
    """Train ``model`` (built and seeded as the ranks build theirs) through ``schedule`` (one
    list of sub-networks per step) in ``ranks`` processes; loads the trained weights into it.

    Returns:
        (loss per step, training seconds, rank 0's peak memory in MiB), as the one-process
        loop returns them.

    Raises:
        Whatever a rank raised (a non-finite loss, bad data); ``RuntimeError`` if one died.
    """
    threads = max(1, torch.get_num_threads() // ranks)
    logger.info("sandwich over %d processes of %d thread(s) each", ranks, threads)
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="vrtspike-sandwich-") as tmp:
        job = _Job(cfg, budget, data, seed, schedule, ranks, threads, Path(tmp))
        procs = mp.start_processes(_rank, args=(job, messages), nprocs=ranks, join=False,
                                   start_method="spawn")  # fmt: skip
        try:
            done = False
            while not done:
                done = procs.join(timeout=0.5)
                _drain(messages, progress)
            _drain(messages, progress)
        finally:
            for p in procs.processes:
                if p.is_alive():
                    p.terminate()
                p.join()
        out = torch.load(Path(tmp) / "rank0.pt", weights_only=True)
    model.load_state_dict(out["state"])
    return list(out["curve"]), float(out["seconds"]), float(out["peak"])


def _drain(messages: Any, progress: StepProgress | None) -> None:
    """Pass rank 0's step reports to ``progress``; re-raise a rank's error."""
    while True:
        try:
            kind, value = messages.get_nowait()
        except queue_module.Empty:
            return
        if kind == "error":
            raise value
        if progress is not None:
            progress(*value)
