"""Measurement benchmark: latency repeatability, per-stage closure, seconds per trial, PSNR gain.

Usage::

    python benchmarks/measure_bench.py [--configs tiny,baseline] [--budgets smoke,cpu]
        [--device cpu] [--threads 2] [--repeat-measurements 5] [--max-steps N] [--fake-data]
        [--latency-shape TxHxW] [--cache-dir DIR] [--out benchmarks/out/measure.json]

For every (config, budget) pair it runs one trial the way a study does (cost model, short
training of the budget's proxy, validation), then measures the full-width deployment model
directly at ``--latency-shape`` (default: the budget's latency target), and reports:

- seconds per trial, split into cost model / training / validation / latency (data generation is
  reported apart: it happens once per study and is cached);
- the PSNR gain over the blurry input that the budget reaches;
- latency repeatability: ``--repeat-measurements`` independent ``measure_latency`` calls on the
  same model, the CV of their medians (target <= 5 %) and each call's within-block CV;
- per-stage closure: how far the per-stage times (parts + ``other``) sum from the end-to-end
  median (``stage_sum_error``) and the share of the end-to-end time the named parts cover.

``--max-steps N`` trains only N steps and extrapolates the training time to the budget's steps
(for budgets too long to run here); ``--fake-data`` uses random clips of the budget's shapes
(timing only: the PSNR figures are then meaningless and are omitted); ``--skip-train`` times a
freshly initialised model (latency repeatability and per-stage closure only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from model import VRTSpike, load_preset
from search.budgets import Budget, apply_budget, get_budget
from search.latency import measure_latency, tune_malloc
from search.measure.cost import count_cost
from search.measure.device import resolve_amp_dtype
from search.measure.target import parse_shape
from search.measure.train import train_model


@dataclasses.dataclass
class _Fake:
    train: list[dict[str, torch.Tensor]]
    val: list[dict[str, torch.Tensor]]


def _fake_data(budget: Budget) -> _Fake:
    def clip(size: int) -> dict[str, torch.Tensor]:
        t, k = budget.clip_len, budget.num_bins
        sharp = torch.rand(t, 3, size, size)
        return {"blurry": sharp.clone(), "sharp": sharp, "spike": torch.rand(t, k, size, size)}

    return _Fake(
        train=[clip(budget.crop_size) for _ in range(4)],
        val=[clip(budget.data_size) for _ in range(budget.num_val_clips)],
    )


def _latency_inputs(
    cfg: Any, shape: tuple[int, int, int], device: torch.device
) -> tuple[torch.Tensor, ...]:
    t, h, w = shape
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(1, t, 3, h, w, generator=g).to(device)
    spike = torch.rand(1, t, cfg.data.num_voxel_bins, h, w, generator=g).to(device)
    return rgb, spike


def run_trial(name: str, budget: Budget, args: argparse.Namespace) -> dict[str, Any]:
    """One study-like trial of preset ``name`` at ``budget``; returns its figures."""
    device = torch.device(args.device)
    deploy = load_preset(name)
    cfg = apply_budget(deploy, budget)
    shape = args.latency_shape or budget.latency_shape
    t_cost = time.perf_counter()
    cost = count_cost(deploy, frames=shape[0], height=shape[1], width=shape[2])
    cost_s = time.perf_counter() - t_cost

    t_data = time.perf_counter()
    if args.fake_data or args.skip_train:
        data: Any = _fake_data(budget)
    else:
        from search.data import load_synthetic

        data = load_synthetic(budget.data_spec(0), cache_dir=args.cache_dir)
    data_s = time.perf_counter() - t_data

    run_budget = budget
    if args.max_steps and args.max_steps < budget.steps:
        warm = min(budget.warmup_steps, args.max_steps - 1)
        run_budget = dataclasses.replace(budget, steps=args.max_steps, warmup_steps=warm)
    r = None
    train_s = eval_s = samples_per_s = float("nan")
    if not args.skip_train:
        trained = train_model(cfg, run_budget, data, device=device, seed=0)
        r = trained.result
        train_s = r.train_seconds * budget.steps / run_budget.steps
        eval_s, samples_per_s = r.eval_seconds, r.samples_per_s
        del trained

    torch.manual_seed(0)  # latency does not depend on the weights: a fresh deployment model
    model = VRTSpike(deploy).to(device)
    amp = resolve_amp_dtype(deploy.train.amp_enabled, deploy.train.amp_dtype, device)
    rgb, spike = _latency_inputs(deploy, shape, device)
    t_lat = time.perf_counter()
    lat = measure_latency(model, rgb, spike, amp=amp, warmup=budget.latency_warmup,
                          repeats=budget.latency_repeats)  # fmt: skip
    latency_s = time.perf_counter() - t_lat

    # repeatability: independent measurements of the same model
    lats = [lat]
    for _ in range(args.repeat_measurements - 1):
        lats.append(measure_latency(model, rgb, spike, amp=amp,
                                    warmup=budget.latency_warmup,
                                    repeats=budget.latency_repeats))  # fmt: skip
    medians = [x.median_ms for x in lats]
    parts = {k: v for k, v in lat.per_stage_ms.items() if k != "other"}
    out = {
        "config": name,
        "budget": budget.name,
        "device": lat.device_name,
        "threads": torch.get_num_threads(),
        "trained_embed_dims": list(cfg.model.embed_dims),
        "params": cost.params,
        "gflops_latency_shape": cost.gflops,
        "trial_seconds": cost_s + train_s + eval_s + latency_s,
        "cost_seconds": cost_s,
        "train_seconds": train_s,
        "train_steps_run": run_budget.steps,
        "eval_seconds": eval_s,
        "latency_seconds": latency_s,
        "data_seconds_once_per_study": data_s,
        "samples_per_s": samples_per_s,
        "latency_shape": list(lat.rgb_shape),
        "latency_median_ms": lat.median_ms,
        "latency_medians_ms": medians,
        "latency_cv_across_measurements": statistics.pstdev(medians) / statistics.mean(medians),
        "latency_within_block_cv": [x.cv for x in lats],
        "latency_noisy_flags": [x.noisy for x in lats],
        "stage_sum_error": [x.stage_sum_error for x in lats],
        "named_parts_share_of_profiled_total": (
            sum(parts.values()) / lat.profile_total_ms if lat.profile_total_ms else None
        ),
        "per_stage_ms": lat.per_stage_ms,
        "peak_mem_mb_latency": lat.peak_mem_mb,
        "loadavg_1m_after": os.getloadavg()[0],
    }
    if r is not None and not args.fake_data and run_budget.steps == budget.steps:
        out.update(psnr_db=r.psnr_db, input_psnr_db=r.input_psnr_db, psnr_gain_db=r.psnr_gain_db,
                   ssim=r.ssim, input_ssim=r.input_ssim,
                   loss_first=r.loss_curve[0], loss_last=r.loss_curve[-1])  # fmt: skip
    return out


def _print_row(row: dict[str, Any]) -> None:
    gain = row.get("psnr_gain_db")
    gain_txt = (
        f"{gain:+.2f} dB ({row['psnr_db']:.2f} vs {row['input_psnr_db']:.2f})" if gain else "-"
    )
    sse = [f"{e:+.1%}" for e in row["stage_sum_error"] if e is not None]
    print(
        f"| {row['config']} | {row['budget']} | {row['trial_seconds']:.1f} s "
        f"(train {row['train_seconds']:.1f}, eval {row['eval_seconds']:.1f}, "
        f"latency {row['latency_seconds']:.1f}, cost {row['cost_seconds']:.1f}) | "
        f"{row['latency_median_ms']:.1f} ms | {row['latency_cv_across_measurements']:.1%} | "
        f"{', '.join(f'{c:.1%}' for c in row['latency_within_block_cv'])} | {', '.join(sse)} | "
        f"{gain_txt} |",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="tiny,baseline")
    p.add_argument("--budgets", default="smoke,cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat-measurements", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--fake-data", action="store_true")
    p.add_argument("--skip-train", action="store_true", help="latency figures only")
    p.add_argument("--latency-shape", type=parse_shape, default=None, metavar="TxHxW",
                   help="direct measurement input (default: the budget's)")  # fmt: skip
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default="benchmarks/out/measure.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tune_malloc()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"loadavg {os.getloadavg()}")  # fmt: skip
    print("| config | budget | seconds per trial | latency median | CV of 5 medians | "
          "within-block CVs | per-stage sum vs median | PSNR gain over blurry |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for budget_name in args.budgets.split(","):
        for name in args.configs.split(","):
            row = run_trial(name, get_budget(budget_name), args)
            rows.append(row)
            _print_row(row)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
