"""bf16 autocast against fp32 on this CPU, for full-width deployment models.

Usage::

    python -u benchmarks/cpu_bf16.py [--presets baseline,scheme_a]
        [--shapes 3x128x128,5x256x256] [--warmup 1] [--repeats 2] [--ops 3x32x32]

Prints whether oneDNN runs bf16 natively on this CPU (without it, PyTorch's convolutions and
matmuls take reference kernels in bf16), then per preset and input shape the deployment forward
(``measure_latency``: eval, inference mode, autocast) in fp32 and in bf16 and their ratio. With
``--ops TxHxW`` it also lists the operators with the most self time in one bf16 forward of the
first preset at that shape, so a kernel that leaves oneDNN shows by name (``slow_conv3d``,
``_slow_conv2d``).

To see a CPU without native bf16 on one that has it, limit oneDNN's instruction set:
``ONEDNN_MAX_CPU_ISA=AVX2 python -u benchmarks/cpu_bf16.py ...``.

Run it alone on the machine: two processes on 2 cores make OpenMP spin.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from model import VRTSpike, VRTSpikeConfig, load_preset
from model.errors import ConfigError
from search.arguments import shape_arg
from search.cli import OneLineParser, natural_int, repeat_count
from search.measure.device import autocast, cpu_bf16_native
from search.measure.latency import measure_latency
from search.measure.target import format_shape


def _shapes(text: str) -> list[tuple[int, int, int]]:
    return [shape_arg(t) for t in text.split(",")]


def _presets(text: str) -> dict[str, VRTSpikeConfig]:
    try:
        return {name: load_preset(name) for name in text.split(",")}
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _inputs(model: VRTSpike, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    t, h, w = shape
    k = model.cfg.data.num_voxel_bins
    return torch.rand(1, t, 3, h, w), torch.rand(1, t, k, h, w)


def _forward_ms(model: VRTSpike, shape: tuple[int, int, int], amp, args) -> float:  # type: ignore[no-untyped-def]
    rgb, spike = _inputs(model, shape)
    r = measure_latency(
        model, rgb, spike, amp=amp, warmup=args.warmup, repeats=args.repeats, max_attempts=1,
        profile_runs=0, measure_memory=False,
    )  # fmt: skip
    return r.median_ms


def _ops(model: VRTSpike, shape: tuple[int, int, int]) -> None:
    rgb, spike = _inputs(model, shape)
    with torch.inference_mode(), autocast("cpu", torch.bfloat16):
        model.eval()(rgb, spike)
        with torch.profiler.profile() as prof:
            model(rgb, spike)
    print(f"\none bf16 forward at {format_shape(shape)}, operators by self time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main() -> None:
    """Parse the options and time each preset and shape in both precisions."""
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", type=_presets, default="baseline,scheme_a", metavar="NAME,...")
    p.add_argument("--shapes", type=_shapes, default="3x128x128,5x256x256", metavar="TxHxW,...")
    p.add_argument("--warmup", type=natural_int, default=1)
    p.add_argument("--repeats", type=repeat_count, default=2, help="timed forwards (at least 2)")
    p.add_argument("--ops", type=shape_arg, default=None, metavar="TxHxW")
    args = p.parse_args()
    torch.set_num_threads(2)
    flags = (
        set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    )
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU flags: {isa or '?'}")
    print(f"oneDNN runs bf16 natively: {cpu_bf16_native()}")
    models = {name: VRTSpike(cfg) for name, cfg in args.presets.items()}
    if args.ops is not None:
        _ops(next(iter(models.values())), args.ops)
    print(f"\ndeployment forward, median of {args.repeats} after {args.warmup} warm-up:")
    for shape in args.shapes:
        text = format_shape(shape)
        for name, model in models.items():
            fp32 = _forward_ms(model, shape, None, args)
            bf16 = _forward_ms(model, shape, torch.bfloat16, args)
            print(f"  {name:10s} {text:10s} fp32 {fp32:10.0f} ms  bf16 {bf16:10.0f} ms  "
                  f"bf16/fp32 {bf16 / fp32:5.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
