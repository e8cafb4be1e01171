"""Train one configuration for a budget and write a checkpoint.

Usage::

    python -m search.train_cli --config exported.yaml --budget gpu --out ckpt.pt \\
        [--device cuda] [--seed 0] [--data-seed 0] [--cache-dir DIR] [--init old.pt]

The config (the guide's YAML format, e.g. one written by the exporter) is passed through
:func:`~search.measure.budgets.apply_budget`, trained on the budget's synthetic data set and
saved as ``{"config", "state_dict", "budget", "result"}``; ``--init`` starts from an earlier
checkpoint's weights, so an exported config can be trained further. Bad input gives a one-line
error and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from model import VRTSpikeConfig
from model.errors import VRTSpikeError
from search.cli import OneLineParser, fail
from search.measure.budgets import BUDGETS, apply_budget, default_budget_name, get_budget
from search.measure.checkpoint import load_checkpoint, save_checkpoint
from search.measure.device import parse_device
from search.measure.train import TrainDataError, train_model

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m search.train_cli",
        description="Train one VRT-Spike config for a named budget and write a checkpoint.",
    )
    p.add_argument("--config", required=True, help="YAML config in the guide's format")
    p.add_argument("--budget", help=f"one of {', '.join(BUDGETS)} (default: gpu on CUDA, else cpu)")
    p.add_argument("--out", required=True, help="checkpoint path to write (.pt)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="training seed (weights, batches)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic data set")
    p.add_argument("--cache-dir", help="synthetic data cache (default: studies/data_cache)")
    p.add_argument("--init", help="start from this checkpoint's weights")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return p


def _run(args: argparse.Namespace) -> str:
    from search.data import load_synthetic

    device = parse_device(args.device)
    budget = get_budget(args.budget or default_budget_name(str(device)))
    cfg = apply_budget(VRTSpikeConfig.from_yaml(args.config), budget)
    init = load_checkpoint(args.init)["state_dict"] if args.init else None
    data = load_synthetic(budget.data_spec(args.data_seed), cache_dir=args.cache_dir)
    try:
        trained = train_model(cfg, budget, data, device=device, seed=args.seed, init_state=init)
    except RuntimeError as err:
        if init is not None and "state_dict" in str(err):
            raise TrainDataError(f"--init {args.init}: weights do not fit the config") from err
        raise
    save_checkpoint(args.out, trained, cfg=cfg, budget=budget)
    r = trained.result
    return (
        f"wrote {args.out}: PSNR {r.psnr_db:.2f} dB (input {r.input_psnr_db:.2f} dB, "
        f"{r.psnr_gain_db:+.2f}), SSIM {r.ssim:.4f}, {r.steps} steps in {r.train_seconds:.1f} s "
        f"on {r.device}, budget {budget.name}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input or a failed run)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        print(_run(args))
    except (VRTSpikeError, OSError) as err:
        return fail(_one_line(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
