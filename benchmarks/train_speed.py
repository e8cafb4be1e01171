"""Training-step speed of a budget's proxy: before vs after in one run, per part, per op, compiled.

Usage::

    python -u benchmarks/train_speed.py --before REV [--preset baseline] [--budget cpu]
        [--steps 10] [--rounds 3] [--parts] [--ops] [--compile]

- **Before/after**: the same training (``train_model``: same config, data, seed and steps) runs
  in a child process on ``REV`` checked out in a temporary git worktree (``before``), on this
  tree computing the same function (``after``: raw spike voxels, nothing frozen, as before) and
  on this tree with its own recipe (``recipe``: normalised voxels, flow and alignment frozen for
  ``TRAIN.FIX_ITER`` steps), alternating for ``--rounds`` rounds; printed: clips/s (median over
  rounds), the ratios, the FLOP rate (3 x the forward FLOPs of a training clip per clip: forward
  and backward), and the largest difference between the ``before`` and ``after`` loss curves
  (same results up to float tolerance).
- ``--parts``: forward + backward time of each part of the network (each top-level module run
  alone on the inputs it saw in a real step), beside one whole step.
- ``--ops``: the 15 operators with the most self time in one profiled step.
- ``--compile``: the step with each TMSA block compiled by ``torch.compile`` (regional
  compilation: one compiled graph per block variant), with the compile time.

Run it alone on the machine: two processes on 2 cores make OpenMP spin and the figures become
10-30x worse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child(preset: str, budget_name: str, steps: int, legacy: bool) -> None:
    """Train once in this process (whichever tree PYTHONPATH names) and print JSON.

    ``legacy``: on a tree that has them, raw spike voxels and no frozen parameters, so the
    function trained is the one of trees before them.
    """
    import inspect

    import torch

    from model import load_preset
    from search.budgets import apply_budget, get_budget
    from search.data import load_synthetic

    try:
        from search.measure.train import train_model
    except ImportError:  # trees before search/ was split into layers
        from search.train import train_model  # type: ignore[no-redef]
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    budget = dataclasses.replace(get_budget(budget_name), steps=steps, warmup_steps=1)
    cfg = apply_budget(load_preset(preset), budget)
    kwargs = {}
    if legacy and "normalise" in inspect.signature(load_synthetic).parameters:
        kwargs["normalise"] = False
    if legacy and "FIX_KEYS" in cfg.to_dict()["TRAIN"]:
        cfg = cfg.with_overrides({"TRAIN.FIX_KEYS": []})
    data = load_synthetic(budget.data_spec(0), crop=budget.crop_size, seed=0, **kwargs)
    r = train_model(cfg, budget, data, device="cpu", seed=0).result
    print(json.dumps({"clips_per_s": r.samples_per_s, "loss": list(r.loss_curve)}))


def _run_tree(tree: Path, args: argparse.Namespace, *, legacy: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--child", "--preset", args.preset, "--budget", args.budget]
    cmd += ["--steps", str(args.steps)] + (["--legacy"] if legacy else [])
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _training_gflop(preset: str, budget_name: str) -> float:
    """FLOPs of one training clip (forward and backward, 3 x the forward) in GFLOP."""
    from model import load_preset
    from search.measure.budgets import apply_budget, get_budget
    from search.measure.cost import count_cost

    budget = get_budget(budget_name)
    cfg = apply_budget(load_preset(preset), budget)
    crop = budget.crop_size
    return 3 * count_cost(cfg, frames=budget.clip_len, height=crop, width=crop).gflops


def _before_after(args: argparse.Namespace) -> None:
    gflop = _training_gflop(args.preset, args.budget)
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(before),
                        args.before], check=True)  # fmt: skip
        try:
            runs: dict[str, list[dict]] = {"before": [], "after": [], "recipe": []}
            for k in range(args.rounds):
                for name, tree in (("before", before), ("after", ROOT), ("recipe", ROOT)):
                    runs[name].append(_run_tree(tree, args, legacy=name != "recipe"))
                    rate = runs[name][-1]["clips_per_s"]
                    print(f"round {k + 1}: {name:6s} {rate:.3f} clips/s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                           check=False)  # fmt: skip
    rate = {n: statistics.median(r["clips_per_s"] for r in runs[n]) for n in runs}
    diff = max(
        abs(a - b) for a, b in zip(runs["before"][0]["loss"], runs["after"][0]["loss"], strict=True)
    )
    print(
        f"\n{args.preset} on the {args.budget} budget, {args.steps} steps, median of {args.rounds}:"
    )
    for name in ("before", "after"):
        print(f"  {name:6s} {rate[name]:.3f} clips/s, {rate[name] * gflop:.1f} GFLOP/s")
    print(
        f"  speed-up {rate['after'] / rate['before']:.2f}x; training FLOPs {gflop:.1f} GFLOP/clip"
    )
    print(f"  largest loss difference over the {args.steps} steps: {diff:.2e}")


def _session(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import torch

    from model import load_preset
    from search.measure.budgets import apply_budget, get_budget
    from search.measure.train import _prepare
    from search.study.runner import load_data

    torch.set_num_threads(2)
    budget = get_budget(args.budget)
    cfg = apply_budget(load_preset(args.preset), budget)
    data = load_data("synthetic", budget, seed=0)
    session = _prepare(cfg, budget, data, device=torch.device("cpu"), seed=0, init_state=None,
                       steps=budget.steps)  # fmt: skip
    return cfg, session


def _timed_steps(cfg, s, steps: int) -> float:  # type: ignore[no-untyped-def]
    from search.measure.train import _step

    times = []
    for k in range(steps):
        t = time.perf_counter()
        _step(s.model, s.opt, s.scaler, s.batches, cfg=cfg, amp=s.amp, step=k)
        times.append(time.perf_counter() - t)
    return statistics.median(times[2:] or times) * 1e3


def _parts(args: argparse.Namespace) -> None:
    import torch

    from search.measure.train import charbonnier

    cfg, s = _session(args)
    m, batch = s.model, next(s.batches)
    modules = {"flow (spynet)": m.spynet}
    if m.use_spike:
        modules["spike_encoder"] = m.spike_encoder
        modules |= {f"spike_tsa{k}": v for k, v in m.spike_tsa.items()}
        modules |= {f"fusion{k}": v for k, v in m.fusion.items()}
    modules |= {f"stage{i}": st for i, st in enumerate(m.stages, start=1)}
    modules |= {f"stage8 group {i}": g for i, g in enumerate(m.stage8)}
    seen: dict[str, tuple] = {}

    def keep(name: str):  # type: ignore[no-untyped-def]
        def hook(mod, a, kw, out) -> None:  # type: ignore[no-untyped-def]
            seen.setdefault(name, (mod, a, kw))  # a hook returning a value replaces the output

        return hook

    hooks = [
        mod.register_forward_hook(keep(name), with_kwargs=True) for name, mod in modules.items()
    ]
    charbonnier(m(batch["blurry"], batch["spike"]), batch["sharp"], 1e-6).backward()
    for h in hooks:
        h.remove()

    def run(name: str) -> None:
        mod, a, kw = seen[name]
        a = [
            x.detach().requires_grad_(x.is_floating_point()) if torch.is_tensor(x) else x for x in a
        ]
        out = mod(*a, **kw)
        outs = [t for t in (out if isinstance(out, list | tuple) else [out]) if torch.is_tensor(t)]
        torch.autograd.backward(outs, [torch.ones_like(t) for t in outs])

    times = {}
    for name in modules:
        for _ in range(2):
            run(name)
        t = time.perf_counter()
        for _ in range(5):
            run(name)
        times[name] = (time.perf_counter() - t) / 5 * 1e3
    step = _timed_steps(cfg, s, 7)
    print(f"\nforward + backward per part ({args.preset}, {args.budget} budget), ms:")
    for name, ms in times.items():
        print(f"  {name:16s} {ms:8.1f}  {100 * ms / step:5.1f} %")
    rest = step - sum(times.values())
    print(f"  {'rest':16s} {rest:8.1f}  {100 * rest / step:5.1f} %  (head, alignment, loss, AdamW)")
    print(f"  {'whole step':16s} {step:8.1f}")


def _ops(args: argparse.Namespace) -> None:
    from torch.profiler import ProfilerActivity, profile

    from search.measure.train import _step

    cfg, s = _session(args)
    _timed_steps(cfg, s, 3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _step(s.model, s.opt, s.scaler, s.batches, cfg=cfg, amp=s.amp, step=3)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def _compiled(args: argparse.Namespace) -> None:
    import torch

    from model.tmsa import TMSABlock

    cfg, s = _session(args)
    eager = _timed_steps(cfg, s, 6)
    torch._dynamo.config.cache_size_limit = 64
    blocks = [b for b in s.model.modules() if isinstance(b, TMSABlock)]
    for block in blocks:
        block.compile(dynamic=False)
    t = time.perf_counter()
    _timed_steps(cfg, s, 1)
    compile_s = time.perf_counter() - t
    compiled = _timed_steps(cfg, s, 6)
    pays = (
        f"pays off after {compile_s * 1e3 / (eager - compiled):.0f} steps"
        if compiled < eager
        else "never pays off (the compiled step is not faster)"
    )
    print(f"\n{len(blocks)} TMSA blocks compiled: first step {compile_s:.0f} s (compiling); "
          f"step {eager:.0f} ms eager, {compiled:.0f} ms compiled ({eager / compiled:.2f}x); "
          f"{pays}")  # fmt: skip


def main() -> None:
    """Parse the options and run the asked parts."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", help="git revision to compare against (before the change)")
    p.add_argument("--preset", default="baseline")
    p.add_argument("--budget", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--parts", action="store_true")
    p.add_argument("--ops", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--legacy", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(args.preset, args.budget, args.steps, args.legacy)
    if args.before:
        _before_after(args)
    if args.parts:
        _parts(args)
    if args.ops:
        _ops(args)
    if args.compile:
        _compiled(args)
    return None


if __name__ == "__main__":
    main()
