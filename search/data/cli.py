"""Command line: ``python -m search.data {write-synthetic,stats} [options]``.

- ``write-synthetic --out DIR``: writes a synthetic data set in the Spk-GoPro layout (PNG
  frames, one ``.dat`` per frame, ``config.yaml``), readable by
  :func:`search.data.load_spk_gopro`.
- ``stats [--budget smoke|cpu|gpu|all] [--seed N]``: per budget, over the validation clips it
  scores, the PSNR of the blurry input, of a spike-only reconstruction and of a simple
  non-learned fusion (:mod:`search.data.stats` says exactly how each is computed).

Bad input prints one line, ``error: ...``, on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from model.errors import VRTSpikeError
from search.data.errors import DataError
from search.data.spk_gopro import WRITE_SPLITS, write_spk_gopro
from search.data.stats import format_header, format_row, synthetic_val_stats
from search.data.synthetic import SyntheticSpec

__all__ = ["main"]

logger = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise DataError(message)


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 64x64), got {text!r}")
    return int(match[1]), int(match[2])


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m search.data", description="VRT-Spike data tools.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    write = sub.add_parser(
        "write-synthetic",
        help="write a synthetic blur + spike set in the Spk-GoPro layout",
        description="Write synthetic clips as <out>/{train,test}/<clip>/{blur,sharp,spike}/ "
        "plus <out>/config.yaml.",
    )
    write.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    write.add_argument("--clips", type=int, default=4, help="training clips (default 4)")
    write.add_argument("--val-clips", type=int, default=1, help="test clips (default 1)")
    write.add_argument("--size", type=_size, default=(64, 64), help="frame HxW (default 64x64)")
    write.add_argument("--clip-len", type=int, default=5, help="frames per clip T (default 5)")
    write.add_argument("--bins", type=int, default=8, help="spike bins per frame K (default 8)")
    write.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    write.add_argument("--force", action="store_true", help="allow a non-empty output folder")
    stats = sub.add_parser(
        "stats",
        help="what each budget's validation data leaves to gain (blurry, spike-only, fusion PSNR)",
        description="Per budget, over the validation clips it scores: PSNR of the blurry input, "
        "of a spike-only reconstruction (central TFP) and of the S-SDM ratio fusion.",
    )
    stats.add_argument("--budget", default="all", help="smoke, cpu, gpu or all (default all)")
    stats.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    return parser


def _write_synthetic(args: argparse.Namespace) -> None:
    out: Path = args.out
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.force)):
        raise DataError(f"{out}: exists and is not an empty folder (use --force to write anyway)")
    if args.clips < 0 or args.val_clips < 0:
        raise DataError("--clips and --val-clips must be >= 0")
    height, width = args.size
    spec = SyntheticSpec(
        height=height,
        width=width,
        clip_len=args.clip_len,
        num_bins=args.bins,
        num_train=args.clips,
        num_val=args.val_clips,
        seed=args.seed,
    )
    write_spk_gopro(out, spec)
    print(
        f"wrote {args.clips} {WRITE_SPLITS['train']} + {args.val_clips} {WRITE_SPLITS['val']} "
        f"clips of {args.clip_len} frames {height}x{width} to {out}"
    )


def _stats(args: argparse.Namespace) -> None:
    from search.measure.budgets import BUDGETS  # lazily: budgets import the model package

    if args.budget != "all" and args.budget not in BUDGETS:
        raise DataError(f"unknown budget {args.budget!r} (valid: {', '.join(BUDGETS)}, all)")
    names = list(BUDGETS) if args.budget == "all" else [args.budget]
    specs = {name: BUDGETS[name].data_spec(args.seed) for name in names}  # bad seed: fail first
    for line in format_header():
        print(line)
    for name, spec in specs.items():
        count = BUDGETS[name].num_val_clips
        print(format_row(synthetic_val_stats(spec, num_clips=count, label=name)), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.command == "write-synthetic":
            _write_synthetic(args)
        elif args.command == "stats":
            _stats(args)
    except VRTSpikeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    return 0
