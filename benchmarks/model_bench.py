"""Model benchmark: parameters, FLOPs per part, and CPU forward time against official VRT.

Usage (2 threads, fp32, inference mode):

    python benchmarks/model_bench.py                      # ours only
    python benchmarks/model_bench.py --official network_vrt.py   # + official VRT, same run
    python -u benchmarks/model_bench.py --official network_vrt.py --shapes 6x128x128,5x256x256 \
        --repeats 3 --warmup 1 --skip-flops            # + the GoPro network at deployment sizes

``--official`` takes the official ``models/network_vrt.py`` of JingyunLiang/VRT (not part of this
project; fetch it yourself). torchvision is not needed: its ``deform_conv2d`` is replaced by this
project's pure-PyTorch DCN, which is faster than torchvision's CPU kernel, so the official timing
here is, if anything, flattering to the official network. Runs of the two models are interleaved
so that machine noise hits both alike; the medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import VRTSpike, VRTSpikeConfig, load_preset  # noqa: E402
from model.deform import deform_conv2d  # noqa: E402
from model.sdpa import math_attention  # noqa: E402
from search.measure.target import parse_shape  # noqa: E402

# The official "tiny" configuration of the issue: 4 frames 64x64, temporal window 2, spatial
# window 8, depths [2]*9, dims 32 (stages 1-7) / 48 (stage 8), 8 deformable groups, no spike.
# VRT's official video-deblurring network (task 006, GoPro), as its test script builds it; ours is
# the ``vrt_gopro`` preset.
GOPRO_OFFICIAL = dict(
    upscale=1,
    img_size=[6, 192, 192],
    window_size=[6, 8, 8],
    depths=[8] * 7 + [4] * 4,
    indep_reconsts=[9, 10],
    embed_dims=[96] * 7 + [120] * 4,
    num_heads=[6] * 11,
    pa_frames=2,
    deformable_groups=16,
)
TINY_OFFICIAL = dict(
    upscale=1,
    img_size=[4, 64, 64],
    window_size=[2, 8, 8],
    depths=[2] * 9,
    indep_reconsts=[],
    embed_dims=[32] * 7 + [48] * 2,
    num_heads=[4] * 9,
    deformable_groups=8,
    pa_frames=2,
)


def tiny_official_config() -> VRTSpikeConfig:
    """Our config equal to :data:`TINY_OFFICIAL`."""
    return VRTSpikeConfig().with_overrides(
        {
            "MODEL.USE_SPIKE": False,
            "MODEL.VRT_DEPTHS": [2] * 9,
            "MODEL.WINDOW_SIZE": 8,
            "MODEL.TEMPORAL_WINDOW": 2,
            "MODEL.EMBED_DIMS": [32] * 7 + [48],
            "MODEL.NUM_HEADS": [4] * 8,
            "MODEL.DEFORMABLE_GROUPS": 8,
            "DATA.CLIP_LEN": 4,
        }
    )


def load_official(path: Path) -> types.ModuleType:
    """Import the official ``network_vrt.py`` with a torchvision stand-in for ``deform_conv2d``."""

    def tv_deform_conv2d(x, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None):  # type: ignore[no-untyped-def]
        pad = padding[0] if isinstance(padding, tuple) else padding
        dil = dilation[0] if isinstance(dilation, tuple) else dilation
        return deform_conv2d(x, offset, mask, weight, bias, padding=pad, dilation=dil)

    tv = types.ModuleType("torchvision")
    tv.ops = types.SimpleNamespace(deform_conv2d=tv_deform_conv2d)  # type: ignore[attr-defined]
    sys.modules.setdefault("torchvision", tv)
    spec = importlib.util.spec_from_file_location("official_vrt", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_flops(fn) -> int:  # type: ignore[no-untyped-def]
    """FLOPs of ``fn()``; attention on the math path, which the counter can see."""
    with math_attention(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def time_forwards(fns: dict[str, object], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Interleaved timing: each round runs every function once."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()  # type: ignore[operator]
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def part_flops(cfg: VRTSpikeConfig, frames: int, size: int) -> dict[str, int]:
    """FLOPs per part of our model on the meta device (no memory is allocated)."""
    with torch.device("meta"):
        model = VRTSpike(cfg).eval()
        rgb = torch.empty(1, frames, 3, size, size)
        spike = torch.empty(1, frames, cfg.data.num_voxel_bins, size, size)
    flops: dict[str, int] = {}

    class PartCounter:
        def __init__(self, name: str) -> None:
            self.name, self.mode = name, FlopCounterMode(display=False)

        def __enter__(self) -> None:
            self.mode.__enter__()

        def __exit__(self, *exc: object) -> None:
            self.mode.__exit__(*exc)
            flops[self.name] = self.mode.get_total_flops()

    model.set_part_timer(PartCounter)
    with torch.no_grad():
        total = count_flops(lambda: model(rgb, spike))
    flops["total"] = total
    return flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, help="path to the official network_vrt.py")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-flops", action="store_true", help="skip the 5x256x256 FLOP table")
    parser.add_argument("--shapes", default="", help="TxHxW,...: also time vrt_gopro (and the "
                        "official GoPro network with --official) at these inputs")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print("## Parameters")
    for name in ("baseline", "vrt_gopro", "scheme_a", "scheme_b"):
        with torch.device("meta"):
            m = VRTSpike(load_preset(name))
        total = sum(p.numel() for p in m.parameters())
        spynet = sum(p.numel() for p in m.spynet.parameters())
        print(f"{name:10s} {total:>12,d} params (SpyNet {spynet:,d})")

    if not args.skip_flops:
        print("\n## FLOPs per part, baseline, 1x5x256x256 (meta device)")
        flops = part_flops(load_preset("baseline"), 5, 256)
        total = flops.pop("total")
        for name, f in flops.items():
            print(f"{name:14s} {f / 1e9:9.1f} GFLOPs {100 * f / total:5.1f} %")
        rest = total - sum(flops.values())
        print(f"{'(outside parts)':14s} {rest / 1e9:9.1f} GFLOPs")
        print(f"{'total':14s} {total / 1e12:9.3f} TFLOPs")

    print(f"\n## Official tiny configuration, 1x4x3x64x64, fp32, {args.threads} threads")
    cfg = tiny_official_config()
    ours = VRTSpike(cfg).eval()
    rgb = torch.rand(1, 4, 3, 64, 64)
    fns: dict[str, object] = {}

    def run_ours() -> None:
        with torch.inference_mode():
            ours(rgb)

    fns["ours"] = run_ours
    print(
        f"ours     : {sum(p.numel() for p in ours.parameters()):,d} params, "
        f"{count_flops(run_ours) / 1e9:.2f} GFLOPs"
    )
    if args.official:
        off_mod = load_official(args.official)
        official = off_mod.VRT(**TINY_OFFICIAL).eval()

        def run_official() -> None:
            with torch.inference_mode():
                official(rgb)

        fns["official"] = run_official
        print(
            f"official : {sum(p.numel() for p in official.parameters()):,d} params, "
            f"{count_flops(run_official) / 1e9:.2f} GFLOPs"
        )
    times = time_forwards(fns, args.repeats, args.warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, ts in times.items():
        print(
            f"{name:9s}: median {med[name]:7.1f} ms  min {min(ts):7.1f}  max {max(ts):7.1f}  "
            f"(n={len(ts)})"
        )
    if "official" in med:
        print(f"speed-up : {med['official'] / med['ours']:.2f}x")
    for text in filter(None, args.shapes.split(",")):
        compare_gopro(parse_shape(text), args)


def compare_gopro(shape: tuple[int, int, int], args: argparse.Namespace) -> None:
    """``vrt_gopro`` against the official GoPro network at one input, interleaved."""
    t, h, w = shape
    print(f"\n## GoPro network, 1x{t}x3x{h}x{w}, fp32, {args.threads} threads")
    rgb = torch.rand(1, t, 3, h, w)
    models = {"ours": VRTSpike(load_preset("vrt_gopro")).eval()}
    if args.official:
        models["official"] = load_official(args.official).VRT(**GOPRO_OFFICIAL).eval()

    def forward(model: torch.nn.Module) -> object:
        def run() -> None:
            with torch.inference_mode():
                model(rgb)

        return run

    times = time_forwards({k: forward(m) for k, m in models.items()}, args.repeats, args.warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, ts in times.items():
        print(f"{name:9s}: median {med[name]:9.0f} ms  min {min(ts):9.0f}  max {max(ts):9.0f}  "
              f"(n={len(ts)})", flush=True)  # fmt: skip
    if "official" in med:
        print(f"speed-up : {med['official'] / med['ours']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
