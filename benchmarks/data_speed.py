"""Synthetic data generation speed and cache size, and what each budget's data leaves to gain.

Usage: ``python benchmarks/data_speed.py [--clips 8 --size 256x256 --frames 5 --bins 32]
[--stats smoke,cpu,gpu | --stats none]``. Generates clips on one core (torch and BLAS limited
to one thread), then caches a data set of the same spec to measure the bytes per clip, and
times item reads (full clip and a 64x64 crop). Then, per budget, over its validation clips:
blurry-input, spike-only and simple-fusion PSNR (:mod:`search.data.stats`; the same table as
``python -m search.data stats``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from search.budgets import get_budget  # noqa: E402
from search.data import SyntheticSpec, generate_clip, load_synthetic  # noqa: E402
from search.data.stats import format_header, format_row, synthetic_val_stats  # noqa: E402
from search.data.textures import PHOTO_TEXTURES, photo_texture  # noqa: E402


def main() -> None:
    """Print clips per second, cache MB per 100 clips, item read times and the PSNR table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--bins", type=int, default=32)
    parser.add_argument("--stats", default="smoke,cpu,gpu", help="budgets to score, or none")
    args = parser.parse_args()
    torch.set_num_threads(1)
    h, w = (int(v) for v in args.size.lower().split("x"))
    spec = SyntheticSpec(
        height=h, width=w, clip_len=args.frames, num_bins=args.bins, num_train=args.clips, num_val=0
    )
    for name in PHOTO_TEXTURES:  # decode the bundled photographs once, outside the timing
        photo_texture(name)

    start = time.perf_counter()
    for i in range(args.clips):
        generate_clip(spec, split="train", index=i)
    gen = time.perf_counter() - start
    print(f"spec: {h}x{w}, T={args.frames}, K={args.bins}, {spec.total_readouts} readouts/clip")
    print(f"generation: {args.clips / gen:.2f} clips/s ({gen / args.clips:.3f} s/clip, 1 thread)")

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        splits = load_synthetic(spec, cache_dir=tmp)
        cached = time.perf_counter() - start
        size = sum(p.stat().st_size for p in Path(splits.path).rglob("*") if p.is_file())
        print(
            f"cache: {size / args.clips * 100 / 2**20:.1f} MiB per 100 clips "
            f"(generate + write: {args.clips / cached:.2f} clips/s)"
        )
        val = splits.train.with_augment(flips=False)
        start = time.perf_counter()
        for i in range(args.clips):
            val[i]
        full = (time.perf_counter() - start) / args.clips
        crop = splits.train.with_crop(min(64, h, w))
        start = time.perf_counter()
        for i in range(args.clips):
            crop[i]
        cropped = (time.perf_counter() - start) / args.clips
        print(f"item read: full clip {full * 1e3:.1f} ms, 64x64 crop {cropped * 1e3:.1f} ms")

    names = [] if args.stats == "none" else args.stats.split(",")
    if names:
        print("\nvalidation clips of each budget (data seed 0):")
        print("\n".join(format_header()))
    for name in names:
        budget = get_budget(name)
        stats = synthetic_val_stats(budget.data_spec(0), num_clips=budget.num_val_clips, label=name)
        print(format_row(stats), flush=True)


if __name__ == "__main__":
    main()
