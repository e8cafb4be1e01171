"""The per-trial progress line: elapsed time from the start, ETA from the trials' own pace."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

import optuna

from search.study.progress import Progress


def _add(study: optuna.Study, started_ago_s: float) -> optuna.trial.FrozenTrial:
    t = optuna.trial.create_trial(values=[10.0, 30.0])
    t.datetime_start = datetime.now() - timedelta(seconds=started_ago_s)
    study.add_trial(t)
    return study.get_trials()[-1]


def _seconds(line: str, label: str) -> int:
    m = re.search(rf"{label} (\d+):(\d\d):(\d\d)", line)
    assert m, line
    h, mi, s = (int(g) for g in m.groups())
    return h * 3600 + mi * 60 + s


def test_eta_ignores_the_one_off_builds_before_the_first_trial() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    lines: list[str] = []
    progress = Progress(total=3, write=lines.append)
    progress.start = time.perf_counter() - 1000  # a 1000 s parent build before the first trial
    progress(study, _add(study, started_ago_s=10))  # the first trial took 10 s
    assert _seconds(lines[0], "elapsed") == 1000
    assert 18 <= _seconds(lines[0], "ETA") <= 22  # two more trials at 10 s each, not 2000 s
    assert lines[0].startswith("[  1/3] trial   0 complete latency    10.00 ms  PSNR  30.00 dB")


def test_eta_counts_every_trial_since_the_first_one() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    lines: list[str] = []
    progress = Progress(total=5, write=lines.append)
    progress(study, _add(study, started_ago_s=20))
    progress(study, _add(study, started_ago_s=10))  # 2 trials in the 20 s since the first began
    assert 28 <= _seconds(lines[1], "ETA") <= 32  # 3 more at 10 s each
