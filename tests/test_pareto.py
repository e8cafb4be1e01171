from __future__ import annotations

import random

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume

from search.report.pareto import (
    SelectionError,
    hypervolume_2d,
    knee_index,
    non_dominated,
    select_index,
)

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
