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

from search.worker import tally

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "data" / "space_tiny.yaml")
RUN = [sys.executable, str(ROOT / "run_study.py")]
PASSWORD = "vrt-pw-s3cret"


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


def _running_with_worker(url: str, name: str) -> list[FrozenTrial]:
    try:
        study = _load(url, name)
    except KeyError:
        return []
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if "worker" in t.user_attrs and "config" in t.user_attrs  # inside the objective
    ]


def test_a_worker_killed_mid_trial_is_retried_and_nothing_is_lost(
    pg_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    cmd = [*RUN, "--space", TINY, "--budget", "smoke", "--trials", "4", "--workers", "2"]
    cmd += ["--storage", pg_url, "--study-name", "kill", "--heartbeat", "1"]
    parent = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not (running := _running_with_worker(pg_url, "kill")):
        assert time.monotonic() < deadline and parent.poll() is None, "no trial started"
        time.sleep(0.2)
    victim = running[0]
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    out, err = parent.communicate(timeout=900)
    assert parent.returncode == 1, err.decode()[-3000:]  # one worker died
    assert "exit -9" in err.decode()

    study = _load(pg_url, "kill")
    dead = study.trials[victim.number]
    assert dead.state == TrialState.FAIL
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert f":{pid} stopped sending heartbeats" in retry.user_attrs["retry_reason"]
    assert retry.system_attrs["failed_trial"] == victim.number
    t = tally(study.trials)
    assert (t.counted, t.running, t.waiting, t.retried) == (4, 0, 0, 1)
    _assert_intact(study, tmp_path / "artifacts")
