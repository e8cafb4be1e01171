"""The short-budget trainer: one config, one budget, fixed seeds, validation PSNR/SSIM.

Recipe: AdamW with the config's lr / betas / weight decay,
linear warm-up then cosine decay to zero over the budget's steps, Charbonnier loss
``mean(sqrt((restored - sharp)^2 + eps))`` (eps added under the root, as KAIR's
``CharbonnierLoss``), gradient clipping by norm, gradient accumulation, AMP when the config
enables it (bf16 autocast on CPU; fp16 with a gradient scaler, or bf16, on CUDA) and gradient
checkpointing as the model's config sets it. Validation runs the deployment forward (eval,
inference mode, same AMP) on the first ``budget.num_val_clips`` validation clips at full frame
size and reports PSNR/SSIM of the restored clip and of the blurry input against the sharp one.

Determinism: the seed fixes the weights, the batch order and every crop/flip; on CPU the same
seed gives bit-identical results at a fixed thread count. On CUDA cuDNN is put in deterministic
mode during training, but ``grid_sample``'s backward uses atomics, so runs agree only closely.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from model import VRTSpike, VRTSpikeConfig
from model.errors import VRTSpikeError
from search.inherit import as_child
from search.measure.budgets import Budget
from search.measure.device import amp_name, autocast, config_amp, synchronize
from search.measure.latency import PeakStorage
from search.measure.metrics import psnr, ssim
from search.measure.resume import (
    RunIdentity,
    capture_rng,
    load_run_state,
    restore_rng,
    save_run_state,
)

__all__ = ["NonFiniteLossError", "TrainDataError", "TrainResult", "TrainedModel", "charbonnier"]
__all__ += ["evaluate", "lr_factor", "train", "train_model"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(VRTSpikeError, FloatingPointError):
    """The training loss became NaN or infinite (the message gives step and value)."""


class TrainDataError(VRTSpikeError, ValueError):
    """The data does not match the configuration (clip length, spike bins, crop)."""


class _Clips(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> dict[str, torch.Tensor]: ...


class _Splits(Protocol):
    train: Any
    val: Any


@dataclass(frozen=True)
class TrainResult:
    """What one short training produced (JSON-ready through :meth:`to_dict`).

    Attributes:
        psnr_db: Validation PSNR of the restored clips (mean over frames, then clips); ``ssim``
            likewise; ``input_psnr_db`` / ``input_ssim``: the blurry inputs' scores.
        loss_curve: Training loss of every optimiser step (``steps`` of them).
        samples_per_s: Training clips per second (data loading included); ``train_seconds`` /
            ``eval_seconds``: wall times of the training loop and of the validation.
        peak_mem_mb: Peak memory in MiB, of the kind ``peak_mem_kind`` says: ``cuda_allocated``
            (CUDA allocator peak over the run) or ``cpu_tensors`` (parameters + the peak of live
            tensors during the first step: activations, gradients, optimiser state).
        device: Device string; ``amp``: autocast dtype name or None; ``seed``; ``budget`` name.
        val_clips: Validation clips averaged over; ``params``: parameter count.
    """

    psnr_db: float
    ssim: float
    input_psnr_db: float
    input_ssim: float
    loss_curve: tuple[float, ...] = field(repr=False)
    steps: int
    samples_per_s: float
    train_seconds: float
    eval_seconds: float
    peak_mem_mb: float
    peak_mem_kind: str
    device: str
    amp: str | None
    seed: int
    budget: str
    val_clips: int
    params: int

    @property
    def psnr_gain_db(self) -> float:
        """Restored PSNR minus the blurry input's PSNR."""
        return self.psnr_db - self.input_psnr_db

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict, with ``psnr_gain_db`` and ``final_loss`` added."""
        d = asdict(self)
        d["loss_curve"] = list(self.loss_curve)
        d["psnr_gain_db"] = self.psnr_gain_db
        tail = self.loss_curve[-max(1, len(self.loss_curve) // 10) :]
        d["final_loss"] = float(np.mean(tail)) if tail else None
        return d


@dataclass(frozen=True)
class TrainedModel:
    """The trained network, its result, and the first validation clip for previews.

    Attributes:
        model: The trained model (on the training device, eval mode).
        result: The :class:`TrainResult`.
        preview: ``{"blurry", "restored", "sharp"}`` of validation clip 0, each (T, 3, H, W), CPU.
    """

    model: nn.Module
    result: TrainResult
    preview: dict[str, torch.Tensor] = field(repr=False)


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """``mean(sqrt((pred - target)^2 + eps))`` in float32; any matching shapes."""
    diff = pred.float() - target.float()
    return torch.sqrt(diff * diff + eps).mean()


def lr_factor(step: int, *, warmup: int, total: int) -> float:
    """Learning-rate multiplier of (0-based) ``step``: linear warm-up, then cosine to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_data(cfg: VRTSpikeConfig, clips: _Clips, what: str) -> None:
    if len(clips) < (cfg.train.batch_size if what == "training" else 1):
        raise TrainDataError(f"{what} split has {len(clips)} clips, fewer than one batch")
    item = clips[0]
    t, k = item["spike"].shape[:2]
    if t != cfg.data.clip_len or k != cfg.data.num_voxel_bins:
        raise TrainDataError(
            f"{what} clips have T={t}, K={k} but the config has DATA.CLIP_LEN="
            f"{cfg.data.clip_len}, DATA.NUM_VOXEL_BINS={cfg.data.num_voxel_bins}"
        )


class _Batches:
    """Endless batches (B, ...) in a seeded order; crops/flips drawn from the same generator.

    Each epoch is a fresh permutation of the clips, cut into whole batches (a remainder smaller
    than a batch is skipped). Its position and generator are saved and restored with
    :meth:`state_dict` / :meth:`load_state_dict`, so a resumed run sees the batches an
    uninterrupted one would.
    """

    def __init__(self, clips: Any, *, batch: int, seed: int) -> None:
        self._clips, self._batch = clips, batch
        self._sample = getattr(clips, "sample", None)
        self._gen = torch.Generator().manual_seed(seed)
        self._order: list[int] = []
        self._pos = 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._pos + self._batch > len(self._order):
            self._order = torch.randperm(len(self._clips), generator=self._gen).tolist()
            self._pos = 0
        picked = self._order[self._pos : self._pos + self._batch]
        self._pos += self._batch
        items = [
            self._sample(i, generator=self._gen) if self._sample is not None else self._clips[i]
            for i in picked
        ]
        return {key: torch.stack([it[key] for it in items]) for key in items[0]}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._gen.get_state(), "order": list(self._order), "pos": self._pos}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._gen.set_state(state["generator"])
        self._order, self._pos = list(state["order"]), int(state["pos"])


def evaluate(
    model: nn.Module,
    clips: _Clips,
    *,
    device: torch.device | str,
    amp: torch.dtype | None,
    num_clips: int,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """PSNR/SSIM of the restored and of the blurry clips on the first ``num_clips`` clips.

    Returns:
        ({"psnr_db", "ssim", "input_psnr_db", "input_ssim"}, preview of clip 0 with
        ``blurry``/``restored``/``sharp`` each (T, 3, H, W) on the CPU).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    scores: dict[str, list[float]] = collections.defaultdict(list)
    preview: dict[str, torch.Tensor] = {}
    try:
        with torch.inference_mode(), autocast(device, amp):
            for i in range(min(num_clips, len(clips))):
                item = clips[i]
                blurry, sharp = item["blurry"], item["sharp"]  # (T, 3, H, W)
                out = model(blurry[None].to(device), item["spike"][None].to(device))
                restored = out[0].float().clamp(0, 1).cpu()  # (T, 3, H, W)
                scores["psnr_db"].append(psnr(restored, sharp))
                scores["ssim"].append(ssim(restored, sharp))
                scores["input_psnr_db"].append(psnr(blurry, sharp))
                scores["input_ssim"].append(ssim(blurry, sharp))
                if i == 0:
                    preview = {"blurry": blurry, "restored": restored, "sharp": sharp}
    finally:
        model.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()}, preview


Subnets = Callable[[int], Sequence[VRTSpikeConfig | None]]
"""Step -> the sub-networks that step trains on one batch (None: the whole network)."""
GradientSync = Callable[[nn.Module, float, int], float]
"""(model, this process's summed loss, its forward count) -> the mean loss over every process,
after adding every process's gradients into the model's."""
StepProgress = Callable[[int, int, float, float], None]
"""Called after each step with (steps done, steps, loss, seconds so far)."""


def _step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    batches: Iterator[dict[str, torch.Tensor]],
    *,
    cfg: VRTSpikeConfig,
    amp: torch.dtype | None,
    step: int,
    subnets: Sequence[VRTSpikeConfig | None] = (None,),
    sync: GradientSync | None = None,
) -> float:
    """One optimiser step over ``GRADIENT_ACCUMULATION_STEPS`` micro-batches; returns the loss.

    Each micro-batch runs through every sub-network of ``subnets`` (a parent's sandwich: its
    own weights computing each child, :func:`~search.inherit.as_child`) and their gradients add
    up; the loss returned is their mean. With ``sync`` (a sandwich shared by several processes,
    :mod:`search.measure.sandwich`) ``subnets`` is this process's share: ``sync`` adds up every
    process's gradients before the (identical) optimiser step and returns the mean loss of all.
    """
    tr, device = cfg.train, next(model.parameters()).device
    accum, total = tr.gradient_accumulation_steps, 0.0
    for _ in range(accum):
        batch = next(batches)
        for sub in subnets:
            elastic = contextlib.nullcontext() if sub is None else as_child(model, sub)
            with elastic:  # backward inside: a checkpointed block recomputes as the child
                with autocast(device, amp):
                    out = model(batch["blurry"].to(device), batch["spike"].to(device))
                loss = charbonnier(out, batch["sharp"].to(device), tr.charbonnier_eps)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise NonFiniteLossError(f"non-finite training loss {value} at step {step}")
                total += value
                scaled = loss / accum
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
    runs = accum * len(subnets)
    total = total / runs if sync is None else sync(model, total, runs)
    if scaler is not None:
        scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip, foreach=True)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    opt.zero_grad(set_to_none=True)
    return total


@contextlib.contextmanager
def _cudnn_deterministic(device: torch.device) -> Iterator[None]:
    cudnn, on = torch.backends.cudnn, device.type == "cuda"
    old = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = (True, False) if on else old
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = old


def _fixed_parameters(model: nn.Module, keys: tuple[str, ...]) -> list[nn.Parameter]:
    """Parameters whose names contain one of ``keys`` (``TRAIN.FIX_KEYS``)."""
    return [p for name, p in model.named_parameters() if any(k in name for k in keys)]


def _set_trainable(params: list[nn.Parameter], on: bool) -> None:
    for p in params:
        p.requires_grad_(on)


@dataclass
class _Session:
    """Everything one training run holds between its set-up, its steps and its evaluation."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    batches: _Batches
    amp: torch.dtype | None
    device: torch.device
    fixed: list[nn.Parameter]


def _prepare(
    cfg: VRTSpikeConfig,
    budget: Budget,
    data: _Splits,
    *,
    device: torch.device,
    seed: int,
    init_state: Mapping[str, torch.Tensor] | None,
    steps: int,
) -> _Session:
    """Check the data against the config, seed, build the model, optimiser and batches."""
    tr = cfg.train
    _check_data(cfg, data.train, "training")
    _check_data(cfg, data.val, "validation")
    train_clips = data.train
    if hasattr(train_clips, "with_crop"):
        h, w = train_clips.frame_size
        if cfg.data.crop_size > min(h, w):
            raise TrainDataError(f"DATA.CROP_SIZE {cfg.data.crop_size} exceeds the {h}x{w} frames")
        train_clips = train_clips.with_crop(cfg.data.crop_size)
    amp = config_amp(cfg, device)
    _seed_everything(seed)
    model = VRTSpike(cfg)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device).train()
    fixed = _fixed_parameters(model, tr.fix_keys)
    _set_trainable(fixed, tr.fix_iter == 0)
    fixed_ids = {id(p) for p in fixed}
    groups = [{"params": [p for p in model.parameters() if id(p) not in fixed_ids]}]
    if fixed:
        groups.append({"params": fixed, "lr": tr.lr * tr.fix_lr_mul})
    opt = torch.optim.AdamW(  # fused: one kernel for all parameters, on the CPU too
        groups, lr=tr.lr, betas=tr.betas, weight_decay=tr.weight_decay, fused=True
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, warmup=min(budget.warmup_steps, steps - 1), total=steps)
    )
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10) if amp is torch.float16 else None
    batches = _Batches(train_clips, batch=tr.batch_size, seed=seed)
    return _Session(model, opt, sched, scaler, batches, amp, device, fixed)


@dataclass(frozen=True)
class _Resume:
    """Where a run saves its state every ``every`` steps (and after its last), and whose it is."""

    path: Path
    every: int
    identity: RunIdentity


def _save_state(
    s: _Session, r: _Resume, step: int, curve: list[float], seconds: float, peak: float
) -> None:
    state = {
        "step": step, "curve": list(curve), "seconds": seconds, "peak": peak,
        "model": s.model.state_dict(), "opt": s.opt.state_dict(), "sched": s.sched.state_dict(),
        "scaler": None if s.scaler is None else s.scaler.state_dict(),
        "batches": s.batches.state_dict(), "rng": capture_rng(),
    }  # fmt: skip
    save_run_state(r.path, r.identity, state)
    logger.debug("saved the training state after step %d to %s", step, r.path)


def _load_state(s: _Session, r: _Resume) -> tuple[int, list[float], float, float | None]:
    """Restore a saved state into ``s``: (steps done, curve, seconds, peak); nothing saved:
    (0, [], 0.0, None)."""
    state = load_run_state(r.path, r.identity)
    if state is None:
        return 0, [], 0.0, None
    s.model.load_state_dict(state["model"])
    s.opt.load_state_dict(state["opt"])
    s.sched.load_state_dict(state["sched"])
    if s.scaler is not None and state["scaler"] is not None:
        s.scaler.load_state_dict(state["scaler"])
    s.batches.load_state_dict(state["batches"])
    restore_rng(state["rng"])
    step = int(state["step"])
    logger.info("resuming from %s after step %d of %d", r.path, step, r.identity.steps)
    return step, [float(v) for v in state["curve"]], float(state["seconds"]), float(state["peak"])


def _run_steps(
    s: _Session,
    cfg: VRTSpikeConfig,
    steps: int,
    subnets: Subnets | None = None,
    progress: StepProgress | None = None,
    sync: GradientSync | None = None,
    resume: _Resume | None = None,
) -> tuple[list[float], float, float]:
    """Run the optimiser steps; returns (loss per step, seconds, peak memory in MiB).

    Peak memory: the CUDA allocator's peak over the run, or on the CPU the parameters plus the
    peak of live tensors during the first step (activations, gradients, optimiser state).
    With ``resume`` the run continues from the state saved there, if any, and saves its own
    every ``resume.every`` steps; seconds and the curve then cover every segment of the run.
    """
    cuda = s.device.type == "cuda"
    start, curve, before, saved_peak = (
        (0, [], 0.0, None) if resume is None else _load_state(s, resume)
    )
    if start > cfg.train.fix_iter:
        _set_trainable(s.fixed, True)
    if cuda:
        torch.cuda.reset_peak_memory_stats(s.device)
    tracker = None if cuda or start > 0 else PeakStorage()
    t0 = time.perf_counter()
    with _cudnn_deterministic(s.device):
        for step in range(start, steps):
            if step == cfg.train.fix_iter:
                _set_trainable(s.fixed, True)  # VRT: the flow and alignment train from here on
            watch = tracker if step == 0 and tracker is not None else contextlib.nullcontext()
            nets = (None,) if subnets is None else subnets(step)
            with watch:
                curve.append(
                    _step(
                        s.model,
                        s.opt,
                        s.scaler,
                        s.batches,
                        cfg=cfg,
                        amp=s.amp,
                        step=step,
                        subnets=nets,
                        sync=sync,
                    )  # fmt: skip
                )
            s.sched.step()
            seconds = before + time.perf_counter() - t0
            if resume is not None and ((step + 1) % resume.every == 0 or step + 1 == steps):
                peak = _peak_mb(s, tracker, saved_peak)
                _save_state(s, resume, step + 1, curve, seconds, peak)
            if progress is not None:
                progress(step + 1, steps, curve[-1], seconds)
    synchronize(s.device)
    return curve, before + time.perf_counter() - t0, _peak_mb(s, tracker, saved_peak)


def _peak_mb(s: _Session, tracker: PeakStorage | None, saved: float | None) -> float:
    """The run's peak memory so far in MiB (see :func:`_run_steps`); ``saved``: an earlier
    segment's (on the CPU the first step's, which a resumed segment does not run again)."""
    if s.device.type == "cuda":
        now = torch.cuda.max_memory_allocated(s.device) / 2**20
        return now if saved is None else max(now, saved)
    if tracker is None:
        assert saved is not None
        return saved
    held = sum(p.numel() * p.element_size() for p in s.model.parameters())
    return (held + tracker.peak) / 2**20


def _train_steps(
    s: _Session,
    cfg: VRTSpikeConfig,
    budget: Budget,
    data: _Splits,
    seed: int,
    steps: int,
    subnets: Subnets | None,
    progress: StepProgress | None,
    ranks: int,
    resume: _Resume | None,
) -> tuple[list[float], float, float]:
    """The training loop in this process, or (``ranks`` > 1) shared by CPU processes."""
    if ranks == 1:
        return _run_steps(s, cfg, steps, subnets, progress, resume=resume)
    from search.measure.sandwich import run_ranks  # it imports this module

    assert subnets is not None
    return run_ranks(s.model, cfg, budget, data, seed=seed, ranks=ranks, progress=progress,
                     schedule=[list(subnets(step)) for step in range(steps)])  # fmt: skip


def _resume_of(
    cfg: VRTSpikeConfig, budget: Budget, device: torch.device, seed: int, steps: int, *,
    ranks: int, subnets: Subnets | None, init_state: object, checkpoint: Path | None, every: int,
) -> _Resume | None:  # fmt: skip
    """Check :func:`train_model`'s ranks and checkpoint arguments; the run's :class:`_Resume`."""
    if ranks > 1 and (subnets is None or device.type != "cpu" or init_state is not None):
        raise ValueError("ranks > 1 shares a sandwich's sub-networks between CPU processes "
                         "training from scratch")  # fmt: skip
    if checkpoint is None:
        return None
    if ranks > 1 or every < 1:
        raise ValueError("a checkpoint needs ranks == 1 and checkpoint_every >= 1")
    identity = RunIdentity(config=cfg.to_dict(), seed=seed, steps=steps, budget=budget.name,
                           device=device.type)  # fmt: skip
    return _Resume(Path(checkpoint), every, identity)


def _evaluated(
    s: _Session, cfg: VRTSpikeConfig, budget: Budget, data: _Splits, seed: int,
    curve: list[float], train_s: float, peak: float,
) -> TrainedModel:  # fmt: skip
    """Evaluate the trained model of ``s`` and assemble :func:`train_model`'s result."""
    device, steps = s.device, len(curve)
    t1 = time.perf_counter()
    scores, preview = evaluate(s.model, data.val, device=device, amp=s.amp,
                               num_clips=budget.num_val_clips)  # fmt: skip
    clips = steps * cfg.train.gradient_accumulation_steps * cfg.train.batch_size
    result = TrainResult(
        **scores, loss_curve=tuple(curve), steps=steps, samples_per_s=clips / train_s,
        train_seconds=train_s, eval_seconds=time.perf_counter() - t1, peak_mem_mb=peak,
        peak_mem_kind="cuda_allocated" if device.type == "cuda" else "cpu_tensors",
        device=str(device), amp=amp_name(s.amp), seed=seed, budget=budget.name,
        val_clips=min(budget.num_val_clips, len(data.val)),
        params=sum(p.numel() for p in s.model.parameters()),
    )  # fmt: skip
    logger.info("trained %d steps in %.1f s: PSNR %.2f dB (input %.2f), SSIM %.4f",
                steps, train_s, result.psnr_db, result.input_psnr_db, result.ssim)  # fmt: skip
    return TrainedModel(model=s.model.eval(), result=result, preview=preview)


def train_model(
    cfg: VRTSpikeConfig,
    budget: Budget,
    data: _Splits,
    *,
    device: torch.device | str,
    seed: int,
    init_state: Mapping[str, torch.Tensor] | None = None,
    steps: int | None = None,
    subnets: Subnets | None = None,
    progress: StepProgress | None = None,
    ranks: int = 1,
    checkpoint: Path | None = None,
    checkpoint_every: int = 100,
) -> TrainedModel:
    """Train ``VRTSpike(cfg)`` for the budget's steps and evaluate it.

    ``cfg`` is used as given (apply :func:`~search.measure.budgets.apply_budget` first); the
    budget supplies steps, warm-up and the validation clips; batch, crop, gradient accumulation
    and the optimiser settings come from ``cfg``.

    Args:
        cfg: The configuration to train.
        budget: The budget.
        data: ``train`` / ``val`` splits of ``{"blurry", "sharp", "spike"}`` clips, T and K
            as in the config (e.g. :class:`search.data.ClipSplits`).
        device: Where to train.
        seed: Seeds weights, batch order and augmentation.
        init_state: State dict to start from (a checkpoint, or weights inherited from a parent).
        steps: Optimiser steps (default: the budget's); warm-up and cosine decay span them.
        subnets: Per step, the sub-networks trained on each batch (a parent's sandwich).
        progress: Called after each step (steps done, steps, loss, seconds).
        ranks: CPU processes that share each step's ``subnets``
            (:mod:`search.measure.sandwich`); 1: this process trains them all.
        checkpoint: Where the run's state is saved every ``checkpoint_every`` steps and after
            the last (:mod:`search.measure.resume`); a state of this same run (config, seed,
            steps, budget, device) found there is continued. Only with ``ranks`` == 1.
        checkpoint_every: Steps between two saves.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (message: step and value).
        TrainDataError: the data does not fit the configuration.
        ResumeError: ``checkpoint`` is unreadable or holds the state of another run.
    """
    device, steps = torch.device(device), budget.steps if steps is None else steps
    resume = _resume_of(cfg, budget, device, seed, steps, ranks=ranks, subnets=subnets,
                        init_state=init_state, checkpoint=checkpoint,
                        every=checkpoint_every)  # fmt: skip
    s = _prepare(cfg, budget, data, device=device, seed=seed, init_state=init_state, steps=steps)
    curve, train_s, peak = _train_steps(s, cfg, budget, data, seed, steps, subnets, progress,
                                        ranks, resume)  # fmt: skip
    return _evaluated(s, cfg, budget, data, seed, curve, train_s, peak)


def train(
    cfg: VRTSpikeConfig, budget: Budget, data: _Splits, *, device: torch.device | str, seed: int
) -> TrainResult:
    """:func:`train_model` returning only the :class:`TrainResult`."""
    return train_model(cfg, budget, data, device=device, seed=seed).result
