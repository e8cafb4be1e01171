"""A parent's sandwich shared by CPU processes: the shares, and the training of one process."""

from __future__ import annotations

import dataclasses
import queue
from pathlib import Path

import pytest
import torch

from search.budgets import get_budget
from search.measure.budgets import apply_budget
from search.measure.sandwich import _drain, share
from search.measure.train import train_model
from search.space import load_space
from search.study.parent import _Sandwich, elastic_bounds
from search.study.runner import load_data

SPACE = str(Path(__file__).parent / "data" / "space_tiny.yaml")
BUDGET = dataclasses.replace(get_budget("smoke"), parent_steps=3)
NO_DROP = {"MODEL.DROP_PATH_RATE": 0.0}  # stochastic depth draws differ between the processes


def test_rank_0_takes_the_whole_network_and_the_others_deal_the_children() -> None:
    nets = [None, "smallest", "r1", "r2"]
    assert share(nets, 0, 1) == nets  # type: ignore[arg-type]
    assert [share(nets, r, 2) for r in range(2)] == [[None], ["smallest", "r1", "r2"]]  # type: ignore[arg-type]
    assert [share(nets, r, 3) for r in range(3)] == [[None], ["smallest", "r2"], ["r1"]]  # type: ignore[arg-type]
    for rank, ranks in ((0, 5), (2, 2), (0, 0)):
        with pytest.raises(ValueError, match="cannot share 4 sub-networks"):
            share(nets, rank, ranks)  # type: ignore[arg-type]


def test_a_ranks_error_is_raised_by_the_caller() -> None:
    messages: queue.Queue = queue.Queue()
    seen: list[tuple] = []
    messages.put(("step", (1, 3, 0.5, 1.0)))
    messages.put(("error", ValueError("rank 1: bad data")))
    with pytest.raises(ValueError, match="rank 1: bad data"):
        _drain(messages, lambda *a: seen.append(a))
    assert seen == [(1, 3, 0.5, 1.0)]


def test_two_processes_train_the_sandwich_one_process_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VRTSPIKE_DATA_CACHE", str(tmp_path))
    data = load_data("synthetic", BUDGET, seed=0)
    space = load_space(SPACE)
    cfg = apply_budget(elastic_bounds(space)[0], BUDGET).with_overrides(NO_DROP)
    sandwich = _Sandwich(space, BUDGET, cfg, n=1, seed=0)
    schedule = [[None if n is None else n.with_overrides(NO_DROP) for n in sandwich(s)]
                for s in range(3)]  # fmt: skip
    assert all(len(nets) == 3 and nets[0] is None for nets in schedule)
    steps: list[tuple] = []
    runs = {
        ranks: train_model(cfg, BUDGET, data, device="cpu", seed=0, steps=3, ranks=ranks,
                           subnets=lambda s: schedule[s],
                           progress=(lambda *a: steps.append(a)) if ranks == 2 else None)
        for ranks in (1, 2)
    }  # fmt: skip
    one, two = (runs[r].model.state_dict() for r in (1, 2))
    assert one.keys() == two.keys()
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert runs[2].result.loss_curve == pytest.approx(runs[1].result.loss_curve, rel=1e-4)
    assert [s[0] for s in steps] == [1, 2, 3]  # rank 0's progress reaches the caller
    assert runs[2].result.psnr_db == pytest.approx(runs[1].result.psnr_db, abs=1e-3)


def test_two_ranks_need_a_sandwich_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VRTSPIKE_DATA_CACHE", str(tmp_path))
    data = load_data("synthetic", BUDGET, seed=0)
    cfg = apply_budget(elastic_bounds(load_space(SPACE))[0], BUDGET)
    with pytest.raises(ValueError, match="ranks > 1 shares a sandwich"):
        train_model(cfg, BUDGET, data, device="cpu", seed=0, steps=1, ranks=2)
