#!/usr/bin/env python
"""VRT-Spike search service: measure the latency/PSNR front instead of guessing it.

    python run_study.py --space conservative --trials 50          # run (or resume) a study
    python run_study.py pareto --study-name conservative-cpu      # the front as a table
    python run_study.py export --study-name conservative-cpu --out best.yaml --policy knee
    python run_study.py dashboard                                 # optuna-dashboard on 127.0.0.1

Several workers share one study on PostgreSQL: start the same command on each GPU or machine with
``--storage postgresql://USER@HOST/DB`` (``--workers`` starts one per visible GPU here).
Bad input exits with code 2 and a one-line reason, writing nothing; Ctrl-C ends the running trial
as failed (it is re-queued) and exits with code 130.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import optuna
import torch

from model.errors import VRTSpikeError
from search.budgets import BUDGETS, get_budget
from search.dashboard import is_loopback, publish_all, publish_study, serve
from search.export import FrontRow, choose_trial, export_trial, front_rows, reference_rows
from search.locks import SEVERAL_WORKERS
from search.pareto import POLICIES
from search.space import load_space
from search.storage import (
    artifact_dir,
    check_storage,
    default_storage_url,
    redact_url,
    storage_backend,
)
from search.study import (
    SAMPLERS,
    StudyError,
    StudySettings,
    load_existing_study,
    run_study,
)
from search.worker import WorkerStopped, stop_reason, study_tally

WORKER_ENV = "VRTSPIKE_WORKER"
"""Set by ``--workers`` for its children: ``K/N`` (tags lines; the parent prints the front)."""
INTERRUPTED = 130

COMMANDS = ("run", "pareto", "export", "dashboard")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        raise SystemExit(_fail(f"{self.prog}: {message}"))


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            bound = "at least 1" if minimum == 1 else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


_positive_int = _whole_number(1)
_natural_int = _whole_number(0)


def _workers(text: str) -> int | str:
    return text if text == "gpus" else _positive_int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="run_study.py", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="run or resume a study (the default command)")
    run.add_argument("--space", default="conservative", help="space name in spaces/ or a YAML path")
    run.add_argument(
        "--trials", type=_positive_int, default=50, help="finished trials the study should hold"
    )
    run.add_argument("--budget", choices=sorted(BUDGETS), help="default: gpu with CUDA, else cpu")
    run.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--storage", default=None, help="SQLAlchemy URL (default: sqlite under studies/)"
    )
    run.add_argument("--study-name", default=None, help="default: <space>-<budget>")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:K")
    run.add_argument("--data", default="synthetic", help="'synthetic' or a Spk-GoPro data root")
    run.add_argument("--timeout", type=_positive_float, default=None, help="seconds for this run")
    run.add_argument("--max-latency-ms", type=_positive_float, default=None)
    run.add_argument("--max-memory-gb", type=_positive_float, default=None)
    run.add_argument(
        "--workers",
        nargs="?",
        const="gpus",
        default=None,
        type=_workers,
        help="start N worker processes here (no N: one per visible GPU); needs PostgreSQL",
    )
    run.add_argument(
        "--heartbeat",
        type=_natural_int,
        default=20,
        help="seconds between trial heartbeats; a trial silent for 3x this is failed and "
        "re-queued (0: off)",
    )
    run.add_argument(
        "--train-threads",
        type=_positive_int,
        default=None,
        help="CPU threads for training (default: this process's threads divided by the "
        "workers running on this CPU)",
    )

    for name, text in (("pareto", "print the front"), ("export", "export a trial as YAML")):
        q = sub.add_parser(name, help=text)
        q.add_argument("--study-name", required=True)
        q.add_argument(
            "--storage", default=None, help="SQLAlchemy URL (default: sqlite under studies/)"
        )
        if name == "export":
            q.add_argument("--out", required=True, help="YAML file to write")
            q.add_argument("--policy", choices=POLICIES, default="knee")
            q.add_argument("--within-db", type=float, default=None, help="for fastest-within")
            q.add_argument(
                "--max-latency-ms", type=_positive_float, default=None, help="for best-under"
            )
            q.add_argument(
                "--trial", type=int, default=None, help="export this trial number instead"
            )
            q.add_argument(
                "--proxy", action="store_true", help="export the budget-scaled trained proxy"
            )
    dash = sub.add_parser("dashboard", help="open the studies in optuna-dashboard")
    dash.add_argument(
        "--storage", default=None, help="SQLAlchemy URL (default: sqlite under studies/)"
    )
    dash.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    dash.add_argument("--port", type=_port, default=8080, help="0 picks a free port")
    return p


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


def _device(text: str) -> str:
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise VRTSpikeError(f"--device {text}: not a device (auto, cpu, cuda, cuda:K)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VRTSpikeError(f"--device {text}: CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise VRTSpikeError(f"--device {text}: only cpu and cuda are supported")
    return str(device)


class _Progress:
    """One line per trial this worker ends, with the study's count, elapsed time and ETA."""

    def __init__(self, total: int, tag: str = "") -> None:
        self.total, self.tag = total, f"w{tag} " if tag else ""
        self.start = time.perf_counter()
        self.counted_at_start: int | None = None

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        counted = study_tally(study).counted
        if self.counted_at_start is None:
            self.counted_at_start = counted - 1
        elapsed = time.perf_counter() - self.start
        rate = max(1, counted - self.counted_at_start) / elapsed  # all workers together
        eta = max(0, self.total - counted) / rate
        a = trial.user_attrs
        what = f"{trial.state.name.lower():8s}"
        if trial.values:
            what += f" latency {trial.values[0]:8.2f} ms  PSNR {trial.values[1]:6.2f} dB"
        else:
            what += f" {a.get('fail_reason', '')[:80]}"
        tags = [f"ref {a['reference']}"] if "reference" in a else []
        if "retry_of" in a:
            tags.append(f"retry of #{a['retry_of']}")
        if "reused_from" in a:
            tags.append(f"PSNR reused from #{a['reused_from']}")
        if "skipped_training" in a:
            tags.append("not trained: over latency limit")
        tag = f"  ({'; '.join(tags)})" if tags else ""
        print(
            f"{self.tag}[{counted:>3}/{self.total}] trial {trial.number:>3} {what}{tag}  "
            f"| elapsed {_hms(elapsed)}  ETA {_hms(eta)}",
            flush=True,
        )


def _hms(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _table(rows: Sequence[FrontRow]) -> str:
    head = (
        f"{'trial':>5} {'latency ms':>10} {'cv':>5} {'PSNR dB':>8} {'SSIM':>6} {'in PSNR':>7} "
        f"{'speed-up':>8} {'dPSNR':>6}  reference / notes"
    )
    lines = [head]
    for r in rows:
        notes = [r.reference] if r.reference else []
        if r.reused_from is not None:
            notes.append(f"PSNR of #{r.reused_from}")
        if not r.feasible:
            notes.append("infeasible")
        lines.append(
            f"{r.number:>5} {r.latency_ms:>10.2f} {_f(r.latency_cv, '5.3f')} {r.psnr_db:>8.2f} "
            f"{_f(r.ssim, '6.4f')} {_f(r.input_psnr_db, '7.2f')} {_f(r.speedup, '7.2f')}x "
            f"{_f(r.delta_psnr_db, '+6.2f')}  {', '.join(notes)}"
        )
    return "\n".join(lines)


def _f(value: float | None, spec: str) -> str:
    width = int(spec.lstrip("+").split(".")[0])
    return f"{value:{spec}}" if value is not None else "-".rjust(width)


def _print_front(study: optuna.Study) -> None:
    a = study.user_attrs
    budget = a.get("budget_settings", {})
    size = budget.get("latency_size")
    shape = f"1x{budget.get('latency_frames')}x3x{size}x{size}"
    print(
        f"study {study.study_name}: space {a.get('space')}, budget {a.get('budget')}, "
        f"latency input {shape}"
    )
    rows = front_rows(study)
    print(
        f"Pareto front ({len(rows)} trials; speed-up and dPSNR relative to the baseline reference):"
    )
    print(_table(rows))
    refs = reference_rows(study)
    if refs:
        print("\nReference trials (the guide's hand-made choices):")
        print(_table(refs))
        front = {r.number for r in rows}
        for r in refs:
            if r.number not in front:
                print(f"  {r.reference} (trial {r.number}) is dominated by the front")
    hv = a.get("hypervolume")
    if hv:
        lat, psnr = hv["reference"]
        print(
            f"\nhypervolume of the feasible front: {hv['value']:.3f} ms*dB over "
            f"{hv['trials']} trials (reference point {lat:.2f} ms, {psnr:.2f} dB)"
        )
    for name, status in (a.get("references") or {}).items():
        if status != "enqueued":
            print(f"  {name}: {status}")


def _settings(args: argparse.Namespace, device: str) -> StudySettings:
    space = load_space(args.space)
    budget = get_budget(args.budget or ("gpu" if device.startswith("cuda") else "cpu"))
    return StudySettings(
        space=space,
        budget=budget,
        n_trials=args.trials,
        study_name=args.study_name or f"{space.name}-{budget.name}",
        storage_url=args.storage or default_storage_url(),
        sampler=args.sampler,
        seed=args.seed,
        device=device,
        data=args.data,
        timeout=args.timeout,
        max_latency_ms=args.max_latency_ms,
        max_memory_gb=args.max_memory_gb,
        heartbeat=args.heartbeat,
        train_threads=args.train_threads,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    if args.workers is not None:
        return _cmd_workers(args)
    settings = _settings(args, _device(args.device))
    check_storage(settings.storage_url)  # before the header: bad storage is one error line
    tag = os.environ.get(WORKER_ENV, "")
    print(
        f"{'w' + tag + ' ' if tag else ''}study {settings.study_name} on "
        f"{redact_url(settings.storage_url)}: space {settings.space.name}, budget "
        f"{settings.budget.name}, sampler {args.sampler}, device {settings.device}, "
        f"{args.trials} trials in all",
        flush=True,
    )
    try:
        study = run_study(settings, callbacks=[_Progress(args.trials, tag)])
    except KeyboardInterrupt as e:
        why = stop_reason(e)
        print(
            f"interrupted ({why}): the running trial, if any, ended as failed and was re-queued",
            file=sys.stderr,
        )
        return INTERRUPTED
    if tag:  # a --workers child: the parent prints the front once
        return 0
    _summary(study, settings.storage_url)
    return 0


def _summary(study: optuna.Study, url: str) -> None:
    store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir(url)))
    publish_study(study, store)  # hypervolume figure and note for the dashboard
    t = study_tally(study)
    extra = f" (+{t.retried} failed attempts that were retried)" if t.retried else ""
    print(f"\n{t.counted} finished trials in study {study.study_name}{extra}.\n")
    _print_front(study)
    print(
        f"\nexport:  python run_study.py export --study-name {study.study_name} "
        f"--storage {redact_url(url)} --out best.yaml --policy knee"
    )


def _worker_devices(args: argparse.Namespace) -> list[str]:
    if args.workers == "gpus":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise VRTSpikeError("--workers: no GPU is visible; give a number for CPU workers")
        return [f"cuda:{k}" for k in range(count)]
    device = _device(args.device)
    if device.startswith("cuda") and ":" not in device:
        count = torch.cuda.device_count()
        return [f"cuda:{k % count}" for k in range(args.workers)]
    return [device] * args.workers


def _cmd_workers(args: argparse.Namespace) -> int:
    """Start one ``run`` process per worker on this machine; print the front when all end."""
    devices = _worker_devices(args)
    settings = _settings(args, devices[0])
    url = settings.storage_url
    if len(devices) > 1 and storage_backend(url) == "sqlite":
        raise StudyError(f"--workers {len(devices)} with {redact_url(url)}: {SEVERAL_WORKERS}")
    check_storage(url)
    procs = []
    for k, device in enumerate(devices, start=1):
        argv = _child_argv(args, settings, device)
        env = {**os.environ, WORKER_ENV: f"{k}/{len(devices)}"}
        procs.append(  # own session: the parent forwards Ctrl-C once, and nothing else does
            subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), *argv], env=env, start_new_session=True
            )
        )
    print(f"started {len(procs)} workers on {', '.join(devices)}", flush=True)
    codes = _wait_all(procs)
    if any(code == INTERRUPTED for code in codes):
        return INTERRUPTED
    failed = [f"w{k}: exit {c}" for k, c in enumerate(codes, start=1) if c != 0]
    if failed:
        print(f"workers that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    _summary(load_existing_study(url, settings.study_name), url)
    return 0


def _child_argv(args: argparse.Namespace, s: StudySettings, device: str) -> list[str]:
    argv = ["run", "--space", s.space.source, "--trials", str(s.n_trials)]
    argv += ["--budget", s.budget.name, "--sampler", s.sampler, "--seed", str(s.seed)]
    argv += ["--storage", s.storage_url, "--study-name", s.study_name, "--device", device]
    argv += ["--data", s.data, "--heartbeat", str(s.heartbeat)]
    for flag, value in (
        ("--timeout", s.timeout),
        ("--max-latency-ms", s.max_latency_ms),
        ("--max-memory-gb", s.max_memory_gb),
        ("--train-threads", s.train_threads),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return (["-v"] if args.verbose else []) + argv


def _wait_all(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """Wait for every child, forwarding Ctrl-C and SIGTERM to those still running."""

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    old_term = signal.signal(signal.SIGTERM, forward)
    old_int = signal.signal(signal.SIGINT, forward)
    try:
        return [proc.wait() for proc in procs]
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


def _cmd_pareto(args: argparse.Namespace) -> int:
    study = load_existing_study(args.storage or default_storage_url(), args.study_name)
    _print_front(study)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    url = args.storage or default_storage_url()
    study = load_existing_study(url, args.study_name)
    trial = choose_trial(
        study,
        policy=args.policy,
        within_db=args.within_db,
        max_latency_ms=args.max_latency_ms,
        trial_number=args.trial,
    )
    export_trial(
        study,
        trial,
        args.out,
        storage_url=url,
        policy="trial" if args.trial is not None else args.policy,
        proxy=args.proxy,
    )
    lat, psnr = trial.values
    print(f"wrote {args.out}: trial {trial.number} ({lat:.2f} ms, {psnr:.2f} dB)")
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    url = args.storage or default_storage_url()
    try:
        server = serve(url, host=args.host, port=args.port)  # refuses a missing storage first
    except OSError as e:
        reason = e.strerror or e
        raise VRTSpikeError(f"cannot listen on {args.host}:{args.port}: {reason}") from None
    studies = publish_all(url)
    if not is_loopback(args.host):
        print(
            f"warning: binding to {args.host}: optuna-dashboard has write endpoints (delete "
            "studies, edit notes, upload artifacts) and no authentication; anyone who can reach "
            "this port can change the studies",
            file=sys.stderr,
        )
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"{len(studies)} studies in {redact_url(url)}: {', '.join(studies) or 'none'}")
    print(f"optuna-dashboard: http://{host}:{server.server_port}/dashboard  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-v", "--verbose") for a in argv[1:]):  # accepted anywhere on the line
        argv = ["-v", *(a for a in argv if a not in ("-v", "--verbose"))]
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help", "-v", "--verbose"):
        argv.insert(0, "run")
    elif argv[0] in ("-v", "--verbose") and (len(argv) < 2 or argv[1] not in COMMANDS):
        argv.insert(1, "run")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already reported in one line)
        return int(e.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    # set_metric_names and TPE's group option are stable in practice; their notices are noise here
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    handlers = {
        "run": _cmd_run,
        "pareto": _cmd_pareto,
        "export": _cmd_export,
        "dashboard": _cmd_dashboard,
    }
    signal.signal(signal.SIGTERM, _stop)
    try:
        return handlers[args.command](args)
    except VRTSpikeError as e:
        return _fail(" ".join(str(e).split()))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED


def _stop(signum: int, _frame: object) -> None:
    """SIGTERM (a scheduler ending the job) is handled like Ctrl-C."""
    raise WorkerStopped(signum)


if __name__ == "__main__":
    sys.exit(main())
