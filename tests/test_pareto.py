from __future__ import annotations

import random

import numpy as np
import optuna
import pytest
from optuna._hypervolume import compute_hypervolume

from search.report.pareto import (
    SelectionError,
    hypervolume_2d,
    knee_index,
    non_dominated,
    select_index,
)
from search.report.report import front_report, render_markdown, render_text

FRONT = [(100.0, 30.0), (150.0, 31.8), (300.0, 32.1), (50.0, 25.0)]


def test_non_dominated_and_sorted_by_latency() -> None:
    pts = [*FRONT, (200.0, 31.0), (100.0, 29.0)]  # the last two are dominated
    assert non_dominated(pts) == [3, 0, 1, 2]


def test_hypervolume_matches_optunas_own_computation() -> None:
    rng = random.Random(0)
    for _ in range(20):
        pts = [(rng.uniform(10, 100), rng.uniform(20, 35)) for _ in range(rng.randint(1, 12))]
        ref = (120.0, 18.0)
        # optuna minimises every objective: negate PSNR
        expected = compute_hypervolume(
            np.array([[lat, -p] for lat, p in pts]), np.array([ref[0], -ref[1]])
        )
        assert hypervolume_2d(pts, ref) == pytest.approx(expected, rel=1e-12)


def test_hypervolume_ignores_points_beyond_the_reference() -> None:
    assert hypervolume_2d([(10.0, 30.0), (200.0, 40.0)], (100.0, 20.0)) == pytest.approx(90 * 10)
    assert hypervolume_2d([], (100.0, 20.0)) == 0.0


def test_knee_is_the_bend() -> None:
    # strong bend at (100, 31): faster loses a lot of PSNR, slower gains little
    assert knee_index([(50.0, 25.0), (100.0, 31.0), (150.0, 31.5), (300.0, 32.0)]) == 1
    # normalised distances above the chord: (100, 30) 0.50, (150, 31.8) 0.56
    assert knee_index(FRONT) == 1
    assert knee_index([(1.0, 1.0)]) == 0


def test_policies() -> None:
    assert select_index(FRONT, "fastest-within", within_db=0.5) == 1  # 31.8 >= 32.1 - 0.5
    assert select_index(FRONT, "fastest-within", within_db=0.0) == 2
    assert select_index(FRONT, "best-under", max_latency_ms=120) == 0
    with pytest.raises(SelectionError, match="no trial on the front is under 10"):
        select_index(FRONT, "best-under", max_latency_ms=10)
    with pytest.raises(SelectionError, match="needs --within-db"):
        select_index(FRONT, "fastest-within")
    with pytest.raises(SelectionError, match="front is empty"):
        select_index([], "knee")


def test_front_shows_a_repeated_config_once() -> None:
    """A sampler that proposes a front configuration again adds a trial of the same point; the
    report shows it in the first one's row, not as a second member of the front."""
    study = optuna.create_study(directions=["minimize", "maximize"])
    dist = {"MODEL.WINDOW_SIZE": optuna.distributions.IntDistribution(3, 8)}
    # number: (window, latency_ms, psnr_db, extra user attributes)
    trials = {
        0: (8, 100.0, 30.0, {"reference": "baseline"}),
        1: (6, 50.0, 29.5, {}),
        2: (6, 50.0, 29.5, {"reused_from": 1}),
        3: (7, 80.0, 28.0, {}),
    }
    for window, lat, psnr, extra in trials.values():
        attrs = {"config": {"MODEL": {"WINDOW_SIZE": window}}, **extra}
        study.add_trial(
            optuna.trial.create_trial(
                params={"MODEL.WINDOW_SIZE": window},
                distributions=dist,
                values=[lat, psnr],
                user_attrs=attrs,
            )
        )
    assert {t.number for t in study.best_trials} == {0, 1, 2}
    report = front_report(study)
    assert [(r.number, r.repeats) for r in report.front] == [(1, (2,)), (0, ())]
    text = render_text(report)
    assert "2 configurations and 1 repeating one" in text
    assert "same config as #2" in text
    assert "same config as #2" in render_markdown(report)
