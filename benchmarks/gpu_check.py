"""GPU checks in one short run: CUDA latency per config and AMP mode, per-stage profile, the
attention kernel our masked SDPA call reaches, chunk invariance and an AMP training step.

    python benchmarks/gpu_check.py --out results.json      # needs CUDA; about 5 minutes on an H100

Prints one line per figure and writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import VRTSpike, load_preset  # noqa: E402
from search.latency import measure_latency  # noqa: E402
from search.measure.device import resolve_amp_dtype  # noqa: E402


def _say(results: dict, key: str, value: object) -> None:
    results[key] = value
    print(f"{key}: {json.dumps(value) if not isinstance(value, str) else value}", flush=True)


def latency_table(results: dict, *, frames: int, size: int, repeats: int) -> None:
    """Baseline in fp32/fp16/bf16, schemes A and B with their own AMP, vrt_gopro (no spike)."""
    runs = [
        ("baseline", None),
        ("baseline", "float16"),
        ("scheme_a", "float16"),
        ("scheme_b", "float16"),
        ("baseline", "bfloat16"),
        ("vrt_gopro", None),
    ]
    for name, amp_name in runs:
        cfg = load_preset(name)
        torch.manual_seed(0)
        model = VRTSpike(cfg).cuda()
        rgb = torch.rand(1, frames, 3, size, size, device="cuda")
        spike = torch.rand(1, frames, cfg.data.num_voxel_bins, size, size, device="cuda")
        amp = resolve_amp_dtype(amp_name is not None, amp_name or "auto", "cuda")
        t0 = time.perf_counter()
        lat = measure_latency(model, rgb, spike, amp=amp, warmup=3, repeats=repeats)
        _say(
            results,
            f"latency/{name}/{amp_name or 'fp32'}",
            {
                "median_ms": round(lat.median_ms, 2),
                "p90_ms": round(lat.p90_ms, 2),
                "cv": round(lat.cv, 4),
                "noisy": lat.noisy,
                "peak_mem_mb": lat.peak_mem_mb,
                "stage_sum_error": lat.stage_sum_error,
                "per_stage_ms": {k: round(v, 2) for k, v in lat.per_stage_ms.items()},
                "seconds": round(time.perf_counter() - t0, 1),
            },
        )
        del model
        torch.cuda.empty_cache()


def sdpa_kernels(results: dict) -> None:
    """Which SDPA backends accept a window-attention call with our additive float mask."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(4096, 6, 128, 16, device="cuda", dtype=torch.float16)
    mask = torch.randn(1, 6, 128, 128, device="cuda", dtype=torch.float16)
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
        try:
            with sdpa_kernel(backend):
                F.scaled_dot_product_attention(q, q, q, attn_mask=mask)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(20):
                    F.scaled_dot_product_attention(q, q, q, attn_mask=mask)
                torch.cuda.synchronize()
            _say(results, f"sdpa/{backend.name}", f"{(time.perf_counter() - t0) / 20 * 1e3:.3f} ms")
        except RuntimeError as e:
            _say(results, f"sdpa/{backend.name}", f"refused: {' '.join(str(e).split())[:120]}")


def chunk_invariance(results: dict) -> None:
    base = load_preset("baseline").with_overrides({"MODEL.FUSE.STAGES": [1, 2, 3, 4, 5, 6, 7]})
    torch.manual_seed(0)
    ref_model = VRTSpike(base).cuda().eval()
    rgb = torch.rand(1, 5, 3, 128, 128, device="cuda")
    spike = torch.rand(1, 5, 32, 128, 128, device="cuda")
    with torch.inference_mode():
        ref = ref_model(rgb, spike)
        worst = 0.0
        for chunk, tokens in ((16, 1024), (96, 65536), (128, 10**6)):
            over = {}
            for part in ("FUSE", "SPIKE_TSA"):
                over |= {
                    f"MODEL.{part}.CHUNK_SIZE": chunk,
                    f"MODEL.{part}.MAX_BATCH_TOKENS": tokens,
                }
            model = VRTSpike(base.with_overrides(over)).cuda().eval()
            model.load_state_dict(ref_model.state_dict())
            worst = max(worst, (model(rgb, spike) - ref).abs().max().item())
    _say(results, "chunk_invariance_max_abs_diff_fp32", worst)


def amp_training(results: dict) -> None:
    """A few fp16 (GradScaler) and bf16 training steps of the smoke proxy on CUDA."""
    from search.budgets import apply_budget, get_budget
    from search.data import load_synthetic
    from search.measure.train import train

    budget = get_budget("smoke")
    data = load_synthetic(budget.data_spec(0), cache_dir="/tmp/vrt_cache", crop=budget.crop_size)
    for dtype in ("float16", "bfloat16"):
        cfg = apply_budget(load_preset("baseline"), budget).with_overrides(
            {"TRAIN.AMP_ENABLED": True, "TRAIN.AMP_DTYPE": dtype}
        )
        r = train(cfg, budget, data, device="cuda", seed=0)
        _say(
            results,
            f"train/{dtype}",
            {
                "psnr_db": round(r.psnr_db, 3),
                "final_loss": r.loss_curve[-1],
                "samples_per_s": r.samples_per_s,
            },
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("CUDA is not available")
    results: dict = {}
    _say(results, "device", torch.cuda.get_device_name())
    _say(results, "torch", torch.__version__)
    for step in (sdpa_kernels, chunk_invariance, amp_training):
        try:
            step(results)
        except Exception as e:  # keep going: every figure that works is worth having
            _say(results, f"error/{step.__name__}", f"{type(e).__name__}: {e}")
    try:
        latency_table(results, frames=args.frames, size=args.size, repeats=args.repeats)
    except Exception as e:
        _say(results, "error/latency_table", f"{type(e).__name__}: {e}")
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
