"""How well each cheap accuracy signal ranks candidates the way long training ranks them.

Usage::

    python -u benchmarks/fidelity.py [--space conservative] [--budget cpu] [--configs 12]
        [--truth-scale 20] [--truth-seeds 0,1] [--out benchmarks/out/fidelity.json]
        [--report-only]

Candidates: the space's reference configurations, then random ones (``--sample-seed``), distinct
by accuracy key, at the budget's training widths (the parent's, which are the budget's). For each:

- **truth**: trained on its own from scratch for ``--truth-scale`` times the budget's steps, once
  per truth seed; the truth is the mean over the seeds, and the seeds' tau against each other is
  the ceiling a signal can reach;
- **(a) scratch**: the budget's steps from the trial's own initialisation (``--from-scratch``);
- **(b) inherited**: the weights from the space's elastic parent, no training;
- **(c) inherited + fine-tuned**: (b), then the budget's steps (what a study trial does now).

Every result is written to ``--out`` as soon as it exists, and a rerun skips what is there: the
truth takes hours on 2 CPU cores, so the benchmark can be stopped and resumed. The report (Kendall
tau and Spearman rho against the truth, top-3 overlap, wall time per signal with the parent's
build shared over a 50-trial study) covers the configurations whose truth is complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from model import VRTSpike, VRTSpikeConfig
from search.measure.budgets import Budget, apply_budget, get_budget
from search.measure.device import config_amp
from search.measure.train import evaluate, train_model
from search.report.ranks import kendall_tau, spearman_rho, top_overlap
from search.study.objective import accuracy_key
from search.study.parent import Parent, ensure_parent
from search.study.runner import load_data
from search.study.space import load_space
from search.study.tables import space_configs

STUDY_TRIALS = 50  # the parent's build is shared by the trials of one used-by study


def _candidates(space_name: str, budget: Budget, n: int, seed: int) -> list[VRTSpikeConfig]:
    """The references, then random configs, distinct by the accuracy key of what they train."""
    out: dict[str, VRTSpikeConfig] = {}
    for cfg in space_configs(load_space(space_name), samples=20 * n, seed=seed):
        out.setdefault(accuracy_key(apply_budget(cfg, budget)), cfg)
        if len(out) == n:
            break
    return list(out.values())


def _scratch(cfg: VRTSpikeConfig, budget: Budget, data: Any, steps: int, seed: int) -> dict:
    start = time.perf_counter()
    r = train_model(apply_budget(cfg, budget), budget, data, device="cpu", seed=seed, steps=steps)
    return {"gain_db": r.result.psnr_gain_db, "seconds": time.perf_counter() - start}


def _inherited(cfg: VRTSpikeConfig, budget: Budget, data: Any, parent: Parent, tune: bool) -> dict:
    start = time.perf_counter()
    child = parent.child_config(cfg, budget)
    state = parent.child_state(child, seed=0)
    if tune:
        r = train_model(child, budget, data, device="cpu", seed=0, init_state=state).result
        return {"gain_db": r.psnr_gain_db, "seconds": time.perf_counter() - start}
    model = VRTSpike(child)
    model.load_state_dict(state)
    amp = config_amp(child, "cpu")  # as a trial evaluates it
    scores, _ = evaluate(model, data.val, device="cpu", amp=amp, num_clips=budget.num_val_clips)
    gain = scores["psnr_db"] - scores["input_psnr_db"]
    return {"gain_db": gain, "seconds": time.perf_counter() - start}


def _jobs(args: argparse.Namespace, n: int) -> list[tuple[str, int]]:
    """(signal, config index): the cheap signals of every config first, then the truth config
    by config (both seeds), so that a stopped run has complete configurations."""
    jobs = [(sig, i) for i in range(n) for sig in ("scratch", "inherited", "finetuned")]
    return jobs + [(f"truth{s}", i) for i in range(n) for s in args.truth_seeds]


def _run(args: argparse.Namespace, results: dict[str, dict]) -> tuple[list[VRTSpikeConfig], Parent]:
    budget = get_budget(args.budget)
    data = load_data("synthetic", budget, seed=0)
    space = load_space(args.space)
    parent, _ = ensure_parent(space, budget, data, device="cpu", seed=0, data_name="synthetic")
    configs = _candidates(args.space, budget, args.configs, args.sample_seed)
    if args.report_only:
        return configs, parent
    for sig, i in _jobs(args, len(configs)):
        key = f"{sig}/{accuracy_key(apply_budget(configs[i], budget))}"
        if key in results:
            continue
        cfg = configs[i]
        if sig == "scratch":
            out = _scratch(cfg, budget, data, budget.steps, seed=0)
        elif sig.startswith("truth"):
            steps = args.truth_scale * budget.steps
            out = _scratch(cfg, budget, data, steps, seed=int(sig.removeprefix("truth")))
        else:
            out = _inherited(cfg, budget, data, parent, tune=sig == "finetuned")
        results[key] = out
        args.out.write_text(json.dumps(results, indent=1, sort_keys=True))
        print(f"{sig:>9} config {i:2d}: {out['gain_db']:+.3f} dB ({out['seconds']:.0f} s)",
              flush=True)  # fmt: skip
    return configs, parent


def _report(args: argparse.Namespace, configs: list, parent: Parent, results: dict) -> None:
    budget = get_budget(args.budget)
    keys = [accuracy_key(apply_budget(c, budget)) for c in configs]
    seeds = [f"truth{s}" for s in args.truth_seeds]
    done = [k for k in keys if all(f"{s}/{k}" in results for s in seeds)]
    steps = args.truth_scale * budget.steps
    print(f"\n{len(done)} of {len(configs)} configurations have their truth "
          f"({steps} steps from scratch, seeds {args.truth_seeds})")  # fmt: skip
    if len(done) < 3:
        return
    truth = [statistics.mean(results[f"{s}/{k}"]["gain_db"] for s in seeds) for k in done]
    if len(seeds) >= 2:
        a, b = ([results[f"{s}/{k}"]["gain_db"] for k in done] for s in seeds[:2])
        print(f"seed-to-seed tau of the truth (the ceiling): {kendall_tau(a, b):+.2f}")
    share = parent.result.get("build_seconds", 0.0) / STUDY_TRIALS
    print(f"parent: {parent.path.name}, gain {parent.result.get('psnr_gain_db', float('nan')):+.3f}"
          f" dB, built in {parent.result.get('build_seconds', 0):.0f} s ({share:.0f} s a trial "
          f"of a {STUDY_TRIALS}-trial study)")  # fmt: skip
    print("signal     tau   rho  top-3  s/config  gains (dB) in config order")
    for sig in ("scratch", "inherited", "finetuned"):
        vals = [results[f"{sig}/{k}"]["gain_db"] for k in done]
        secs = statistics.mean(results[f"{sig}/{k}"]["seconds"] for k in done)
        secs += share if sig != "scratch" else 0.0
        print(f"{sig:9} {kendall_tau(vals, truth):+.2f} {spearman_rho(vals, truth):+.2f}"
              f"  {top_overlap(vals, truth, 3)}/3  {secs:8.0f}  "
              + " ".join(f"{v:+.2f}" for v in vals))  # fmt: skip
    print(f"{'truth':9}                            " + " ".join(f"{v:+.2f}" for v in truth))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="conservative")
    p.add_argument("--budget", default="cpu")
    p.add_argument("--configs", type=int, default=12)
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--truth-scale", type=int, default=20)
    p.add_argument("--truth-seeds", type=lambda t: [int(s) for s in t.split(",")], default=[0, 1])
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/fidelity.json"))
    p.add_argument("--report-only", action="store_true", help="print the report, run nothing")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    configs, parent = _run(args, results)
    _report(args, configs, parent, results)


if __name__ == "__main__":
    main()
