"""Workers sharing a study: counting, retries, locks, Ctrl-C (SQLite; PostgreSQL in test_pg_*)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

import run_study
from model.errors import VRTSpikeError
from search.measure.device import parse_device
from search.study import launch
from search.study.locks import DeviceLock, LockError, StorageGate, single_worker_lock
from search.study.record import tally
from search.study.storage import StorageURL
from search.study.worker import RetryLostTrial, heartbeat_interval, requeue, run_worker

ROOT = Path(__file__).resolve().parents[1]
SPACE = str(ROOT / "tests" / "data" / "space_tiny.yaml")


@pytest.fixture()
def locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "locks"
    monkeypatch.setenv("VRTSPIKE_LOCK_DIR", str(folder))
    return folder


def _study(url: str = "sqlite:///:memory:") -> optuna.Study:
    return optuna.create_study(directions=["minimize", "maximize"], storage=url)


def test_tally_counts_retried_failures_once() -> None:
    study = _study()
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                params={"x": 0.5},
                distributions=dist,
                values=[1.0, 2.0] if state == TrialState.COMPLETE else None,
            )
        )
    failed = study.trials[2]
    assert tally(study.trials).counted == 3
    retry = requeue(study, failed, reason="lost", max_retry=2)
    assert retry == 3
    t = tally(study.trials)
    assert (t.counted, t.waiting, t.retried) == (2, 1, 1)
    waiting = study.trials[3]
    assert waiting.params == {"x": 0.5} and waiting.user_attrs["retry_of"] == 2
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(waiting) == 2
    # the retry fails too: a second retry, then no more
    study.tell(study.ask(), state=TrialState.FAIL)
    assert requeue(study, study.trials[3], reason="lost", max_retry=2) == 4
    study.tell(study.ask(), state=TrialState.FAIL)
    assert requeue(study, study.trials[4], reason="lost", max_retry=2) is None
    t = tally(study.trials)
    assert (t.counted, t.waiting, t.retried) == (3, 0, 2)


def test_run_worker_reaches_the_total_and_never_overshoots(tmp_path: Path, locks: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _study(url)
    gate = StorageGate(StorageURL.parse(url))
    seen: list[int] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 1:
            raise optuna.TrialPruned()
        return x, 1 - x

    n = run_worker(
        study, objective, total=5, gate=gate, callbacks=[lambda s, t: seen.append(t.number)]
    )
    assert n == 5 and seen == [0, 1, 2, 3, 4]
    assert run_worker(study, objective, total=5, gate=gate) == 0  # already full
    assert tally(study.trials).counted == 5 and len(study.trials) == 5


def test_caught_exception_fails_the_trial_with_its_reason(tmp_path: Path, locks: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _study(url)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        raise MemoryError("too big")

    run_worker(
        study, objective, total=2, gate=StorageGate(StorageURL.parse(url)), catch=(MemoryError,)
    )
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    assert study.trials[0].user_attrs["fail_reason"] == "MemoryError: too big"


def test_uncaught_exception_fails_the_trial_and_propagates(tmp_path: Path, locks: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _study(url)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        run_worker(study, objective, total=2, gate=StorageGate(StorageURL.parse(url)))
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[0].user_attrs["fail_reason"] == "ValueError: bug"


def test_keyboard_interrupt_fails_and_requeues_the_running_trial(
    tmp_path: Path, locks: Path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _study(url)
    study.enqueue_trial({"x": 0.25}, user_attrs={"reference": "baseline"})

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        trial.suggest_float("x", 0, 1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_worker(study, objective, total=3, gate=StorageGate(StorageURL.parse(url)))
    first, retry = study.trials
    assert first.state == TrialState.FAIL
    assert first.user_attrs["fail_reason"].startswith("interrupted (Ctrl-C) in worker ")
    assert retry.state == TrialState.WAITING and retry.params == {"x": 0.25}
    assert retry.user_attrs == {
        "reference": "baseline",
        "retry_of": 0,
        "retry_reason": first.user_attrs["fail_reason"],
    }


def test_a_trial_stopped_before_it_suggested_retries_its_enqueued_params(
    tmp_path: Path, locks: Path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _study(url)
    study.enqueue_trial({"x": 0.75}, user_attrs={"reference": "scheme_a"})
    calls = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        calls.append(trial.number)
        if len(calls) == 1:
            raise KeyboardInterrupt  # e.g. while loading data, before any suggestion
        x = trial.suggest_float("x", 0, 1)
        return x, x

    with pytest.raises(KeyboardInterrupt):
        run_worker(study, objective, total=1, gate=StorageGate(StorageURL.parse(url)))
    assert study.trials[0].params == {}
    run_worker(study, objective, total=1, gate=StorageGate(StorageURL.parse(url)))
    retry = study.trials[1]
    assert retry.state == TrialState.COMPLETE and retry.params == {"x": 0.75}
    assert retry.user_attrs["reference"] == "scheme_a"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # the ask below
def test_a_lost_trial_is_failed_and_retried_by_the_next_worker(tmp_path: Path, locks: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = StorageURL.parse(url).open(create=True, heartbeat=1, on_lost=RetryLostTrial(2))
    study = optuna.create_study(directions=["minimize", "maximize"], storage=storage)
    lost = study.ask()  # a worker that started a trial, beat once, and died
    lost.suggest_float("x", 0, 1)
    lost.set_user_attr("worker", "elsewhere:123")
    storage.record_heartbeat(lost._trial_id)
    time.sleep(4.5)  # SQLite stores heartbeats to the second

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0, 1)
        return x, 1 - x

    assert run_worker(study, objective, total=2, gate=StorageGate(StorageURL.parse(url))) == 2
    dead, *rest = study.trials
    (retry,) = [t for t in rest if t.user_attrs.get("retry_of") == 0]
    (other,) = [t for t in rest if t.number != retry.number]
    assert dead.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs["retry_reason"].startswith("lost: elsewhere:123 stopped sending")
    assert other.state == TrialState.COMPLETE
    t = tally(study.trials)
    assert (t.counted, t.retried) == (2, 1)


def test_heartbeats_are_recorded_while_a_trial_runs(tmp_path: Path, locks: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = StorageURL.parse(url).open(create=True, heartbeat=1)
    study = optuna.create_study(directions=["minimize", "maximize"], storage=storage)
    assert heartbeat_interval(study._storage) == 1  # through Optuna's cache wrapper
    beats: list[bool] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        time.sleep(4.5)  # longer than the grace period: only heartbeats keep it alive
        fail_stale_trials(study)
        beats.append(study.trials[trial.number].state == TrialState.RUNNING)
        return 0.0, 0.0

    run_worker(study, objective, total=1, gate=StorageGate(StorageURL.parse(url)))
    assert beats == [True] and study.trials[0].state == TrialState.COMPLETE


def _hold_shared(folder: str, ready: mp.Event, release: mp.Event, log: str) -> None:
    with DeviceLock("cpu", folder=Path(folder)).shared():
        ready.set()
        release.wait(30)
        with open(log, "a") as f:
            f.write("reader released\n")


def test_device_lock_exclusive_waits_for_shared_holders(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    log = tmp_path / "order.txt"
    reader = ctx.Process(target=_hold_shared, args=(str(tmp_path), ready, release, str(log)))
    reader.start()
    try:
        assert ready.wait(60)
        lock = DeviceLock("cpu", folder=tmp_path)
        with lock.shared():  # several trainers at once
            pass
        release.set()
        with lock.exclusive():  # acquired only once the reader is gone
            log.open("a").write("writer acquired\n")
    finally:
        release.set()
        reader.join(30)
    assert log.read_text().splitlines() == ["reader released", "writer acquired"]


def test_second_worker_on_one_sqlite_file_is_refused(tmp_path: Path, locks: Path) -> None:
    db = tmp_path / "s.db"
    with (
        single_worker_lock(StorageURL.parse(f"sqlite:///{db}")),
        pytest.raises(LockError, match="PostgreSQL"),
        single_worker_lock(StorageURL.parse(f"sqlite:///{db}")),
    ):
        pass
    with single_worker_lock(StorageURL.parse(f"sqlite:///{db}")):  # free again
        pass


def test_cli_refuses_a_second_sqlite_worker_and_sqlite_workers(
    tmp_path: Path, locks: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "studies" / "vrt_spike.db"
    with single_worker_lock(StorageURL.parse(f"sqlite:///{db}")):
        assert run_study.main(["--space", SPACE, "--budget", "smoke", "--trials", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PostgreSQL" in err and "another worker" in err
    assert run_study.main(["--space", SPACE, "--budget", "smoke", "--workers", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SQLite cannot serve several" in err
    assert "PostgreSQL" in err and "journal:" in err
    assert not (tmp_path / "studies").exists()


def _wait_for(predicate, seconds: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.2)


def _running(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return []
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


@pytest.mark.parametrize(
    ("signum", "shown"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")]
)
def test_ctrl_c_ends_the_trial_failed_exits_130_and_a_rerun_retries_it(
    tmp_path: Path, locks: Path, signum: int, shown: str
) -> None:
    env = {**os.environ, "VRTSPIKE_DATA_CACHE": str(tmp_path / "cache")}
    url = f"sqlite:///{tmp_path / 's.db'}"
    cmd = [sys.executable, str(ROOT / "run_study.py"), "--space", SPACE, "--budget", "smoke"]
    cmd += ["--storage", url, "--study-name", "c", "--trials", "3"]
    # a shell starts a background job (`cmd &`) with SIGINT ignored, and a child inherits that:
    # give the worker the default disposition, as a terminal's Ctrl-C would find it
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for(lambda: bool(_running(url, "c")), 240)
    time.sleep(1.0)  # inside the objective
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err and f"interrupted ({shown})".encode() in err
    study = optuna.load_study(study_name="c", storage=url)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and f"interrupted ({shown})" in failed[0].user_attrs["fail_reason"]
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert [t.user_attrs["retry_of"] for t in waiting] == [failed[0].number]

    done = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()
    study = optuna.load_study(study_name="c", storage=url)
    t = tally(study.trials)
    assert (t.counted, t.running, t.waiting, t.retried) == (3, 0, 0, 1)
    retry = study.trials[waiting[0].number]
    assert retry.state == TrialState.COMPLETE and retry.params == failed[0].params


def test_journal_workers_share_a_study_and_recover_a_killed_one(tmp_path: Path) -> None:
    """Optuna's journal file storage, several workers on one host, no heartbeats: the dead
    worker's trial is failed and retried because its process is gone."""
    env = {
        **os.environ,
        "VRTSPIKE_DATA_CACHE": str(tmp_path / "cache"),
        "VRTSPIKE_LOCK_DIR": str(tmp_path / "locks"),
    }
    log = tmp_path / "studies" / "j.log"
    url = f"journal:{log}"
    cmd = [sys.executable, str(ROOT / "run_study.py"), "--space", SPACE, "--budget", "smoke"]
    cmd += ["--storage", url, "--study-name", "j", "--trials", "4", "--workers", "2"]
    parent = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def running() -> list[optuna.trial.FrozenTrial]:
        if not log.exists():
            return []
        storage = StorageURL.parse(url).open(create=False)
        try:
            study = optuna.load_study(study_name="j", storage=storage)
        except KeyError:
            return []
        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [t for t in trials if "config" in t.user_attrs]

    _wait_for(lambda: bool(running()), 240)
    victim = running()[0]
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    out, err = parent.communicate(timeout=600)
    assert parent.returncode == 1 and b"exit -9" in err, err.decode()[-2000:]
    study = optuna.load_study(study_name="j", storage=StorageURL.parse(url).open(create=False))
    t = tally(study.trials)
    assert (t.counted, t.running, t.waiting, t.retried) == (4, 0, 0, 1)
    assert study.trials[victim.number].state == TrialState.FAIL
    (retry,) = [x for x in study.trials if x.user_attrs.get("retry_of") == victim.number]
    assert (
        retry.state == TrialState.COMPLETE
        and "is no longer running" in retry.user_attrs["retry_reason"]
    )
    assert sorted(x.number for x in study.trials) == list(range(len(study.trials)))
    assert (tmp_path / "studies" / "j_artifacts").is_dir()


@pytest.mark.parametrize(
    ("workers", "device", "gpus", "expected"),
    [
        ("gpus", "auto", 2, ["cuda:0", "cuda:1"]),
        (3, "cuda", 2, ["cuda:0", "cuda:1", "cuda:0"]),
        (2, "cuda:1", 2, ["cuda:1", "cuda:1"]),
        (3, "cpu", 0, ["cpu", "cpu", "cpu"]),
    ],
)
def test_workers_are_spread_over_the_visible_gpus(
    monkeypatch: pytest.MonkeyPatch, workers: int | str, device: str, gpus: int, expected: list[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert launch.worker_devices(workers, str(parse_device(device))) == expected


def test_workers_without_a_gpu_need_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(VRTSpikeError, match="no GPU is visible"):
        launch.worker_devices("gpus", str(parse_device("auto")))
