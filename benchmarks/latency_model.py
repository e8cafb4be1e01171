"""Validation of the latency model: predicted vs directly measured deployment latency.

Usage (alone on the machine; it times for about an hour on 2 CPU cores):

    python -u benchmarks/latency_model.py > latency_model.txt
    python -u benchmarks/latency_model.py --configs 6 --large 2   # shorter

Configurations: the guide's baseline, scheme A and scheme B, then random samples of the
``aggressive`` space (fixed seed), each at full widths with its own AMP. For each one at the small
target (3x128x128) it prints the latency predicted from the parts table
(:mod:`search.measure.latency_model`), the latency of the whole network measured directly
(``--passes`` passes over all configs, each a warm-up of 1 and ``--repeats`` forwards; the
median of all of a config's forwards), and the latency the ``cpu`` budget's training proxy gave
before latency targets existed (quarter widths, 8 spike bins, 3x64x64). The first ``--large``
configurations are also predicted and measured at the deployment target (5x256x256;
``--large-passes`` passes of ``--large-repeats`` forwards).

Printed per target: Kendall tau of predicted vs measured and of the old proxy vs measured, the
median and worst absolute error of the prediction, and the seconds spent filling the tables
(parts measured for the first time) and measuring directly. With two passes or more, also the
tau of the first pass's medians against the second's and their median difference: how well the
direct measurement agrees with itself on this host, the ceiling of any predictor's tau.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import VRTSpike, VRTSpikeConfig  # noqa: E402
from search.cli import repeat_count  # noqa: E402
from search.measure.budgets import apply_budget, get_budget  # noqa: E402
from search.measure.device import amp_name, config_amp  # noqa: E402
from search.measure.latency import measure_latency  # noqa: E402
from search.measure.latency_model import predict_latency  # noqa: E402
from search.measure.target import format_shape  # noqa: E402
from search.report.ranks import kendall_tau  # noqa: E402
from search.study.space import load_space  # noqa: E402
from search.study.tables import space_configs  # noqa: E402

SMALL, LARGE, PROXY = (3, 128, 128), (5, 256, 256), (3, 64, 64)


def measure(cfg: VRTSpikeConfig, shape: tuple[int, int, int], repeats: int) -> list[float]:
    """The timed forwards (ms) of the whole network at ``shape`` (after a warm-up of 1)."""
    t, h, w = shape
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = VRTSpike(cfg)
    rgb = torch.rand(1, t, 3, h, w, generator=gen)
    spike = torch.rand(1, t, cfg.data.num_voxel_bins, h, w, generator=gen)
    lat = measure_latency(model, rgb, spike, amp=config_amp(cfg, "cpu"), warmup=1,
                          repeats=repeats, max_attempts=1, profile_runs=0,
                          measure_memory=False)  # fmt: skip
    return list(lat.samples_ms)


def describe(cfg: VRTSpikeConfig) -> str:
    m = cfg.model
    amp = amp_name(config_amp(cfg, "cpu")) or "fp32"
    return (f"d{''.join(map(str, m.vrt_depths))} w{m.window_size} "
            f"f{''.join(map(str, m.fuse.stages)) or '-'} {amp}")  # fmt: skip


def run_target(
    configs: list[VRTSpikeConfig],
    shape: tuple[int, int, int],
    args: argparse.Namespace,
    repeats: int,
    passes: int,
) -> list[dict[str, Any]]:
    """Predict every config, then measure them all directly in ``passes`` passes (alternate
    passes in reverse order, so that drift of the host hits the configs differently); at the
    small target also time the old proxy. A config's measured latency is the median of all its
    timed forwards; each pass's median is kept for the repeatability check."""
    rows = []
    for i, cfg in enumerate(configs):
        t0 = time.perf_counter()
        pred = predict_latency(cfg, shape, "cpu", folder=args.tables)
        rows.append({"config": i, "desc": describe(cfg), "shape": format_shape(shape),
                     "predicted_ms": pred.median_ms, "predict_s": time.perf_counter() - t0,
                     "parts_measured": pred.measured_parts, "samples_ms": [], "pass_ms": [],
                     "measure_s": 0.0})  # fmt: skip
        print(f"{format_shape(shape)} #{i:<2} {rows[-1]['desc']:<32} predicted "
              f"{pred.median_ms:9.0f} (table {rows[-1]['predict_s']:5.0f} s, "
              f"{pred.measured_parts} parts new)", flush=True)  # fmt: skip
    for p in range(passes):
        order = range(len(configs)) if p % 2 == 0 else reversed(range(len(configs)))
        for i in order:
            row = rows[i]
            t0 = time.perf_counter()
            samples = measure(configs[i], shape, repeats)
            row["measure_s"] += time.perf_counter() - t0
            row["samples_ms"] += samples
            row["pass_ms"].append(statistics.median(samples))
            print(f"{format_shape(shape)} #{i:<2} pass {p + 1}: measured {row['pass_ms'][-1]:9.0f}"
                  f" ({', '.join(f'{v:.0f}' for v in samples)})", flush=True)  # fmt: skip
    cpu = get_budget("cpu")
    for i, row in enumerate(rows):
        row["measured_ms"] = statistics.median(row["samples_ms"])
        row["error"] = row["predicted_ms"] / row["measured_ms"] - 1
        if shape == SMALL:
            row["proxy_ms"] = statistics.median(
                measure(apply_budget(configs[i], cpu), PROXY, repeats)
            )
        proxy = f" proxy {row['proxy_ms']:8.0f}" if "proxy_ms" in row else ""
        print(f"{format_shape(shape)} #{i:<2} {row['desc']:<32} predicted "
              f"{row['predicted_ms']:9.0f} measured {row['measured_ms']:9.0f} error "
              f"{100 * row['error']:+6.1f} %{proxy}", flush=True)  # fmt: skip
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    meas = [r["measured_ms"] for r in rows]
    errors = [abs(r["error"]) for r in rows]
    out = {
        "shape": rows[0]["shape"],
        "configs": len(rows),
        "tau_predicted": kendall_tau([r["predicted_ms"] for r in rows], meas),
        "median_abs_error": statistics.median(errors),
        "worst_abs_error": max(errors),
        "table_s": sum(r["predict_s"] for r in rows),
        "direct_s": sum(r["measure_s"] for r in rows),
    }
    if all(len(r["pass_ms"]) >= 2 for r in rows):  # the direct measurement's own repeatability
        first, second = ([r["pass_ms"][k] for r in rows] for k in (0, 1))
        out["tau_direct_passes"] = kendall_tau(first, second)
        out["median_pass_difference"] = statistics.median(
            abs(a / b - 1) for a, b in zip(first, second, strict=True)
        )
    if all("proxy_ms" in r for r in rows):
        out["tau_proxy"] = kendall_tau([r["proxy_ms"] for r in rows], meas)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", type=int, default=12, help="references + random (>= 3)")
    p.add_argument("--large", type=int, default=4, help="configs also run at 5x256x256")
    p.add_argument("--repeats", type=repeat_count, default=3, help="timed forwards per direct run")
    p.add_argument("--large-repeats", type=repeat_count, default=2, help="the same at 5x256x256")
    p.add_argument(
        "--passes",
        type=int,
        default=2,
        help="direct passes over the configs at "
        "3x128x128 (2 or more: their tau is the measurement's own ceiling)",
    )
    p.add_argument("--large-passes", type=int, default=1, help="the same at 5x256x256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tables", type=Path, default=None, help="default: studies/latency_tables")
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args()
    torch.set_num_threads(2)
    configs = space_configs(load_space("aggressive"), samples=args.configs * 4, seed=args.seed)
    configs = configs[: args.configs]
    print(f"{len(configs)} configs, torch {torch.__version__}, {torch.get_num_threads()} threads",
          flush=True)  # fmt: skip
    small = run_target(configs, SMALL, args, args.repeats, args.passes)
    large = (run_target(configs[: args.large], LARGE, args, args.large_repeats, args.large_passes)
             if args.large else [])  # fmt: skip
    summaries = [summarise(small)] + ([summarise(large)] if large else [])
    for s in summaries:
        proxy = f", old proxy tau {s['tau_proxy']:.2f}" if "tau_proxy" in s else ""
        if "tau_direct_passes" in s:
            proxy += (f"; direct pass 1 vs pass 2: tau {s['tau_direct_passes']:.2f}, median "
                      f"|difference| {100 * s['median_pass_difference']:.1f} %")  # fmt: skip
        print(f"{s['shape']}: {s['configs']} configs, predicted vs measured Kendall tau "
              f"{s['tau_predicted']:.2f}{proxy}; |error| median {100 * s['median_abs_error']:.1f} "
              f"%, worst {100 * s['worst_abs_error']:.1f} %; table filling {s['table_s']:.0f} s, "
              f"direct measurement {s['direct_s']:.0f} s")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"rows": small + large, "summary": summaries}, indent=1))


if __name__ == "__main__":
    main()
