"""Seconds per sandwich step of a space's parent build, with one process and with two, in one run.

The `cpu` budget shares each step's sub-networks between ``parent_ranks`` one-thread processes.
This builds the parent for a few steps (into a throw-away folder) with ``parent_ranks`` 1 and 2 in
alternation, so that both see the same host, and prints each build's seconds per step, steps
2..N (the first step carries start-up, and with two processes their spawn), and the ratio.

    python -u benchmarks/parent_speed.py [--space conservative] [--budget cpu] [--steps 20]
        [--rounds 2]

Run it alone on the cores: a second process makes OpenMP spin and the figures meaningless.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from search.cli import OneLineParser, positive_int
from search.measure.budgets import get_budget
from search.study.parent import ensure_parent
from search.study.runner import load_data
from search.study.space import load_space


def seconds_per_step(space_name: str, budget_name: str, *, ranks: int, steps: int) -> float:
    """Build the parent for ``steps`` steps in ``ranks`` processes; seconds a step after step 1."""
    budget = dataclasses.replace(get_budget(budget_name), parent_steps=steps, parent_ranks=ranks)
    data = load_data("synthetic", budget, seed=0)
    seen: dict[int, float] = {}

    def progress(done: int, total: int, loss: float, seconds: float) -> None:
        seen[done] = seconds

    with tempfile.TemporaryDirectory() as folder:
        ensure_parent(load_space(space_name), budget, data, device="cpu", seed=0,
                      data_name="synthetic", folder=Path(folder), progress=progress)  # fmt: skip
    return (seen[steps] - seen[1]) / (steps - 1)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="conservative")
    p.add_argument("--budget", default="cpu")
    p.add_argument("--steps", type=positive_int, default=20, help="steps a build (at least 2)")
    p.add_argument("--rounds", type=positive_int, default=2, help="builds of each, alternated")
    args = p.parse_args(argv)
    if args.steps < 2:
        p.error("--steps must be at least 2")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    print(f"{args.space}/{args.budget}, {args.steps} steps a build, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)  # fmt: skip
    times: dict[int, list[float]] = {1: [], 2: []}
    for r in range(args.rounds):
        for ranks in (1, 2) if r % 2 == 0 else (2, 1):
            s = seconds_per_step(args.space, args.budget, ranks=ranks, steps=args.steps)
            times[ranks].append(s)
            print(f"round {r + 1}: {ranks} process(es) {s:.2f} s a step", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"median: 1 process {one:.2f} s a step, 2 processes {two:.2f} s; {one / two:.2f}x")


if __name__ == "__main__":
    main()
