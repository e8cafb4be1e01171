"""How well each cheap accuracy signal ranks candidates the way long training ranks them.

Usage::

    python -u benchmarks/fidelity.py [--space conservative] [--budget cpu] [--configs 12]
        [--truth-scale 50] [--truth-seeds 0,1] [--signals scratch,inherited,finetuned,truth]
        [--device cpu] [--shard K/N] [--out benchmarks/results/fidelity-conservative-cpu.json]
        [--report-only]

Candidates: the space's reference configurations, then random ones (``--sample-seed``), distinct
by accuracy key, at the budget's training widths (the parent's, which are the budget's). For each:

- **truth**: trained on its own from scratch for ``--truth-scale`` times the budget's steps (50:
  1500 on ``cpu``; at 20x, 600 steps, a network has not started to use the spikes), once per
  truth seed; the truth is the mean over the seeds, and the seeds' tau against each other is
  the ceiling a signal can reach (a truth's results are named by its steps, ``truth0@1500/...``,
  so truths of two scales coexist in one file);
- **(a) scratch**: the budget's steps from the trial's own initialisation (``--from-scratch``);
- **(b) inherited**: the weights from the space's elastic parent, no training;
- **(c) inherited + fine-tuned**: (b), then the budget's steps (what a study trial does now).

Every result is merged into ``--out`` as soon as it exists (under a host lock, so several
processes may share the file), with what produced it (torch, model code, commit, device, threads);
a rerun skips what is there. The truth takes hours on 2 CPU cores, longer than one sitting: the
results file is kept in the repository, so a later run on another machine resumes it, and a
truth job (about an hour) saves its training state every 100 steps under
``studies/checkpoints/fidelity/`` (deleted once its result is merged), so a run stopped mid-job
continues that job bit-identically on the same host and thread count. ``--shard
K/N`` runs every N-th job from the K-th, so that N one-thread processes share the jobs (on 2
cores two one-thread processes train 1.7x more steps an hour than one two-thread process; wall
times of the cheap signals are only comparable from a run alone). The parent is built (or loaded)
only when a job needs it. The report (Kendall tau and Spearman rho against the truth, each
tau's jackknife standard error over the configurations, top-3 overlap, wall time per signal
with the parent's build shared over a 50-trial study; beside them the tau of the parameter
count, a signal that costs nothing) covers the configurations whose truth is complete; the
inherited signals are given for every parent the file holds results of (this code's parent
first), each with its build, and the ceiling is the mean seed-to-seed tau over every pair of
truth seeds. ``--device cuda`` trains there instead (the budget, and so what is trained, stays
the same; each result records the device it was made on). A parent build prints about 20
progress lines.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from model import VRTSpike, VRTSpikeConfig
from search.cli import OneLineParser, natural_int, positive_int, step_printer
from search.files import atomic_path
from search.measure.budgets import Budget, apply_budget, get_budget
from search.measure.cost import param_count
from search.measure.device import config_amp, device_name, model_code_digest
from search.measure.train import StepProgress, evaluate, train_model
from search.report.ranks import jackknife_se, kendall_tau, spearman_rho, top_overlap
from search.study.locks import host_lock
from search.study.objective import accuracy_key
from search.study.parent import Parent, ensure_parent, parent_file
from search.study.runner import load_data
from search.study.space import load_space
from search.study.tables import space_configs

STUDY_TRIALS = 50  # the parent's build is shared by the trials of one used-by study
SIGNALS = ("scratch", "inherited", "finetuned", "truth")
CHECKPOINTS = Path("studies/checkpoints/fidelity")  # a truth job's state while it runs (ignored)
CHECKPOINT_EVERY = 100  # steps (about 4 minutes of a one-thread truth job on this CPU)


def _candidates(space_name: str, budget: Budget, n: int, seed: int) -> list[VRTSpikeConfig]:
    """The references, then random configs, distinct by the accuracy key of what they train."""
    out: dict[str, VRTSpikeConfig] = {}
    for cfg in space_configs(load_space(space_name), samples=20 * n, seed=seed):
        out.setdefault(accuracy_key(apply_budget(cfg, budget)), cfg)
        if len(out) == n:
            break
    return list(out.values())


def _provenance(device: str) -> dict[str, Any]:
    """What produced a result: a later run on another machine may add to the same file."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "torch": torch.__version__,
        "model_code": model_code_digest(),
        "commit": commit,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
    }


def _merge(path: Path, key: str, value: dict) -> dict[str, dict]:
    """Add ``key`` to the results file under a host lock (atomically); returns the whole file."""
    with host_lock("fidelity", str(path.resolve())):
        results = json.loads(path.read_text()) if path.exists() else {}
        results[key] = value
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return results


def _scratch(
    cfg: VRTSpikeConfig, budget: Budget, data: Any, device: str, steps: int, seed: int,
    progress: StepProgress | None = None, checkpoint: Path | None = None,
) -> dict:  # fmt: skip
    """Train from scratch; with ``checkpoint`` the job saves its state there every
    :data:`CHECKPOINT_EVERY` steps and a rerun continues it (seconds: training and evaluation
    over every segment; ``resumed``: whether it continued a stopped job)."""
    start = time.perf_counter()
    cfg = apply_budget(cfg, budget)
    resumed = checkpoint is not None and checkpoint.exists()
    r = train_model(cfg, budget, data, device=device, seed=seed, steps=steps, progress=progress,
                    checkpoint=checkpoint, checkpoint_every=CHECKPOINT_EVERY).result  # fmt: skip
    if checkpoint is None:
        return {"gain_db": r.psnr_gain_db, "seconds": time.perf_counter() - start}
    return {"gain_db": r.psnr_gain_db, "seconds": r.train_seconds + r.eval_seconds,
            "resumed": resumed}  # fmt: skip


def _checkpoint(key: str) -> Path:
    """Where the truth job of result ``key`` keeps its state while it runs."""
    return CHECKPOINTS / (key.replace("/", "--").replace("@", "-") + ".pt")


def _inherited(
    cfg: VRTSpikeConfig, budget: Budget, data: Any, device: str, parent: Parent, tune: bool
) -> dict:
    start = time.perf_counter()
    child = parent.child_config(cfg, budget)
    state = parent.child_state(child, seed=0)
    if tune:
        r = train_model(child, budget, data, device=device, seed=0, init_state=state).result
        return {"gain_db": r.psnr_gain_db, "seconds": time.perf_counter() - start}
    model = VRTSpike(child).to(device)
    model.load_state_dict(state)
    amp = config_amp(child, device)  # as a trial evaluates it
    scores, _ = evaluate(model, data.val, device=device, amp=amp, num_clips=budget.num_val_clips)
    gain = scores["psnr_db"] - scores["input_psnr_db"]
    return {"gain_db": gain, "seconds": time.perf_counter() - start}


def _jobs(args: argparse.Namespace, costs: list[float | None]) -> list[tuple[str, int]]:
    """(signal, config index) of this shard: the cheap signals of every config first, then the
    truth config by config (every seed), so that a stopped run has complete configurations.
    The truth takes the configurations whose earlier truth jobs were quickest first (``costs``:
    their mean seconds, None where none ran; those come last, in order), so that the shards of
    a sitting too short for every job finish as many as they can."""
    n = len(costs)
    cheap = [s for s in SIGNALS[:3] if s in args.signals]
    jobs = [(sig, i) for i in range(n) for sig in cheap]
    if "truth" in args.signals:
        order = sorted(range(n), key=lambda i: (costs[i] is None, costs[i] or 0.0, i))
        jobs += [(f"truth{s}", i) for i in order for s in args.truth_seeds]
    k, of = args.shard
    return jobs[k::of]


def _truth_costs(results: dict, keys: list[str], steps: int) -> list[float | None]:
    """Mean seconds of the truth jobs of ``steps`` steps the file holds for each accuracy key."""
    out: list[float | None] = []
    for key in keys:
        secs = [v["seconds"] for k, v in results.items()
                if k.startswith("truth") and k.endswith(f"@{steps}/{key}")]  # fmt: skip
        out.append(statistics.mean(secs) if secs else None)
    return out


class _Parent:
    """The space's elastic parent, built or loaded at the first job that needs it."""

    def __init__(self, args: argparse.Namespace, budget: Budget, data: Any) -> None:
        self._args, self._budget, self._data = args, budget, data
        self.parent: Parent | None = None

    def get(self) -> Parent:
        if self.parent is None:
            space = load_space(self._args.space)
            self.parent, _ = ensure_parent(
                space,
                self._budget,
                self._data,
                device=self._args.device,
                seed=0,
                data_name="synthetic",
                progress=step_printer("parent"),
            )
            info = {
                "file": self.parent.path.name,
                "gain_db": self.parent.result.get("psnr_gain_db"),
                "build_seconds": self.parent.result.get("build_seconds"),
                "ranks": self.parent.result.get("ranks", 1),
            }
            _merge(self._args.out, f"parent@{self.parent.key}", info)
        return self.parent


def _truth_steps(args: argparse.Namespace, budget: Budget) -> int:
    return args.truth_scale * budget.steps


def _parent_digest(args: argparse.Namespace, budget: Budget) -> str:
    """The key digest of the parent the inherited signals use (nothing is built)."""
    return parent_file(load_space(args.space), budget, seed=0, data_name="synthetic")[1]


def _signal_name(sig: str, args: argparse.Namespace, budget: Budget) -> str:
    """The prefix of a signal's results: a truth's names its steps (``truth0@1500``), so truths
    of two ``--truth-scale`` coexist in one file; an inherited signal names its parent's key
    (``finetuned@eaecc6fcc836``), so a parent built otherwise adds results beside the old."""
    if sig.startswith("truth"):
        return f"{sig}@{_truth_steps(args, budget)}"
    if sig in ("inherited", "finetuned"):
        return _inherited_name(sig, _parent_digest(args, budget))
    return sig


def _inherited_name(sig: str, digest: str) -> str:
    """The prefix of an inherited signal's results from the parent of key digest ``digest``."""
    return f"{sig}@{digest}"


def _run(args: argparse.Namespace, configs: list[VRTSpikeConfig], results: dict) -> dict:
    budget = get_budget(args.budget)
    data = load_data("synthetic", budget, seed=0)
    parent = _Parent(args, budget, data)
    made = _provenance(args.device)
    keys = [accuracy_key(apply_budget(c, budget)) for c in configs]
    for sig, i in _jobs(args, _truth_costs(results, keys, _truth_steps(args, budget))):
        key = f"{_signal_name(sig, args, budget)}/{keys[i]}"
        if key in results:
            continue
        cfg = configs[i]
        if sig == "scratch":
            out = _scratch(cfg, budget, data, args.device, budget.steps, seed=0)
        elif sig.startswith("truth"):
            seed = int(sig.removeprefix("truth"))
            show = step_printer("truth", f"{sig} config {i}: ")
            steps, state = _truth_steps(args, budget), _checkpoint(key)
            out = _scratch(cfg, budget, data, args.device, steps, seed, show, state)
        else:
            out = _inherited(cfg, budget, data, args.device, parent.get(), sig == "finetuned")
        results = _merge(args.out, key, {**out, **made})
        if sig.startswith("truth"):
            _checkpoint(key).unlink(missing_ok=True)  # kept in the results now
        print(f"{sig:>9} config {i:2d}: {out['gain_db']:+.3f} dB ({out['seconds']:.0f} s)",
              flush=True)  # fmt: skip
    return results


def _report(args: argparse.Namespace, configs: list, results: dict) -> None:
    budget = get_budget(args.budget)
    trained = {accuracy_key(t): t for t in (apply_budget(c, budget) for c in configs)}
    keys = list(trained)
    seeds = [_signal_name(f"truth{s}", args, budget) for s in args.truth_seeds]
    done = [k for k in keys if all(f"{s}/{k}" in results for s in seeds)]
    steps = _truth_steps(args, budget)
    made = {(r["commit"], r["model_code"], r["torch"], r["device"], r["threads"])
            for n, r in results.items() if not n.startswith("parent")}  # fmt: skip
    print(f"\n{len(done)} of {len(configs)} configurations have their truth "
          f"({steps} steps from scratch, seeds {args.truth_seeds}); results made by "
          f"(commit, model code, torch, device, threads): {sorted(made)}")  # fmt: skip
    if len(done) < 3:
        return
    truth = [statistics.mean(results[f"{s}/{k}"]["gain_db"] for s in seeds) for k in done]
    if len(seeds) >= 2:
        gains = {s: [results[f"{s}/{k}"]["gain_db"] for k in done] for s in seeds}
        pairs = list(itertools.combinations(seeds, 2))
        taus = [kendall_tau(gains[a], gains[b]) for a, b in pairs]
        line = f"seed-to-seed tau of the truth (the ceiling): {statistics.mean(taus):+.2f}"
        if len(taus) == 1:
            a, b = pairs[0]
            line += f" (jackknife se {jackknife_se(kendall_tau, gains[a], gains[b]):.2f})"
        else:
            line += f" (mean of {len(taus)} pairs: " + " ".join(f"{t:+.2f}" for t in taus) + ")"
        print(line)
    current = _parent_digest(args, budget)
    stored = [n.removeprefix("parent@") for n in results if n.startswith("parent@")]
    if current not in stored:
        print(f"this code's parent ({current}) has no results; the inherited signals below are "
              "those of the parents stored in the file")  # fmt: skip
    print("signal     tau (se)    rho  top-3  s/config  gains (dB) in config order")
    params = [float(param_count(trained[k])) for k in done]
    _rank_row("params", params, truth, 0.0, " ".join(f"{v / 1e6:.3f}M" for v in params))
    _signal_row("scratch", "scratch", done, truth, results, 0.0)
    for digest in sorted(stored, key=lambda d: d != current):
        info = results[f"parent@{digest}"]
        share = (info.get("build_seconds") or 0.0) / STUDY_TRIALS
        print(f"parent {digest}{' (this code)' if digest == current else ''}: {info['file']}, "
              f"{info.get('ranks', 1)} process(es), gain {info['gain_db']:+.3f} dB, built in "
              f"{info['build_seconds']:.0f} s ({share:.0f} s a trial of a {STUDY_TRIALS}-trial "
              "study)")  # fmt: skip
        for sig in ("inherited", "finetuned"):
            _signal_row(sig, _inherited_name(sig, digest), done, truth, results, share)
    print(f"{'truth':9}                                   " + " ".join(f"{v:+.2f}" for v in truth))


def _signal_row(
    label: str, name: str, done: list[str], truth: list[float], results: dict, share: float
) -> None:
    """One report line: the signal ``name``'s ranks against ``truth`` over the ``done`` configs;
    its seconds include ``share`` (the parent's build over a study's trials)."""
    if not all(f"{name}/{k}" in results for k in done):
        print(f"{label:9} (not measured for every configuration with a truth)")
        return
    vals = [results[f"{name}/{k}"]["gain_db"] for k in done]
    secs = statistics.mean(results[f"{name}/{k}"]["seconds"] for k in done) + share
    _rank_row(label, vals, truth, secs, " ".join(f"{v:+.2f}" for v in vals))


def _rank_row(label: str, vals: list[float], truth: list[float], secs: float, shown: str) -> None:
    tau, se = kendall_tau(vals, truth), jackknife_se(kendall_tau, vals, truth)
    print(f"{label:9} {tau:+.2f} ({se:.2f}) {spearman_rho(vals, truth):+.2f}"
          f"  {top_overlap(vals, truth, 3)}/3  {secs:8.0f}  {shown}")  # fmt: skip


def _shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        raise argparse.ArgumentTypeError(f"must be K/N with 0 <= K < N, not {text!r}")
    return int(k), int(n)


def _seeds(text: str) -> list[int]:
    seeds = [int(natural_int(t)) for t in text.split(",")]
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"repeats a seed: {text!r}")
    return seeds


def _signals(text: str) -> list[str]:
    names = [s for s in text.split(",") if s]
    bad = [s for s in names if s not in SIGNALS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"takes names from {SIGNALS}, not {text!r}")
    return names


def main() -> None:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="conservative")
    p.add_argument("--budget", default="cpu")
    p.add_argument("--configs", type=positive_int, default=12)
    p.add_argument("--sample-seed", type=natural_int, default=0)
    p.add_argument(
        "--truth-scale", type=positive_int, default=50, help="truth steps / budget steps"
    )
    p.add_argument("--truth-seeds", type=_seeds, default=[0, 1], help="comma-separated, e.g. 0,1")
    p.add_argument("--signals", type=_signals, default=list(SIGNALS))
    p.add_argument("--device", default="cpu", help="where to train (cpu, cuda, cuda:1, ...)")
    p.add_argument("--shard", type=_shard, default=(0, 1), help="run every N-th job from the K-th")
    p.add_argument("--out", type=Path, help="default benchmarks/results/fidelity-SPACE-BUDGET.json")
    p.add_argument("--report-only", action="store_true", help="print the report, run nothing")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.out is None:
        args.out = Path(f"benchmarks/results/fidelity-{args.space}-{args.budget}.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    configs = _candidates(args.space, get_budget(args.budget), args.configs, args.sample_seed)
    if not args.report_only:
        results = _run(args, configs, results)
    _report(args, configs, results)


if __name__ == "__main__":
    main()
