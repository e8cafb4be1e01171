"""What a budget's training makes of the network: PSNR gains after the budget and 10x the budget.

Usage::

    python -u benchmarks/learning.py [--budgets smoke,cpu] [--seeds 3] [--scale 10]

Per budget (its own synthetic data set, seed 0; validation = the clips trials are scored on):

- the data: blurry-input PSNR, spike-only (TFP) PSNR, a simple non-learned fusion's PSNR
  (:func:`search.data.stats.synthetic_val_stats`);
- the ``baseline`` proxy trained for the budget's steps with ``--seeds`` seeds: PSNR gain over
  the blurry input per seed, its mean and spread (max - min);
- the ``baseline`` after ``--scale`` times the budget's steps (seed 0);
- the guide's scheme A and scheme B after the budget (seed 0), beside the baseline's seed 0;
- the wall time of each training.

Gains are the restored PSNR minus the blurry input's, averaged over the validation clips.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from model import load_preset
from search.data import load_synthetic
from search.data.stats import synthetic_val_stats
from search.measure.budgets import Budget, apply_budget, get_budget
from search.measure.train import train


def _gain(preset: str, budget: Budget, data, seed: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(PSNR gain in dB, seconds) of one training."""
    cfg = apply_budget(load_preset(preset), budget)
    start = time.perf_counter()
    r = train(cfg, budget, data, device="cpu", seed=seed)
    return r.psnr_gain_db, time.perf_counter() - start


def _budget_report(name: str, seeds: int, scale: int) -> None:
    budget = get_budget(name)
    stats = synthetic_val_stats(budget.data_spec(0), num_clips=budget.num_val_clips, label=name)
    data = load_synthetic(budget.data_spec(0), crop=budget.crop_size, seed=0)
    print(
        f"\nbudget {name}: {budget.steps} steps, batch {budget.batch_size}, crop {budget.crop_size}"
    )
    print(f"  data ({stats.num_clips} val clips): blurry {stats.blurry.mean:.2f} dB "
          f"[{stats.blurry.min:.2f}, {stats.blurry.max:.2f}], spike-only (grey) "
          f"{stats.spike_grey.mean:.2f} dB, simple fusion {stats.fusion.mean:.2f} dB")  # fmt: skip
    runs = [_gain("baseline", budget, data, seed) for seed in range(seeds)]
    gains = [g for g, _ in runs]
    print(f"  baseline after the budget, seeds 0-{seeds - 1}: "
          + ", ".join(f"{g:+.3f}" for g in gains)
          + f" dB; mean {statistics.mean(gains):+.3f}, spread {max(gains) - min(gains):.3f} dB; "
          f"{statistics.mean(s for _, s in runs):.0f} s each", flush=True)  # fmt: skip
    for preset in ("scheme_a", "scheme_b"):
        g, s = _gain(preset, budget, data, 0)
        print(f"  {preset} after the budget (seed 0): {g:+.3f} dB ({s:.0f} s)", flush=True)
    longer = dataclasses.replace(
        budget, steps=scale * budget.steps, warmup_steps=scale * budget.warmup_steps
    )
    g, s = _gain("baseline", longer, data, 0)
    print(f"  baseline after {scale}x the budget ({longer.steps} steps, seed 0): {g:+.3f} dB "
          f"({s:.0f} s)", flush=True)  # fmt: skip


def main() -> None:
    """Parse the options and report each budget."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", default="smoke,cpu")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--scale", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(2)
    for name in args.budgets.split(","):
        _budget_report(name, args.seeds, args.scale)


if __name__ == "__main__":
    main()
