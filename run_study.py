#!/usr/bin/env python
"""VRT-Spike search service: measure the latency/PSNR front instead of guessing it.

    python run_study.py --space conservative --trials 50          # run (or resume) a study
    python run_study.py pareto --study-name conservative-cpu      # the front as a table
    python run_study.py export --study-name conservative-cpu --out best.yaml --policy knee
    python run_study.py dashboard                                 # optuna-dashboard on 127.0.0.1
    python run_study.py latency-table --space conservative        # time a space's parts ahead
    python run_study.py parent --space conservative               # build the elastic parent ahead
    python run_study.py promote --study-name conservative-cpu     # re-measure the best at rung 1

Several workers share one study on PostgreSQL: start the same command on each GPU or machine with
``--storage postgresql://USER@HOST/DB`` (``--workers`` starts one per visible GPU here).
Bad input exits with code 2 and a one-line reason, writing nothing; Ctrl-C ends the running trial
as failed (it is re-queued) and exits with code 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import warnings
from collections.abc import Sequence

import optuna

from model.errors import VRTSpikeError
from search.arguments import VERBOSE, build_parser
from search.cli import fail, step_printer
from search.commands import cmd_latency_table, cmd_parent, promotion_settings
from search.measure.budgets import default_budget_name, get_budget
from search.measure.device import parse_device
from search.measure.target import LatencyTarget
from search.report.dashboard import exposure_warning, publish_all, publish_study, serve
from search.report.export import choose_trial, export_trial
from search.report.report import front_report, render_text, summary_text
from search.study import launch
from search.study.locks import SEVERAL_WORKERS
from search.study.objective import Limits
from search.study.progress import Progress
from search.study.promote import Promotion, open_rung
from search.study.record import StudyRecord, study_tally
from search.study.runner import StudySettings, run_study
from search.study.space import load_space
from search.study.storage import StorageURL, StudyError
from search.study.worker import WorkerStopped, stop_reason

INTERRUPTED = 130


def _settings(args: argparse.Namespace, device: str) -> StudySettings:
    space = load_space(args.space)
    budget = get_budget(args.budget or default_budget_name(device))
    return StudySettings(
        space=space,
        budget=budget,
        n_trials=args.trials,
        study_name=args.study_name or f"{space.name}-{budget.name}",
        storage=StorageURL.parse(args.storage),
        sampler=args.sampler,
        seed=args.seed,
        device=device,
        data=args.data,
        timeout=args.timeout,
        limits=Limits(args.max_latency_ms, args.max_memory_gb),
        heartbeat=args.heartbeat,
        train_threads=args.train_threads,
        latency=LatencyTarget(args.latency_shape or budget.latency_shape, args.latency_source),
        parent=args.parent,
        from_scratch=args.from_scratch,
    )


def _cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    tag, device = launch.worker_role()
    if args.workers is not None and not tag:
        return _cmd_workers(args, argv)
    s = _settings(args, device or str(parse_device(args.device)))
    header = f"{'w' + tag + ' ' if tag else ''}{s.describe()}"
    try:
        progress = Progress(s.n_trials, lambda line: print(line, flush=True), tag)
        study = run_study(
            s, callbacks=[progress], on_ready=lambda _: print(header, flush=True),
            parent_progress=step_printer("building the space's parent", f"w{tag} " if tag else ""),
        )  # fmt: skip
    except KeyboardInterrupt as e:
        return _interrupted(e)
    if args.promote and study_tally(study).counted >= s.n_trials:  # not after a --timeout
        return _promote(s, args.promote, tag)
    if not tag:  # a --workers child leaves the front to its parent
        _summary(study, s.storage)
    return 0


def _interrupted(e: KeyboardInterrupt) -> int:
    print(f"interrupted ({stop_reason(e)}): the running trial, if any, ended as failed and was "
          "re-queued", file=sys.stderr)  # fmt: skip
    return INTERRUPTED


def _cmd_workers(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Start one worker per device on this machine; print the front when all have ended."""
    devices = launch.worker_devices(args.workers, str(parse_device(args.device)))
    s = _settings(args, devices[0])
    if len(devices) > 1 and s.storage.backend == "sqlite":
        raise StudyError(f"--workers {len(devices)} with {s.storage.redacted}: {SEVERAL_WORKERS}")
    s.storage.check()
    procs = launch.start(__file__, argv, devices)
    print(f"started {len(procs)} workers on {', '.join(devices)}", flush=True)
    codes = launch.wait_all(procs)
    if INTERRUPTED in codes:
        return INTERRUPTED
    failed = [f"w{k}: exit {c}" for k, c in enumerate(codes, start=1) if c != 0]
    if failed:
        print(f"workers that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    _summary(open_rung(s.storage, s.study_name, None), s.storage)
    return 0


def _summary(study: optuna.Study, storage: StorageURL) -> None:
    publish_study(study, storage.artifact_store())  # hypervolume figure and note for the dashboard
    print(summary_text(study, storage))


def _cmd_pareto(args: argparse.Namespace, _argv: Sequence[str]) -> int:
    study = open_rung(StorageURL.parse(args.storage), args.study_name, args.rung)
    print(render_text(front_report(study)), end="")
    return 0


def _cmd_export(args: argparse.Namespace, _argv: Sequence[str]) -> int:
    storage = StorageURL.parse(args.storage)
    study = open_rung(storage, args.study_name, args.rung)
    trial = choose_trial(
        study,
        policy=args.policy,
        within_db=args.within_db,
        max_latency_ms=args.max_latency_ms,
        trial_number=args.trial,
    )
    policy = "trial" if args.trial is not None else args.policy
    export_trial(study, trial, args.out, storage=storage, policy=policy, proxy=args.proxy)
    lat, psnr = trial.values
    print(f"wrote {args.out}: trial {trial.number} ({lat:.2f} ms, {psnr:.2f} dB)")
    return 0


def _cmd_dashboard(args: argparse.Namespace, _argv: Sequence[str]) -> int:
    storage = StorageURL.parse(args.storage)
    server = serve(storage, host=args.host, port=args.port)  # refuses a missing storage
    studies = publish_all(storage)
    if exposure_warning(args.host):
        print(f"warning: {exposure_warning(args.host)}", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"{len(studies)} studies in {storage.redacted}: {', '.join(studies) or 'none'}")
    print(f"optuna-dashboard: http://{host}:{server.server_port}/dashboard  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _cmd_promote(args: argparse.Namespace, _argv: Sequence[str]) -> int:
    s = promotion_settings(args, str(parse_device(args.device)))
    return _promote(s, args.rung, "")


def _promote(s: StudySettings, rungs: int, tag: str) -> int:
    """Run rungs 1..``rungs`` of the study (each resumes where it stopped); print the last."""
    study = None
    for r in range(s.promotion.rung if s.promotion else 1, rungs + 1):
        p = dataclasses.replace(s.promotion or Promotion(s.study_name), rung=r)
        try:
            study = _rung(dataclasses.replace(s, promotion=p), tag)
        except KeyboardInterrupt as e:
            return _interrupted(e)
    if study is not None and not tag:
        _summary(study, s.storage)
    return 0


def _rung(s: StudySettings, tag: str) -> optuna.Study:
    progress = Progress(0, lambda line: print(line, flush=True), tag)
    return run_study(s, callbacks=[progress], on_ready=lambda st: _ready(st, s, progress))


def _ready(study: optuna.Study, s: StudySettings, progress: Progress) -> None:
    progress.total = len(StudyRecord.of(study).promoted or ())
    print(f"{s.describe()}: {progress.total} trials promoted", flush=True)


_COMMANDS = {"run": _cmd_run, "pareto": _cmd_pareto, "export": _cmd_export,
             "dashboard": _cmd_dashboard, "promote": _cmd_promote,
             "latency-table": lambda a, _: cmd_latency_table(a),
             "parent": lambda a, _: cmd_parent(a)}  # fmt: skip


def _with_command(argv: list[str]) -> list[str]:
    """``run`` is the default command: insert it where the first non-``-v`` word is no command."""
    first = next((i for i, a in enumerate(argv) if a not in VERBOSE), len(argv))
    if first == len(argv) or argv[first] not in (*_COMMANDS, "-h", "--help"):
        return [*argv[:first], "run", *argv[first:]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(__doc__.splitlines()[0]).parse_args(_with_command(given))
    except SystemExit as e:  # --help (0) or a usage error (2, already reported in one line)
        return int(e.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    # set_metric_names and TPE's group option are stable in practice; their notices are noise here
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    signal.signal(signal.SIGTERM, _stop)
    try:
        return _COMMANDS[args.command](args, given)
    except VRTSpikeError as e:
        return fail(" ".join(str(e).split()))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED


def _stop(signum: int, _frame: object) -> None:
    """SIGTERM (a scheduler ending the job) is handled like Ctrl-C."""
    raise WorkerStopped(signum)


if __name__ == "__main__":
    sys.exit(main())
