"""Validation of the latency model: predicted vs directly measured deployment latency.

Usage (alone on the machine; it times for about an hour on 2 CPU cores; ``--threads 1`` checks the
same at one thread, where this host's forwards vary about three times less):

    python -u benchmarks/latency_model.py > latency_model.txt
    python -u benchmarks/latency_model.py --configs 6 --large 2   # shorter
    python -u benchmarks/latency_model.py --device cuda --repeats 20 --large-repeats 20  # a GPU

Configurations: the guide's baseline, scheme A and scheme B, then random samples of the
``aggressive`` space (fixed seed), each at full widths with its own AMP. For each one at the small
target (3x128x128) it prints the latency predicted from the parts table
(:mod:`search.measure.latency_model`), the latency of the whole network measured directly, and
the latency the ``cpu`` budget's training proxy gave before latency targets existed (quarter
widths, 8 spike bins, 3x64x64). The first ``--large`` configurations are also predicted and
measured at the deployment target (5x256x256); with ``--large-pick spread`` every configuration
is predicted there and the ``--large`` measured are spread evenly over those predictions, from the
fastest to the slowest (a check that configurations far apart are ranked; random ones of one space
often lie within this host's noise of each other). ``--large-only`` skips the 3x128x128 target.
``--report FILE...`` times nothing and prints the summaries of rows an earlier ``--out`` wrote.

The direct measurement is built against this host's drift (its speed wanders by 10-20 % within
an hour). Every network is built once; ``--passes`` passes visit them in turn (alternate passes
in reverse order), a visit being one untimed and ``--repeats`` timed forwards. A fixed canary
workload (one TMSA pair, 3x64x128 tokens of 96 channels, fp32) is timed before and after every
visit, and each visit's forwards are also given *canary-normalised*: scaled by the canary
reading the config's table is scaled to (:mod:`search.measure.latency_model`: the host's speed
when the table was created) over the visit's own readings, so that the prediction and the
normalised measurement are at one speed of the host. A config's latency is the median of its
forwards, raw and normalised.

Printed per target: Kendall tau of predicted vs measured (raw and normalised) and of the old
proxy vs measured, the median and worst absolute error of the prediction, and the seconds spent
filling the tables (parts measured for the first time) and measuring directly. With two passes or
more, the even passes' medians against the odd passes' (tau and median difference, raw and
normalised): how well the direct measurement agrees with itself on this host, the ceiling of any
predictor's tau; and the canary's range, the drift the run saw. ``--profile`` adds one profiled
forward per network and prints, part by part, the prediction against the whole network's own
profile: where a gap between parts and whole lies.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import VRTSpike, VRTSpikeConfig  # noqa: E402
from search.cli import OneLineParser, natural_int, positive_int  # noqa: E402
from search.measure.budgets import apply_budget, get_budget  # noqa: E402
from search.measure.device import amp_name, config_amp  # noqa: E402
from search.measure.latency import (  # noqa: E402
    call_timer,
    deploy_mode,
    measure_latency,
    profile_parts,
    tune_malloc,
)
from search.measure.latency_model import canary_ms, predict_latency  # noqa: E402
from search.measure.target import format_shape  # noqa: E402
from search.report.ranks import kendall_tau  # noqa: E402
from search.study.space import load_space  # noqa: E402
from search.study.tables import space_configs  # noqa: E402

SMALL, LARGE, PROXY = (3, 128, 128), (5, 256, 256), (3, 64, 64)


def _inputs(
    cfg: VRTSpikeConfig, shape: tuple[int, int, int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    t, h, w = shape
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(1, t, 3, h, w, generator=gen)
    spike = torch.rand(1, t, cfg.data.num_voxel_bins, h, w, generator=gen)
    return rgb.to(device), spike.to(device)


def proxy_ms(cfg: VRTSpikeConfig, repeats: int, device: torch.device) -> float:
    """Median forward (ms) of the ``cpu`` budget's training proxy at 3x64x64, as studies timed
    it before latency targets existed."""
    proxy = apply_budget(cfg, get_budget("cpu"))
    torch.manual_seed(0)
    lat = measure_latency(VRTSpike(proxy).to(device), *_inputs(proxy, PROXY, device),
                          amp=config_amp(proxy, device),
                          warmup=1, repeats=repeats, max_attempts=1, profile_runs=0,
                          measure_memory=False)  # fmt: skip
    return lat.median_ms


class Whole:
    """One config's whole network and inputs at ``shape``, built once and timed visit by visit."""

    def __init__(
        self, cfg: VRTSpikeConfig, shape: tuple[int, int, int], device: torch.device
    ) -> None:
        torch.manual_seed(0)
        self.device = device
        self.model = VRTSpike(cfg).to(device)
        self.rgb, self.spike = _inputs(cfg, shape, device)
        self.amp = config_amp(cfg, device)

    def visit(self, repeats: int) -> list[float]:
        """One untimed forward, then ``repeats`` timed ones (ms)."""
        with deploy_mode(self.model, self.device, self.amp):
            self.model(self.rgb, self.spike)
            timer = call_timer(lambda: self.model(self.rgb, self.spike), self.device)
            return [timer() for _ in range(repeats)]

    def profile(self) -> dict[str, float]:
        """Per-part ms of one synchronised forward (after the visits, so warm)."""
        with deploy_mode(self.model, self.device, self.amp):
            return profile_parts(self.model, self.rgb, self.spike, runs=1)[0]


def describe(cfg: VRTSpikeConfig, device: torch.device) -> str:
    m = cfg.model
    amp = amp_name(config_amp(cfg, device)) or "fp32"
    return (f"d{''.join(map(str, m.vrt_depths))} w{m.window_size} "
            f"f{''.join(map(str, m.fuse.stages)) or '-'} {amp}")  # fmt: skip


def predict_rows(
    configs: list[VRTSpikeConfig],
    shape: tuple[int, int, int],
    args: argparse.Namespace,
    canary: Callable[[], float],
) -> list[dict[str, Any]]:
    """Every config's predicted latency at ``shape`` (filling the tables where they lack a part),
    with canary readings before and after each filling."""
    rows = []
    size = format_shape(shape)
    table_canary = [canary()]
    for i, cfg in enumerate(configs):
        t0 = time.perf_counter()
        pred = predict_latency(cfg, shape, args.device, folder=args.tables)
        seconds = time.perf_counter() - t0
        if pred.measured_parts:
            table_canary.append(canary())
        rows.append({"config": i, "desc": describe(cfg, args.device), "shape": size,
                     "predicted_ms": pred.median_ms, "predicted_parts": pred.per_stage_ms,
                     "table_reference_ms": pred.canary_ms,
                     "predict_s": seconds, "parts_measured": pred.measured_parts,
                     "table_canary_ms": table_canary, "visits": [],
                     "measure_s": 0.0})  # fmt: skip
        print(f"{size} #{i:<2} {rows[-1]['desc']:<32} predicted {pred.median_ms:9.0f} (table "
              f"{seconds:5.0f} s, {pred.measured_parts} parts new)", flush=True)  # fmt: skip
    return rows


def spread(rows: list[dict[str, Any]], k: int) -> list[int]:
    """Indices of ``k`` >= 2 rows whose predictions are evenly spaced in rank, from the fastest to
    the slowest (every row when there are at most ``k``)."""
    order = sorted(range(len(rows)), key=lambda i: rows[i]["predicted_ms"])
    if k >= len(order):
        return order
    return [order[round(j * (len(order) - 1) / (k - 1))] for j in range(k)]


def measure_rows(
    rows: list[dict[str, Any]],
    configs: list[VRTSpikeConfig],
    shape: tuple[int, int, int],
    args: argparse.Namespace,
    repeats: int,
    passes: int,
    canary: Callable[[], float],
) -> list[dict[str, Any]]:
    """Measure the predicted ``rows`` (of ``configs``, in order) directly in ``passes``
    interleaved passes with canary readings around every visit; at the small target also time
    the old proxy, and with ``--profile`` profile each whole network."""
    size = format_shape(shape)
    wholes = [Whole(cfg, shape, args.device) for cfg in configs]
    for p in range(passes):
        order = range(len(configs)) if p % 2 == 0 else reversed(range(len(configs)))
        for i in order:
            row = rows[i]
            t0 = time.perf_counter()
            before = canary()
            samples = wholes[i].visit(repeats)
            after = canary()
            row["measure_s"] += time.perf_counter() - t0
            row["visits"].append({"pass": p, "samples_ms": samples, "canary_ms": [before, after]})
            times = ", ".join(f"{v:.0f}" for v in samples)
            print(f"{size} #{row['config']:<2} pass {p + 1}: {times} ms, "
                  f"canary {before:.0f}/{after:.0f} ms", flush=True)  # fmt: skip
    for i, row in enumerate(rows):
        for v in row["visits"]:  # to the speed the config's table is scaled to
            factor = row["table_reference_ms"] / statistics.mean(v["canary_ms"])
            v["normalised_ms"] = [s * factor for s in v["samples_ms"]]
        row["measured_ms"] = statistics.median(s for v in row["visits"] for s in v["samples_ms"])
        row["normalised_ms"] = statistics.median(
            s for v in row["visits"] for s in v["normalised_ms"]
        )
        row["error"] = row["predicted_ms"] / row["measured_ms"] - 1
        row["normalised_error"] = row["predicted_ms"] / row["normalised_ms"] - 1
        if shape == SMALL:
            row["proxy_ms"] = proxy_ms(configs[i], max(repeats, 2), args.device)
        if args.profile:
            row["whole_parts"] = wholes[i].profile()
        proxy = f" proxy {row['proxy_ms']:8.0f}" if "proxy_ms" in row else ""
        print(f"{size} #{row['config']:<2} {row['desc']:<32} predicted {row['predicted_ms']:9.0f} "
              f"measured "
              f"{row['measured_ms']:9.0f} ({100 * row['error']:+6.1f} %), normalised "
              f"{row['normalised_ms']:9.0f} ({100 * row['normalised_error']:+6.1f} %){proxy}",
              flush=True)  # fmt: skip
        if "whole_parts" in row:
            print_parts(row)
    return rows


def print_parts(row: dict[str, Any]) -> None:
    """The prediction against the whole network's profile, part by part (ms)."""
    pred, whole = row["predicted_parts"], row["whole_parts"]
    for part in dict.fromkeys([*pred, *whole]):
        a, b = pred.get(part, 0.0), whole.get(part, 0.0)
        ratio = f"{100 * (a / b - 1):+6.1f} %" if b > 0 else "      -"
        print(f"    {part:<14} predicted {a:9.1f}  whole {b:9.1f}  {ratio}", flush=True)


def _halves(rows: list[dict[str, Any]], key: str) -> tuple[float, float]:
    """Tau and median |difference| of the configs' even-pass medians against their odd-pass ones
    (``key``: ``samples_ms`` or ``normalised_ms``)."""
    even, odd = (
        [statistics.median(s for v in r["visits"] if v["pass"] % 2 == k for s in v[key])
         for r in rows]
        for k in (0, 1)
    )  # fmt: skip
    return kendall_tau(even, odd), statistics.median(
        abs(a / b - 1) for a, b in zip(even, odd, strict=True)
    )


FAR_APART = (0.05, 0.10)
"""Relative gaps between two predictions at which :func:`far_pairs` counts the pair."""


def far_pairs(rows: list[dict[str, Any]], gap: float) -> tuple[int, int]:
    """(pairs ordered like the raw measurement, pairs) among those predicted at least ``gap``
    apart: how far apart two configurations must be for the prediction to rank them."""
    pairs = [
        (a, b)
        for i, a in enumerate(rows)
        for b in rows[i + 1 :]
        if abs(a["predicted_ms"] / b["predicted_ms"] - 1) >= gap
    ]
    alike = sum(
        (a["predicted_ms"] - b["predicted_ms"]) * (a["measured_ms"] - b["measured_ms"]) > 0
        for a, b in pairs
    )
    return alike, len(pairs)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    pred = [r["predicted_ms"] for r in rows]
    errors = [abs(r["error"]) for r in rows]
    normalised = [abs(r["normalised_error"]) for r in rows]
    canaries = [c for r in rows for v in r["visits"] for c in v["canary_ms"]]
    out = {
        "shape": rows[0]["shape"],
        "configs": len(rows),
        "tau_predicted": kendall_tau(pred, [r["measured_ms"] for r in rows]),
        "median_abs_error": statistics.median(errors),
        "worst_abs_error": max(errors),
        "tau_predicted_normalised": kendall_tau(pred, [r["normalised_ms"] for r in rows]),
        "median_abs_error_normalised": statistics.median(normalised),
        "worst_abs_error_normalised": max(normalised),
        "canary_range": [min(canaries), max(canaries)],
        "table_canary_ms": rows[0]["table_canary_ms"],
        "table_s": sum(r["predict_s"] for r in rows),
        "direct_s": sum(r["measure_s"] for r in rows),
        "far_pairs": {f"{gap:.2f}": far_pairs(rows, gap) for gap in FAR_APART},
    }
    if len({v["pass"] % 2 for v in rows[0]["visits"]}) == 2:
        out["tau_direct_halves"], out["median_halves_difference"] = _halves(rows, "samples_ms")
        out["tau_normalised_halves"], out["median_normalised_halves_difference"] = _halves(
            rows, "normalised_ms"
        )
    if all("proxy_ms" in r for r in rows):
        out["tau_proxy"] = kendall_tau(
            [r["proxy_ms"] for r in rows], [r["measured_ms"] for r in rows]
        )
    return out


def report(s: dict[str, Any]) -> str:
    """One target's summary as printed lines."""
    lines = [
        f"{s['shape']}: {s['configs']} configs; predicted vs measured: Kendall tau "
        f"{s['tau_predicted']:.2f}, |error| median {100 * s['median_abs_error']:.1f} %, worst "
        f"{100 * s['worst_abs_error']:.1f} %; vs canary-normalised: tau "
        f"{s['tau_predicted_normalised']:.2f}, |error| median "
        f"{100 * s['median_abs_error_normalised']:.1f} %, worst "
        f"{100 * s['worst_abs_error_normalised']:.1f} %",
        f"  canary {s['canary_range'][0]:.0f}-{s['canary_range'][1]:.0f} ms during the direct "
        f"measurement, {min(s['table_canary_ms']):.0f}-{max(s['table_canary_ms']):.0f} ms while "
        f"the tables filled; table filling {s['table_s']:.0f} s, direct measurement "
        f"{s['direct_s']:.0f} s",
    ]
    if "tau_direct_halves" in s:
        lines.append(
            f"  direct even passes vs odd passes: tau {s['tau_direct_halves']:.2f}, median "
            f"|difference| {100 * s['median_halves_difference']:.1f} % (normalised: tau "
            f"{s['tau_normalised_halves']:.2f}, "
            f"{100 * s['median_normalised_halves_difference']:.1f} %)"
        )
    if "tau_proxy" in s:
        lines.append(f"  old proxy vs measured: tau {s['tau_proxy']:.2f}")
    far = [f"{alike} of {n} at least {100 * float(gap):.0f} % apart"
           for gap, (alike, n) in s["far_pairs"].items()]  # fmt: skip
    lines.append(f"  pairs ordered as measured, of those predicted far apart: {'; '.join(far)}")
    if s.get("pick") == "spread":
        pool = s["pool_predicted_ms"]
        lines.append(
            f"  picked spread over {len(pool)} configs predicted at {min(pool) / 1e3:.1f}-"
            f"{max(pool) / 1e3:.1f} s (a check of configs far apart, not of close ones)"
        )
    return "\n".join(lines)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", type=positive_int, default=12, help="references + random")
    p.add_argument("--large", type=natural_int, default=4, help="configs also run at 5x256x256")
    p.add_argument("--large-pick", choices=("first", "spread"), default="first",
                   help="which run at 5x256x256: the first --large configs, or --large of all "
                   "--configs spread evenly over their predicted latencies there (every one is "
                   "predicted, so the table covers them all)")  # fmt: skip
    p.add_argument("--large-only", action="store_true", help="skip the 3x128x128 target")
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="timed forwards per visit at 3x128x128")  # fmt: skip
    p.add_argument("--large-repeats", type=positive_int, default=1, help="the same at 5x256x256")
    p.add_argument("--passes", type=positive_int, default=4,
                   help="interleaved passes over the configs at 3x128x128 (2 or more: the even "
                   "passes against the odd ones are the measurement's own ceiling)")  # fmt: skip
    p.add_argument("--large-passes", type=positive_int, default=2, help="the same at 5x256x256")
    p.add_argument(
        "--profile",
        action="store_true",
        help="compare the prediction with each whole network's profile, part by part",
    )
    p.add_argument("--threads", type=positive_int, default=2,
                   help="torch threads for every timing (a table is per thread count)")  # fmt: skip
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to predict and time (on a GPU, give --repeats and --large-repeats "
                   "about 20)")  # fmt: skip
    p.add_argument("--seed", type=natural_int, default=0)
    p.add_argument("--tables", type=Path, default=None, help="default: studies/latency_tables")
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    p.add_argument("--report", type=Path, nargs="+", default=None, metavar="JSON",
                   help="time nothing: print what the run that wrote these --out files "
                   "measured")  # fmt: skip
    args = p.parse_args(argv)
    if args.configs < 2 or args.large == 1:
        p.error("--configs and --large (unless 0) must be at least 2: a Kendall tau needs pairs")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: this machine has no CUDA device")
    args.device = torch.device(args.device)
    args.stored = []  # (path, its JSON) per --report file, read once
    for path in args.report or ():
        try:
            stored = json.loads(path.read_text())
            rows = stored["rows"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            p.error(f"--report {path}: not the rows of an --out file ({e})")
        lacking = sorted(set(_STORED) - set(rows[0])) if rows else ["rows"]
        if lacking:
            p.error(f"--report {path}: its rows lack {', '.join(lacking)} (an older format)")
        args.stored.append((path, stored))
    return args


_STORED = ("shape", "predicted_ms", "measured_ms", "error", "normalised_ms", "normalised_error",
           "visits", "table_canary_ms", "predict_s", "measure_s")  # fmt: skip
"""Row fields :func:`summarise` reads."""
_POOL = ("pick", "table_s", "pool_predicted_ms")
"""Summary fields of a spread pick that its rows alone do not give."""


def report_stored(files: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    """Print the summary of every target in each stored file (path, its JSON), as the run that
    wrote it did (the pairs predicted far apart included)."""
    for path, stored in files:
        rows = stored["rows"]
        for shape in dict.fromkeys(r["shape"] for r in rows):
            s = summarise([r for r in rows if r["shape"] == shape])
            run = next((x for x in stored.get("summary", ()) if x.get("shape") == shape), {})
            s.update({k: run[k] for k in _POOL if k in run})  # a spread pick's whole pool
            print(f"{path.name}:\n{report(s)}", flush=True)


def main() -> None:
    args = parse()
    if args.report:
        report_stored(args.stored)
        return
    torch.set_num_threads(args.threads)
    tune_malloc()
    configs = space_configs(load_space("aggressive"), samples=args.configs * 4, seed=args.seed)
    configs = configs[: args.configs]
    print(f"{len(configs)} configs, torch {torch.__version__}, {torch.get_num_threads()} threads",
          flush=True)  # fmt: skip
    canary = functools.partial(canary_ms, args.device)
    small: list[dict[str, Any]] = []
    if not args.large_only:
        small = measure_rows(predict_rows(configs, SMALL, args, canary), configs, SMALL, args,
                             args.repeats, args.passes, canary)  # fmt: skip
    summaries = [summarise(small)] if small else []
    large: list[dict[str, Any]] = []
    if args.large:
        pool = configs if args.large_pick == "spread" else configs[: args.large]
        predicted = predict_rows(pool, LARGE, args, canary)
        chosen = list(range(len(pool)))
        if args.large_pick == "spread":
            chosen = spread(predicted, args.large)
            print(f"{format_shape(LARGE)}: measuring #{', #'.join(map(str, chosen))}, spread "
                  f"over the {len(pool)} predictions", flush=True)  # fmt: skip
        large = measure_rows([predicted[i] for i in chosen], [pool[i] for i in chosen], LARGE,
                             args, args.large_repeats, args.large_passes, canary)  # fmt: skip
        summaries.append({**summarise(large), "pick": args.large_pick,
                          "table_s": sum(r["predict_s"] for r in predicted),
                          "pool_predicted_ms": [r["predicted_ms"] for r in predicted]})  # fmt: skip
    for s in summaries:
        print(report(s), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"rows": small + large, "summary": summaries}, indent=1))


if __name__ == "__main__":
    main()
