"""Latency statistics on synthetic samples, retry/noisy logic, per-stage keys with a stand-in."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from search.latency import (
    Latency,
    measure_latency,
    repeat_until_stable,
    summarize_samples,
    tune_malloc,
)

Timer = Callable[[str], contextlib.AbstractContextManager[None]]


class _StandIn(nn.Module):
    """Implements the model's part-timer contract: parts run inside ``with timer(name):``."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(4, 8, 3, padding=1)
        self.body = nn.Conv2d(8 + 3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 3, 3, padding=1)
        self._timer: Timer | None = None

    def part_names(self) -> tuple[str, ...]:
        return ("spike_encoder", "stage1", "head")

    def set_part_timer(self, timer: Timer | None) -> None:
        self._timer = timer

    def _part(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self._timer(name) if self._timer is not None else contextlib.nullcontext()

    def forward(self, rgb: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        b, t = rgb.shape[:2]
        x = rgb.flatten(0, 1)  # (B*T, 3, H, W)
        with self._part("spike_encoder"):
            s = self.enc(spike.flatten(0, 1))  # (B*T, 8, H, W)
        with self._part("stage1"):
            f = self.body(torch.cat([s, x], dim=1))
        with self._part("head"):
            out = x + self.head(f)
        return out.unflatten(0, (b, t))  # (B, T, 3, H, W)


def test_summarize_samples_matches_numpy() -> None:
    samples = [10.0, 11.0, 9.0, 10.5, 30.0, 10.2, 9.8, 10.1, 9.9, 10.3]
    s = summarize_samples(samples)
    x = np.array(samples)
    assert s.median_ms == pytest.approx(np.median(x))
    assert s.p90_ms == pytest.approx(np.percentile(x, 90))
    assert s.mean_ms == pytest.approx(x.mean())
    assert s.cv == pytest.approx(x.std() / x.mean())
    assert s.median_ms == pytest.approx(10.15)  # robust to the 30 ms outlier
    with pytest.raises(ValueError):
        summarize_samples([])


def test_quiet_block_is_accepted_first_time() -> None:
    clock = itertools.cycle([10.0, 10.1, 9.9, 10.0])
    stats, attempts, noisy = repeat_until_stable(
        lambda: next(clock), repeats=8, cv_threshold=0.05, max_attempts=3
    )
    assert attempts == 1 and not noisy
    assert stats.median_ms == pytest.approx(10.0)


def test_noisy_block_is_remeasured_then_kept_quiet() -> None:
    blocks = iter([5.0, 20.0] * 4 + [10.0, 10.2, 9.8, 10.0] * 2)  # first block cv 0.6, then quiet
    stats, attempts, noisy = repeat_until_stable(
        lambda: next(blocks), repeats=8, cv_threshold=0.05, max_attempts=3
    )
    assert attempts == 2 and not noisy
    assert stats.cv < 0.05 and stats.median_ms == pytest.approx(10.0)


def test_persistently_noisy_is_flagged_and_best_block_kept() -> None:
    rng = np.random.default_rng(0)
    scales = iter([0.5] * 6 + [0.2] * 6 + [0.4] * 6)
    samples = (10.0 * (1 + s * rng.standard_normal()) for s in scales)
    stats, attempts, noisy = repeat_until_stable(
        lambda: float(next(samples)), repeats=6, cv_threshold=0.01, max_attempts=3
    )
    assert attempts == 3 and noisy
    assert stats.cv == pytest.approx(summarize_samples(stats.samples_ms).cv)
    assert 0.01 < stats.cv < 0.5  # the quietest of the three blocks


def test_tune_malloc_is_idempotent() -> None:
    assert tune_malloc() == tune_malloc()


@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_measure_latency_stand_in(amp: torch.dtype | None) -> None:
    model = _StandIn()
    model.train()
    rgb = torch.rand(1, 3, 3, 24, 24)
    spike = torch.rand(1, 3, 4, 24, 24)
    lat = measure_latency(model, rgb, spike, amp=amp, warmup=1, repeats=6, profile_runs=3)
    assert isinstance(lat, Latency)
    assert model.training and model._timer is None  # mode and hook restored
    assert set(lat.per_stage_ms) == {"spike_encoder", "stage1", "head", "other"}
    assert all(v >= 0 for k, v in lat.per_stage_ms.items() if k != "other")
    assert lat.median_ms > 0 and lat.p90_ms >= lat.median_ms and lat.cv >= 0
    assert lat.repeats == 6 and len(lat.samples_ms) == 6 and 1 <= lat.attempts <= 3
    assert lat.profile_total_ms is not None
    assert lat.profile_total_ms > 0  # medians of parts need not sum to it: no timed assertion
    assert lat.stage_sum_error == pytest.approx(sum(lat.per_stage_ms.values()) / lat.median_ms - 1)
    # parameters + inputs alone are a lower bound of the CPU peak
    resident = sum(p.numel() * 4 for p in model.parameters()) + (rgb.numel() + spike.numel()) * 4
    assert lat.peak_mem_mb is not None and lat.peak_mem_mb * 2**20 > resident
    assert lat.amp == (None if amp is None else "bfloat16")
    assert lat.rgb_shape == (1, 3, 3, 24, 24) and lat.spike_shape == (1, 3, 4, 24, 24)
    d = json.loads(json.dumps(lat.to_dict()))
    assert d["per_stage_ms"].keys() == lat.per_stage_ms.keys() and d["threads"] >= 1


class _NoTimer(nn.Module):
    def forward(self, rgb: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        return rgb * 2


def test_model_without_part_timer_gives_empty_profile() -> None:
    rgb, spike = torch.rand(1, 2, 3, 8, 8), torch.rand(1, 2, 2, 8, 8)
    lat = measure_latency(_NoTimer(), rgb, spike, amp=False, warmup=0, repeats=3)
    assert lat.per_stage_ms == {} and lat.stage_sum_error is None and lat.profile_total_ms is None
    assert lat.median_ms > 0 and lat.amp is None
