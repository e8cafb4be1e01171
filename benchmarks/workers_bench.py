"""Several workers on one PostgreSQL study: throughput, recovery after a kill, storage overhead.

    python benchmarks/workers_bench.py [--trials 9] [--space conservative] [--budget smoke]
                                       [--heartbeat 5] [--storage postgresql://...]

Without ``--storage`` a throwaway PostgreSQL server is started on 127.0.0.1 (tests/pg_server.py).
Each phase uses a fresh study in its own database; workers are separate ``run_study.py``
processes, as users start them. Measured:

1. trials per hour with 1 worker, then with 3 workers, same space, budget and total;
2. recovery after ``SIGKILL`` of a worker mid-trial (2 workers): seconds from the kill until the
   retry starts and until it completes, with the victim on the survivor's host (found by its pid)
   and on "another host" (its own UTS namespace: found when its heartbeat is 3x ``--heartbeat``
   old);
3. storage overhead per trial: database bytes per trial (``pg_database_size`` growth over the
   empty schema) and seconds per trial spent outside the objective (trial wall time from Optuna's
   timestamps minus the objective's own ``seconds``: gate, counting, sampling, ask/tell, attrs).

Results go to ``benchmarks/out/workers_bench.json`` and are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import pg_server  # noqa: E402

from search.budgets import get_budget  # noqa: E402
from search.study.record import tally  # noqa: E402
from search.study.runner import load_data  # noqa: E402


def _workers(
    url: str,
    name: str,
    n: int,
    args: argparse.Namespace,
    env: dict[str, str],
    *,
    first_host: str | None = None,
) -> list[subprocess.Popen[bytes]]:
    cmd = [sys.executable, str(ROOT / "run_study.py"), "--space", args.space]
    cmd += ["--budget", args.budget, "--trials", str(args.trials), "--storage", url]
    cmd += ["--study-name", name, "--heartbeat", str(args.heartbeat)]
    commands = [cmd] * n
    if first_host:
        rename = f'hostname {first_host} && exec "$0" "$@"'
        commands[0] = ["unshare", "--uts", "sh", "-c", rename, *cmd]
    return [
        subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for c in commands
    ]


def _finish(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    codes = []
    for p in procs:
        _, err = p.communicate()
        if p.returncode not in (0, -signal.SIGKILL):
            print(err.decode()[-2000:], file=sys.stderr)
        codes.append(p.returncode)
    return codes


def _overhead_s(study: optuna.Study) -> list[float]:
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.datetime_complete and t.datetime_start and "seconds" in t.user_attrs:
            wall = (t.datetime_complete - t.datetime_start).total_seconds()
            out.append(wall - t.user_attrs["seconds"])
    return out


def _throughput(
    server: Any, n: int, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    db = f"bench_w{n}_{os.getpid()}"
    url = server.create_database(db)
    empty = server.database_size_bytes(db)
    start = time.perf_counter()
    codes = _finish(_workers(url, "bench", n, args, env))
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name="bench", storage=url)
    t = tally(study.trials)
    size = server.database_size_bytes(db)
    over = _overhead_s(study)
    return {
        "workers": n,
        "exit_codes": codes,
        "counted": t.counted,
        "wall_s": round(wall, 1),
        "trials_per_hour": round(t.counted / wall * 3600, 1),
        "db_bytes_per_trial": round((size - empty) / max(1, len(study.trials))),
        "db_bytes_empty_schema": empty,
        "outside_objective_s_median": round(statistics.median(over), 3) if over else None,
        "outside_objective_s_max": round(max(over), 3) if over else None,
        "workers_seen": len({x.user_attrs.get("worker") for x in study.trials}),
    }


def _recovery(
    server: Any, args: argparse.Namespace, env: dict[str, str], *, remote: bool
) -> dict[str, Any]:
    """Kill a worker mid-trial. ``remote``: the victim runs under another host name (its own UTS
    namespace, needs root), so the survivor can only find the loss by the heartbeat."""
    url = server.create_database(f"bench_kill_{'remote' if remote else 'local'}_{os.getpid()}")
    procs = _workers(url, "kill", 2, args, env, first_host="worker-b" if remote else None)
    victim = None
    while victim is None:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="kill", storage=url)
        except KeyError:
            continue
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            mine = not remote or t.user_attrs.get("worker", "").startswith("worker-b:")
            if "config" in t.user_attrs and mine:  # inside the objective
                victim = t
    time.sleep(2.0)  # well into the trial
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    codes = _finish(procs)
    study = optuna.load_study(study_name="kill", storage=url)
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == victim.number]
    t = tally(study.trials)
    result: dict[str, Any] = {
        "heartbeat_s": args.heartbeat,
        "grace_s": 3 * args.heartbeat,
        "exit_codes": codes,
        "counted": t.counted,
        "retried": t.retried,
        "victim_state": study.trials[victim.number].state.name,
    }
    if retry and retry[0].datetime_start and retry[0].datetime_complete:
        # Optuna stores naive local timestamps
        started = retry[0].datetime_start.timestamp()
        done = retry[0].datetime_complete.timestamp()
        result["kill_to_retry_start_s"] = round(started - killed_at, 1)
        result["kill_to_retry_complete_s"] = round(done - killed_at, 1)
        result["retry_state"] = retry[0].state.name
    return result


def _sqlite_overhead(args: argparse.Namespace, env: dict[str, str], folder: Path) -> dict[str, Any]:
    url = f"sqlite:///{folder / 'bench.db'}"
    start = time.perf_counter()
    _finish(_workers(url, "bench", 1, args, env))
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name="bench", storage=url)
    over = _overhead_s(study)
    return {
        "workers": 1,
        "storage": "sqlite",
        "wall_s": round(wall, 1),
        "trials_per_hour": round(len(study.trials) / wall * 3600, 1),
        "file_bytes_per_trial": round((folder / "bench.db").stat().st_size / len(study.trials)),
        "outside_objective_s_median": round(statistics.median(over), 3) if over else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=9)
    p.add_argument("--space", default="conservative")
    p.add_argument("--budget", default="smoke")
    p.add_argument("--heartbeat", type=int, default=5)
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="vrtspike-bench-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)
        env = {
            **os.environ,
            "VRTSPIKE_DATA_CACHE": str(folder / "cache"),
            "VRTSPIKE_LOCK_DIR": str(folder / "locks"),
            "VRTSPIKE_ARTIFACT_DIR": str(folder / "artifacts"),
        }
        os.environ.update({k: env[k] for k in ("VRTSPIKE_DATA_CACHE",)})
        load_data("synthetic", get_budget(args.budget), seed=0)  # generated once, outside timing
        server = pg_server.start(folder / "pgdata")
        try:
            results = {
                "machine": f"{os.cpu_count()} cores",
                "space": args.space,
                "budget": args.budget,
                "trials": args.trials,
                "one_worker": _throughput(server, 1, args, env),
                "three_workers": _throughput(server, 3, args, env),
                "recovery_same_host": _recovery(server, args, env, remote=False),
                "recovery_other_host": _recovery(server, args, env, remote=True),
                "sqlite_one_worker": _sqlite_overhead(args, env, folder),
            }
        finally:
            server.stop()
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "workers_bench.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    one, three = results["one_worker"], results["three_workers"]
    print(
        f"\ntrials/hour: 1 worker {one['trials_per_hour']}, 3 workers {three['trials_per_hour']} "
        f"({three['trials_per_hour'] / one['trials_per_hour']:.2f}x)"
    )


if __name__ == "__main__":
    main()
