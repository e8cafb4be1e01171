"""Several worker processes on one PostgreSQL study (a real server on 127.0.0.1, see conftest)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState
from PIL import Image

from search.study.record import tally

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "data" / "space_tiny.yaml")
RUN = [sys.executable, str(ROOT / "run_study.py")]
PASSWORD = "vrt-pw-s3cret"
PIPES: dict[str, int] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "VRTSPIKE_DATA_CACHE": str(tmp_path / "cache"),
        "VRTSPIKE_LOCK_DIR": str(tmp_path / "locks"),
        "VRTSPIKE_ARTIFACT_DIR": str(tmp_path / "artifacts"),
    }


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def _assert_intact(study: optuna.Study, artifacts: Path) -> None:
    """Numbers 0..n-1 once each; every complete trial has finite values and readable artifacts."""
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    assert sorted(numbers) == list(range(len(numbers))), numbers
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        assert t.values is not None and all(math.isfinite(v) for v in t.values)
        assert "config" in t.user_attrs and "latency" in t.user_attrs
        metas = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
        names = sorted(m.filename.rsplit("_", 2)[-1] for m in metas)
        assert names == ["profile.csv", "profile.png", "sharp.png"], (t.number, names)
        for meta in metas:
            path = artifacts / meta.artifact_id
            if meta.mimetype == "image/png":
                with Image.open(path) as im:
                    im.verify()
            else:
                assert path.read_text().startswith("part,ms,share")


def _assert_timed_alone(trials: list[FrozenTrial]) -> None:
    """No latency was measured while another trial held the device (same host: one clock)."""
    spans = [
        (t.number, kind, start, end)
        for t in trials
        for kind, (_waited, start, end) in t.user_attrs["device_windows"].items()
    ]
    assert sum(kind == "timed" for _, kind, _, _ in spans) == len(trials)
    for number, kind, start, end in spans:
        if kind != "timed":
            continue
        for other, _kind, s2, e2 in spans:
            if other != number:
                assert end <= s2 + 1e-3 or start >= e2 - 1e-3, (number, other)


def test_three_workers_reach_the_exact_total_with_each_reference_once(
    pg_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    assert PASSWORD in pg_url
    cmd = [*RUN, "--space", "aggressive", "--budget", "smoke", "--trials", "5"]
    cmd += ["--storage", pg_url, "--study-name", "three", "--heartbeat", "2"]
    procs = [
        subprocess.Popen(
            [*cmd, *(["-v"] if k == 0 else [])],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in range(3)
    ]
    outputs = [p.communicate(timeout=900) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]

    study = _load(pg_url, "three")
    t = tally(study.trials)
    assert (t.counted, t.running, t.waiting, t.retried) == (5, 0, 0, 0)
    assert len(study.trials) == 5
    refs = Counter(x.user_attrs.get("reference") for x in study.trials)
    assert refs == {"baseline": 1, "scheme_a": 1, "scheme_b": 1, None: 2}
    assert all(x.state == TrialState.COMPLETE for x in study.trials)
    workers = {x.user_attrs["worker"] for x in study.trials}
    assert len(workers) >= 2  # the work was shared
    _assert_intact(study, tmp_path / "artifacts")
    _assert_timed_alone(study.trials)

    # the password is nowhere: output, logs, study and trial attributes, exported files
    out_yaml = tmp_path / "best.yaml"
    export = subprocess.run(
        [*RUN, "export", "--study-name", "three", "--storage", pg_url, "--out", str(out_yaml)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr.decode()
    texts = [o.decode() + e.decode() for o, e in outputs]
    texts += [export.stdout.decode(), export.stderr.decode(), out_yaml.read_text()]
    system = study._storage.get_study_system_attrs(study._study_id)
    texts.append(json.dumps([study.user_attrs, system], default=str))
    texts += [json.dumps([x.user_attrs, x.system_attrs], default=str) for x in study.trials]
    assert "storage: postgresql://vrt:***@127.0.0.1" in out_yaml.read_text()
    assert not [text for text in texts if PASSWORD in text]
    assert yaml.safe_load(out_yaml.read_text())["PROVENANCE"]["study"] == "three"


def _running_with_worker(url: str, name: str, remote: bool) -> list[FrozenTrial]:
    """Running trials inside the objective (of the worker-b host only, when ``remote``)."""
    try:
        study = _load(url, name)
    except KeyError:
        return []
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if "config" in t.user_attrs
        and (not remote or t.user_attrs["worker"].startswith("worker-b:"))
    ]


def _can_fake_a_host() -> bool:
    probe = ["unshare", "--uts", "sh", "-c", "hostname other-host"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.parametrize("victim_host", ["same", "other"])
def test_a_worker_killed_mid_trial_is_retried_and_nothing_is_lost(
    pg_url: str, env: dict[str, str], tmp_path: Path, victim_host: str
) -> None:
    """The survivor recovers the trial: at once when the dead worker was on its host (the pid is
    gone), after the heartbeat grace period when it was on another machine (here: a worker in its
    own UTS namespace with another host name)."""
    cmd = [*RUN, "--space", TINY, "--budget", "smoke", "--trials", "4"]
    cmd += ["--storage", pg_url, "--study-name", "kill", "--heartbeat", "1"]
    if victim_host == "same":
        procs = [subprocess.Popen([*cmd, "--workers", "2"], env=env, cwd=tmp_path, **PIPES)]
    else:
        if not _can_fake_a_host():
            pytest.skip("needs unshare --uts (root) to start a worker under another host name")
        remote = ["unshare", "--uts", "sh", "-c", 'hostname worker-b && exec "$0" "$@"', *cmd]
        procs = [subprocess.Popen(c, env=env, cwd=tmp_path, **PIPES) for c in (remote, cmd)]
    deadline = time.monotonic() + 300
    while not (running := _running_with_worker(pg_url, "kill", victim_host == "other")):
        assert time.monotonic() < deadline and procs[0].poll() is None, "no trial started"
        time.sleep(0.2)
    victim = running[0]
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    outputs = [p.communicate(timeout=900) for p in procs]
    if victim_host == "same":
        assert procs[0].returncode == 1, outputs[0][1].decode()[-3000:]  # one worker died
        assert "exit -9" in outputs[0][1].decode()
    else:
        assert procs[0].returncode == -signal.SIGKILL
        assert procs[1].returncode == 0, outputs[1][1].decode()[-3000:]

    study = _load(pg_url, "kill")
    dead = study.trials[victim.number]
    assert dead.state == TrialState.FAIL
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    why = "is no longer running" if victim_host == "same" else "stopped sending heartbeats"
    assert f":{pid} {why}" in retry.user_attrs["retry_reason"]
    assert retry.system_attrs["failed_trial"] == victim.number
    t = tally(study.trials)
    assert (t.counted, t.running, t.waiting, t.retried) == (4, 0, 0, 1)
    _assert_intact(study, tmp_path / "artifacts")


def test_two_workers_share_a_promotion_and_reach_the_exact_count(
    pg_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    store = ["--storage", pg_url, "--study-name", "p"]
    first = subprocess.run([*RUN, "--space", TINY, "--budget", "smoke", "--trials", "6", *store],
                           env=env, cwd=tmp_path, capture_output=True, timeout=600)  # fmt: skip
    assert first.returncode == 0, first.stderr.decode()[-3000:]
    cmd = [*RUN, "promote", "--space", TINY, "--top", "4", "--heartbeat", "2", *store]
    procs = [subprocess.Popen(cmd, env=env, cwd=tmp_path, **PIPES) for _ in range(2)]
    outputs = [p.communicate(timeout=900) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]

    rung = _load(pg_url, "p@r1")
    promoted = rung.user_attrs["promoted"]
    assert 1 <= len(promoted) <= 4 and len(set(promoted)) == len(promoted)
    t = tally(rung.trials)
    assert (t.counted, t.running, t.waiting, t.retried) == (len(promoted), 0, 0, 0)
    froms = [x.user_attrs["promoted_from"]["trial"] for x in rung.trials]
    assert sorted(froms) == sorted(promoted)  # each promoted trial re-measured exactly once
    assert _load(pg_url, "p").user_attrs["rungs"] == {"1": "p@r1"}
    if len(promoted) >= 3:
        assert len({x.user_attrs["worker"] for x in rung.trials}) >= 2  # the work was shared
    _assert_intact(rung, tmp_path / "artifacts")
