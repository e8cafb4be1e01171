"""The command line of ``run_study.py``: its commands (``run``, ``pareto``, ``export``,
``dashboard``, ``promote``, ``latency-table``, ``parent``) and their options; ``run_study.py``
dispatches them."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from model.errors import VRTSpikeError
from search.cli import OneLineParser, natural_int, port, positive_float, positive_int
from search.measure.budgets import BUDGETS
from search.measure.target import SOURCES, format_shape, parse_shape
from search.report.pareto import POLICIES
from search.study.promote import ETA
from search.study.runner import SAMPLERS

__all__ = ["VERBOSE", "build_parser", "shape_arg"]

VERBOSE = ("-v", "--verbose")


def _workers(text: str) -> int | str:
    return text if text == "gpus" else int(positive_int(text))


def shape_arg(text: str) -> tuple[int, int, int]:
    """An argparse type: an input shape ``TxHxW`` (:func:`~search.measure.target.parse_shape`)."""
    try:
        return parse_shape(text)
    except VRTSpikeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _target_options(add: Callable[..., object]) -> None:
    """``--budget`` and ``--latency-shape``, shared by ``run`` and ``latency-table``."""
    add("--budget", choices=sorted(BUDGETS), help="default: gpu with CUDA, else cpu")
    defaults = ", ".join(f"{n} {format_shape(b.latency_shape)}" for n, b in BUDGETS.items())
    add("--latency-shape", type=shape_arg, metavar="TxHxW",
        help=f"input the latency is taken at (default: the budget's: {defaults})")  # fmt: skip
    add("--device", default="auto", help="auto, cpu, cuda or cuda:K")


def _run_options(run: argparse.ArgumentParser) -> None:
    add = run.add_argument
    add("--space", default="conservative", help="space name in spaces/ or a YAML path")
    add("--trials", type=positive_int, default=50, help="finished trials the study should hold")
    _target_options(add)
    add("--latency-source", choices=SOURCES, default="auto", help="measured: time the "
        "deployment model at the target; predicted: sum its parts from a latency table; "
        "auto (default): measured on CUDA and at small shapes, predicted on the CPU above "
        "3x64x64")  # fmt: skip
    add("--sampler", choices=SAMPLERS, default="tpe")
    add("--seed", type=int, default=0)
    add("--study-name", default=None, help="default: <space>-<budget>")
    add("--data", default="synthetic", help="'synthetic' or a Spk-GoPro data root")
    add("--timeout", type=positive_float, default=None, help="seconds for this run")
    add("--max-latency-ms", type=positive_float, default=None)
    add("--max-memory-gb", type=positive_float, default=None)
    add("--workers", nargs="?", const="gpus", type=_workers, help="start N worker processes "
        "here (no N: one per visible GPU); needs PostgreSQL")  # fmt: skip
    add("--heartbeat", type=natural_int, default=20, help="seconds between trial heartbeats; "
        "a trial silent for 3x this is failed and re-queued (0: off)")  # fmt: skip
    add("--train-threads", type=positive_int, help="CPU threads for training (default: this "
        "process's threads divided by the workers running on this CPU)")  # fmt: skip
    start = run.add_mutually_exclusive_group()
    start.add_argument("--parent", metavar="PATH", help="inherit every trial's weights from this "
        "checkpoint (a search.train_cli output, or {'config', 'state_dict'}) instead of the "
        "space's elastic parent")  # fmt: skip
    start.add_argument("--from-scratch", action="store_true", help="train each trial from its "
        "own initialisation, inheriting nothing")  # fmt: skip
    add("--promote", type=natural_int, default=0, metavar="R", help="when the trials are done, "
        "promote the best up to rung R (see the promote command; default 0: none)")  # fmt: skip


def _rung_option(add: Callable[..., object]) -> None:
    add("--rung", type=natural_int, default=None, help="read rung R (0: the study's own trials; "
        "default: its highest rung whose trials have all ended)")  # fmt: skip


def _promote_options(q: Callable[..., object]) -> None:
    q("--study-name", required=True, help="the study whose trials go up (rung 0)")
    q("--rung", type=positive_int, default=1, help="the rung to run (rung R-1 must be done)")
    q("--top", type=positive_int, default=None, help="trials that go up, besides the references "
      f"(default: the first front, or 1/{ETA} of the trials if that is more)")  # fmt: skip
    q("--steps", type=positive_int, default=None, help=f"fine-tuning steps at the rung (default: "
      f"{ETA}^R times the budget's; validation clips are always {ETA}^R times)")  # fmt: skip
    q("--device", default="auto", help="auto, cpu, cuda or cuda:K")
    q("--data", default="synthetic", help="the study's --data ('synthetic' or a Spk-GoPro root)")
    q("--parent", metavar="PATH", help="the study's --parent, if it had one")
    q("--space", default=None, help="the study's space as a YAML path (default: its name)")
    q("--heartbeat", type=natural_int, default=20, help="seconds between trial heartbeats "
      "(0: off), as for run")  # fmt: skip


def build_parser(description: str) -> argparse.ArgumentParser:
    """The parser of ``run_study.py``: its commands and their options."""
    p = OneLineParser(prog="run_study.py", description=description)
    shared = argparse.ArgumentParser(add_help=False)  # options every command takes
    shared.add_argument(*VERBOSE, action="store_true", default=argparse.SUPPRESS,
                        help="log progress details")  # fmt: skip
    shared.add_argument("--storage", help="storage URL (default: sqlite:///studies/vrt_spike.db)")
    p.add_argument(*VERBOSE, action="store_true", default=False, help="log progress details")
    sub = p.add_subparsers(dest="command", parser_class=OneLineParser)
    _run_options(sub.add_parser("run", parents=[shared], help="run or resume a study (default)"))
    named = {"parents": [shared]}
    pareto = sub.add_parser("pareto", help="print the front", **named).add_argument
    pareto("--study-name", required=True)
    _rung_option(pareto)
    q = sub.add_parser("export", help="export a trial as YAML", **named).add_argument
    q("--study-name", required=True)
    q("--out", required=True, help="YAML file to write")
    q("--policy", choices=POLICIES, default="knee")
    q("--within-db", type=float, default=None, help="for fastest-within")
    q("--max-latency-ms", type=positive_float, default=None, help="for best-under")
    q("--trial", type=int, default=None, help="export this trial number instead")
    q("--proxy", action="store_true", help="export the budget-scaled trained proxy")
    _rung_option(q)
    _promote_options(
        sub.add_parser(
            "promote", help="re-measure a study's best trials at a higher fidelity", **named
        ).add_argument  # fmt: skip
    )
    d = sub.add_parser("dashboard", help="open the studies in optuna-dashboard", **named)
    d.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    d.add_argument("--port", type=port, default=8080, help="0 picks a free port")
    table = sub.add_parser("latency-table", help="time every part of a space's models ahead")
    t = table.add_argument
    t(*VERBOSE, action="store_true", default=argparse.SUPPRESS, help="log progress details")
    t("--space", default="conservative", help="space name in spaces/ or a YAML path")
    _target_options(t)
    t("--samples", type=positive_int, default=500, help="random configs besides the references")
    t("--seed", type=int, default=0)
    e = sub.add_parser("parent", help="build (or show) a space's elastic parent").add_argument
    e(*VERBOSE, action="store_true", default=argparse.SUPPRESS, help="log progress details")
    e("--space", default="conservative", help="space name in spaces/ or a YAML path")
    e("--budget", choices=sorted(BUDGETS), help="default: gpu with CUDA, else cpu")
    e("--device", default="auto", help="auto, cpu, cuda or cuda:K")
    e("--seed", type=int, default=0, help="as the study's --seed")
    e("--data", default="synthetic", help="'synthetic' or a Spk-GoPro data root")
    return p
