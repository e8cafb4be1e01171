"""Deployment latency you can trust: synchronised timing, robust statistics, per-stage profile.

:func:`measure_latency`: eval + inference mode + the config's AMP, inputs already on the device,
glibc malloc tuned on CPU (:func:`tune_malloc`); ``warmup`` untimed forwards; blocks of
``repeats`` synchronised forwards (CUDA events on GPU, ``perf_counter_ns`` otherwise) summarised
by median, p90 and CV (std / mean), a block above ``cv_threshold`` re-measured, the quietest kept
and flagged ``noisy`` if it stays above; then a separate profiling pass (never mixed into those
timings) that synchronises at the entry and exit of every model part, ``other`` = end-to-end
minus the parts, with ``stage_sum_error`` saying how far the parts' sum lies from the unperturbed
median; peak memory from the CUDA allocator, or on CPU parameters + inputs + the peak of live
tensor storage during one forward (tracked at the dispatcher).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from search.measure.device import amp_name, autocast, device_name, resolve_amp_dtype, synchronize

__all__ = ["Latency", "PeakStorage", "SampleStats", "deploy_mode", "measure_latency"]
__all__ += ["call_timer", "profile_parts", "repeat_until_stable", "summarize_samples"]
__all__ += ["tune_malloc"]

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _INT_MAX = -1, -4, 2**31 - 1  # glibc mallopt parameters
_MALLOC_TUNED: bool | None = None


@dataclass(frozen=True)
class SampleStats:
    """Robust summary of timed samples (milliseconds)."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    cv: float
    samples_ms: tuple[float, ...]


@dataclass(frozen=True)
class Latency:
    """One latency measurement of a model at a fixed input shape.

    Attributes:
        median_ms: Median forward time of the kept block (also ``p90_ms``, ``mean_ms``, ``cv`` =
            population std / mean, and its raw ``samples_ms``); ``repeats`` runs per block.
        peak_mem_mb: Peak memory in MiB (see the module doc), None if not measured.
        per_stage_ms: Median ms per model part plus ``other``, from the profiling pass.
        noisy: Every block had ``cv > cv_threshold``; ``attempts``: blocks run.
        profile_total_ms: Median end-to-end ms of the profiling pass.
        stage_sum_error: ``sum(per_stage_ms) / median_ms - 1`` (0.02: the parts sum 2 % high).
        device: ``cpu``, ``cuda:0``...; ``device_name``: CPU model or GPU name; ``threads``:
            ``torch.get_num_threads()``; ``amp``: autocast dtype name or None.
        rgb_shape: (B, T, 3, H, W); ``spike_shape``: (B, T, K, H, W).
        loadavg: 1-minute load average after the timing (None where unknown): a CPU
            measurement taken while ``loadavg`` exceeds the core count is not to be trusted.
    """

    median_ms: float
    p90_ms: float
    cv: float
    repeats: int
    peak_mem_mb: float | None
    per_stage_ms: dict[str, float] = field(hash=False)
    noisy: bool
    attempts: int
    profile_total_ms: float | None
    stage_sum_error: float | None
    mean_ms: float
    samples_ms: tuple[float, ...]
    device: str
    device_name: str
    threads: int
    amp: str | None
    rgb_shape: tuple[int, ...]
    spike_shape: tuple[int, ...]
    loadavg: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        d = asdict(self)
        for key in ("samples_ms", "rgb_shape", "spike_shape"):
            d[key] = list(d[key])
        d["per_stage_ms"] = dict(self.per_stage_ms)
        return d


def tune_malloc() -> bool:
    """Stop glibc from returning freed memory to the system; once per process, logged.

    ``M_MMAP_MAX = 0`` (big blocks come from the heap, not from fresh ``mmap`` pages that fault
    on every touch) and ``M_TRIM_THRESHOLD = INT_MAX`` (the heap is never trimmed); the same is
    exported as ``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_`` for subprocesses. The process
    keeps its peak footprint. Returns True when glibc accepted both settings.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED is not None:
        return _MALLOC_TUNED
    os.environ.setdefault("MALLOC_MMAP_MAX_", "0")
    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(_INT_MAX))
    try:
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
    except (AttributeError, OSError):
        ok = False
    _MALLOC_TUNED = ok
    if ok:
        logger.info("malloc tuned: M_MMAP_MAX=0, M_TRIM_THRESHOLD=%d", _INT_MAX)
    else:
        logger.warning("malloc tuning unavailable (not glibc); CPU latency may be noisier")
    return ok


def summarize_samples(samples_ms: Sequence[float]) -> SampleStats:
    """Median, p90 (linear interpolation), mean and CV of timed samples."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples to summarise")
    mean = float(x.mean())
    cv = float(x.std() / mean) if mean > 0 else 0.0
    return SampleStats(
        median_ms=float(np.median(x)),
        p90_ms=float(np.percentile(x, 90)),
        mean_ms=mean,
        cv=cv,
        samples_ms=tuple(float(v) for v in x),
    )


def repeat_until_stable(
    time_once: Callable[[], float],
    *,
    repeats: int,
    cv_threshold: float = 0.05,
    max_attempts: int = 3,
) -> tuple[SampleStats, int, bool]:
    """Time blocks of ``repeats`` runs until one block has ``cv <= cv_threshold``.

    ``time_once`` runs the workload once and returns its time in ms; ``repeats`` >= 2 runs per
    block, at most ``max_attempts`` blocks. Returns (the stats of the block with the lowest CV,
    blocks run, noisy flag = even that block has ``cv > cv_threshold``).
    """
    if repeats < 2 or max_attempts < 1:
        raise ValueError(f"need repeats >= 2 and max_attempts >= 1, got {repeats}, {max_attempts}")
    best: SampleStats | None = None
    attempt = 0
    for attempt in range(1, max_attempts + 1):
        stats = summarize_samples([time_once() for _ in range(repeats)])
        if best is None or stats.cv < best.cv:
            best = stats
        if stats.cv <= cv_threshold:
            break
        logger.info("noisy block (cv %.3f > %.3f), attempt %d", stats.cv, cv_threshold, attempt)
    assert best is not None
    noisy = best.cv > cv_threshold
    if noisy:
        logger.warning("latency stayed noisy after %d blocks (best cv %.3f)", attempt, best.cv)
    return best, attempt, noisy


@contextlib.contextmanager
def deploy_mode(model: nn.Module, device: torch.device, amp: torch.dtype | None) -> Iterator[None]:
    """eval + inference mode + autocast; restores the training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(device, amp):
            yield
    finally:
        model.train(was_training)


def call_timer(run: Callable[[], object], device: torch.device) -> Callable[[], float]:
    """A callable running ``run()`` once, synchronised, and returning its time in ms (CUDA
    events on a GPU, ``perf_counter_ns`` elsewhere)."""
    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def time_cuda() -> float:
            start.record()
            run()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        return time_cuda

    def time_host() -> float:
        synchronize(device)
        t0 = time.perf_counter_ns()
        run()
        synchronize(device)
        return (time.perf_counter_ns() - t0) / 1e6

    return time_host


def profile_parts(
    model: nn.Module, rgb: torch.Tensor, spike: torch.Tensor, *, runs: int
) -> tuple[dict[str, float], float | None]:
    """Per-part times from synchronised forwards through ``model.set_part_timer``.

    Call it inside the deployment mode (eval, inference, autocast). ``model`` implements
    ``part_names()`` and ``set_part_timer(timer | None)``; ``rgb`` (B, T, 3, H, W) and ``spike``
    (B, T, K, H, W) are on its device. Each part is synchronised at entry and exit; per run,
    ``other`` = end-to-end minus the parts.

    Returns:
        (part -> median ms over ``runs`` forwards, incl. ``other``; median end-to-end ms), or
        ``({}, None)`` when ``runs`` is 0 or the model has no part timer.
    """
    if runs <= 0 or not (hasattr(model, "set_part_timer") and hasattr(model, "part_names")):
        return {}, None
    device = rgb.device
    acc: dict[str, float] = {}

    @contextlib.contextmanager
    def timer(name: str) -> Iterator[None]:
        synchronize(device)
        t0 = time.perf_counter_ns()
        try:
            yield
        finally:
            synchronize(device)
            acc[name] = acc.get(name, 0.0) + (time.perf_counter_ns() - t0) / 1e6

    names = tuple(model.part_names())
    per_run: list[dict[str, float]] = []
    totals: list[float] = []
    model.set_part_timer(timer)
    try:
        for _ in range(runs):
            acc.clear()
            synchronize(device)
            t0 = time.perf_counter_ns()
            model(rgb, spike)
            synchronize(device)
            total = (time.perf_counter_ns() - t0) / 1e6
            row = {**{n: 0.0 for n in names}, **acc, "other": total - sum(acc.values())}
            per_run.append(row)
            totals.append(total)
    finally:
        model.set_part_timer(None)
    keys = list(per_run[0])
    medians = {k: float(np.median([r.get(k, 0.0) for r in per_run])) for k in keys}
    return medians, float(np.median(totals))


class PeakStorage(TorchDispatchMode):
    """Context manager: live bytes of tensor storages created inside it and their ``peak``.

    Works on any device (seen at the dispatcher, below autograd and autocast); storages that
    existed before entering (parameters, inputs) are not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            st = t.untyped_storage()
            key, nbytes = st.data_ptr(), st.nbytes()
            if nbytes == 0 or key in self._seen:
                continue
            self._seen.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(st, self._release, key, nbytes)
        return out


def _peak_mb(model: nn.Module, rgb: torch.Tensor, spike: torch.Tensor) -> float | None:
    """Peak memory in MiB: the CUDA allocator's peak since the last reset, or on the CPU the
    parameters, buffers and inputs plus the activation peak of one forward (None elsewhere)."""
    if rgb.device.type == "cuda":
        return torch.cuda.max_memory_allocated(rgb.device) / 2**20
    if rgb.device.type != "cpu":
        return None
    held = [*model.parameters(), *model.buffers(), rgb, spike]
    resident = sum(t.numel() * t.element_size() for t in held)
    with PeakStorage() as tracker:
        model(rgb, spike)
    return (resident + tracker.peak) / 2**20


def _timed(
    model: nn.Module,
    rgb: torch.Tensor,
    spike: torch.Tensor,
    *,
    warmup: int,
    repeats: int,
    cv_threshold: float,
    max_attempts: int,
) -> tuple[SampleStats, int, bool]:
    """Warm up, then time blocks of synchronised forwards (:func:`repeat_until_stable`).

    The CUDA allocator's peak is reset after the warm-up, so it covers the timed forwards.
    """
    for _ in range(warmup):
        model(rgb, spike)
    synchronize(rgb.device)
    if rgb.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(rgb.device)
    timer = call_timer(lambda: model(rgb, spike), rgb.device)
    return repeat_until_stable(
        timer, repeats=repeats, cv_threshold=cv_threshold, max_attempts=max_attempts
    )


def measure_latency(
    model: nn.Module,
    rgb: torch.Tensor,
    spike: torch.Tensor,
    *,
    amp: torch.dtype | bool | None,
    warmup: int,
    repeats: int,
    cv_threshold: float = 0.05,
    max_attempts: int = 3,
    profile_runs: int | None = None,
    measure_memory: bool = True,
) -> Latency:
    """Measure the deployment forward of ``model`` at the inputs' shape: a :class:`Latency`.

    Args:
        model: A module ``model(rgb, spike) -> restored``, already on the inputs' device. If it
            implements ``part_names`` / ``set_part_timer`` a per-stage profile is taken too.
        rgb: (B, T, 3, H, W) in [0, 1].
        spike: (B, T, K, H, W).
        amp: Autocast dtype, False/None for full precision, True for the device's default.
        warmup: Untimed forwards first; ``repeats``: timed forwards per block (>= 2).
        cv_threshold: A block with a larger CV is re-measured (up to ``max_attempts`` blocks)
            and the result flagged noisy if none is quiet enough.
        profile_runs: Forwards of the profiling pass (default ``max(5, repeats // 4)``; 0 skips).
        measure_memory: Also measure peak memory.
    """
    device = rgb.device
    if device.type == "cpu":
        tune_malloc()
    dtype = resolve_amp_dtype(True, "auto", device) if amp is True else (amp or None)
    with deploy_mode(model, device, dtype):
        stats, attempts, noisy = _timed(
            model, rgb, spike, warmup=warmup, repeats=repeats, cv_threshold=cv_threshold,
            max_attempts=max_attempts,
        )  # fmt: skip
        peak = _peak_mb(model, rgb, spike) if measure_memory else None
        runs = max(5, repeats // 4) if profile_runs is None else profile_runs
        per_stage, profile_total = profile_parts(model, rgb, spike, runs=runs)
    result = Latency(
        **{k: getattr(stats, k) for k in ("median_ms", "p90_ms", "cv", "mean_ms", "samples_ms")},
        repeats=repeats,
        peak_mem_mb=peak,
        per_stage_ms=per_stage,
        noisy=noisy,
        attempts=attempts,
        profile_total_ms=profile_total,
        stage_sum_error=sum(per_stage.values()) / stats.median_ms - 1.0 if per_stage else None,
        device=str(device),
        device_name=device_name(device),
        threads=torch.get_num_threads(),
        amp=amp_name(dtype),
        rgb_shape=tuple(rgb.shape),
        spike_shape=tuple(spike.shape),
        loadavg=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    )
    _log(result)
    return result


def _log(r: Latency) -> None:
    if r.device == "cpu" and (r.loadavg or 0) > (os.cpu_count() or 1):
        logger.warning("load average %.1f exceeds %s cores: CPU timing is unreliable",
                       r.loadavg, os.cpu_count())  # fmt: skip
    msg = "latency %.2f ms (p90 %.2f, cv %.3f%s) on %s, shape %s"
    flag = ", NOISY" if r.noisy else ""
    logger.info(msg, r.median_ms, r.p90_ms, r.cv, flag, r.device, r.rgb_shape)
