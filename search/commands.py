"""Commands of ``run_study.py`` that build things ahead (``latency-table``, ``parent``), and the
settings of ``promote``, read back from the study it promotes. Like ``run_study.py`` they print:
they are the command line."""

from __future__ import annotations

import argparse
import time

from search.cli import step_printer
from search.measure.budgets import default_budget_name, get_budget
from search.measure.device import parse_device
from search.measure.target import LatencyTarget, format_shape
from search.study.parent import ensure_parent
from search.study.promote import Promotion
from search.study.record import StudyRecord
from search.study.runner import StudySettings, data_name, load_data
from search.study.space import SearchSpace, SpaceError, load_space
from search.study.storage import StorageURL, StudyError, load_existing_study
from search.study.tables import build_space_tables

__all__ = ["cmd_latency_table", "cmd_parent", "promotion_settings"]


def cmd_latency_table(args: argparse.Namespace) -> int:
    """``latency-table``: time every part of a space's models at the target ahead."""
    device = parse_device(args.device)
    space = load_space(args.space)
    budget = get_budget(args.budget or default_budget_name(str(device)))
    shape = args.latency_shape or budget.latency_shape
    print(f"latency tables of space {space.name} at {format_shape(shape)} on {device}", flush=True)
    started = time.perf_counter()
    built = build_space_tables(
        space, shape, device, samples=args.samples, seed=args.seed,
        report=lambda line: print(line, flush=True),
    )  # fmt: skip
    for table, measured in built:
        print(f"{table.path}: {measured} parts measured now")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


def cmd_parent(args: argparse.Namespace) -> int:
    """``parent``: build (or show) a space's elastic parent."""
    device = parse_device(args.device)
    space = load_space(args.space)
    budget = get_budget(args.budget or default_budget_name(str(device)))
    data = load_data(args.data, budget, seed=args.seed)
    parent, built = ensure_parent(
        space, budget, data, device=device, seed=args.seed, data_name=data_name(args.data),
        progress=step_printer(f"parent of {space.name} ({budget.name})"),
    )  # fmt: skip
    r = parent.result
    base = r["input_psnr_db"]
    print(f"{'built' if built else 'cached'}: {parent.path} ({r['steps']} sandwich steps, "
          f"{r['build_seconds']:.0f} s to build)")  # fmt: skip
    print(f"validation PSNR {r['psnr_db']:.2f} dB (blurry input {base:.2f} dB); gain of the "
          f"largest sub-network {r['psnr_db'] - base:+.2f} dB, of the smallest "
          f"{r['smallest_psnr_db'] - base:+.2f} dB")  # fmt: skip
    return 0


def promotion_settings(args: argparse.Namespace, device: str) -> StudySettings:
    """``promote``'s settings: those the rung-0 study records (space, budget, seed, latency
    target, parent), plus what it cannot record (``--data``, ``--parent``, ``--space`` PATH).

    Raises:
        StudyError: no such study, a rung study named, a study of an earlier version, or a
            study inheriting from a user's checkpoint without ``--parent``.
    """
    storage = StorageURL.parse(args.storage)
    rec = StudyRecord.of(load_existing_study(storage, args.study_name))
    if rec.rung:
        raise StudyError(f"study {args.study_name!r} is rung {rec.rung_number} of "
                         f"{rec.rung['base']!r}: give --study-name {rec.rung['base']}")  # fmt: skip
    if rec.budget is None or rec.latency_target is None or rec.parent is None:
        raise StudyError(
            f"study {args.study_name!r} was made by an earlier version (it does not record its "
            "latency target and parent): it cannot be promoted"
        )
    if rec.parent.startswith("file:") and args.parent is None:
        raise StudyError(f"study {args.study_name!r} inherits from a checkpoint of yours: give "
                         "it again with --parent PATH")  # fmt: skip
    target = rec.latency_target
    return StudySettings(
        space=_space(args.space, args.study_name, str(rec.space)),
        budget=get_budget(rec.budget),
        n_trials=1,  # a rung runs the trials it promotes
        study_name=args.study_name,
        storage=storage,
        seed=int(rec.seed or 0),
        device=device,
        data=args.data,
        latency=LatencyTarget(tuple(target["shape"]), target["source"]),
        parent=args.parent,
        from_scratch=rec.parent == "scratch",
        heartbeat=args.heartbeat,
        promotion=Promotion(args.study_name, args.rung, steps=args.steps, top=args.top),
    )


def _space(given: str | None, study: str, name: str) -> SearchSpace:
    """The promoted study's space: ``--space`` if given, else the shipped space of its name."""
    if given is not None:
        return load_space(given)
    try:
        return load_space(name)
    except SpaceError as e:
        raise StudyError(f"study {study!r} searched space {name!r}, which is not shipped: give "
                         "its YAML file with --space PATH") from e  # fmt: skip
