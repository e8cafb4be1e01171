"""Promotion to a higher fidelity (rungs), on SQLite and the smoke budget."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState

import run_study
from search.budgets import get_budget
from search.report.pareto import nondominated_fronts, promotion_order
from search.study.objective import Objective
from search.study.promote import ETA, Promotion, PromotionError, rung_budget, select_promoted
from search.study.record import StudyRecord, TrialRecord, tally

SPACE = str(Path(__file__).parent / "data" / "space_tiny.yaml")


def _trial(number: int, latency: float, psnr: float, x: int, reference: str = "") -> FrozenTrial:
    t = optuna.trial.create_trial(
        params={"x": x},
        distributions={"x": optuna.distributions.IntDistribution(0, 100)},
        values=[latency, psnr],
        user_attrs={"reference": reference} if reference else {},
    )
    t.number = number
    return t


def test_fronts_are_peeled_and_ordered_by_crowding() -> None:
    pts = [(1.0, 30.0), (2.0, 31.0), (3.0, 32.0), (2.5, 30.5), (4.0, 31.5), (5.0, 30.0)]
    assert nondominated_fronts(pts) == [[0, 1, 2], [3, 4], [5]]
    order = promotion_order(pts)
    assert order[:3] in ([0, 2, 1], [2, 0, 1]) and sorted(order[:3]) == [0, 1, 2]
    assert order[3:] == [3, 4, 5]  # a two-member front: both ends, by latency; then the third


def test_selection_follows_the_sorting_dedups_params_and_adds_the_references() -> None:
    done = [
        _trial(0, 5.0, 30.0, x=0, reference="baseline"),  # dominated by everything
        _trial(1, 1.0, 31.0, x=1),
        _trial(2, 2.0, 32.0, x=2),
        _trial(3, 3.0, 33.0, x=3),
        _trial(4, 3.0, 33.0, x=3),  # same params as trial 3: trained once at the rung
        _trial(5, 2.5, 31.5, x=5),
        _trial(6, 4.0, 32.5, x=6),
        _trial(7, 4.5, 31.0, x=7),
        _trial(8, 1.5, 30.5, x=8),
    ]
    # default top: max(first front, ceil(9 / ETA)) = max(3, 3); the baseline is added
    chosen = [t.number for t in select_promoted(done, None)]
    assert ETA == 3 and sorted(chosen[:3]) == [1, 2, 3] and chosen[3:] == [0]
    # top 5: the whole first front, then the second front (trials 5, 6, 8) best-crowded first
    chosen = [t.number for t in select_promoted(done, 5)]
    assert sorted(chosen[:3]) == [1, 2, 3] and 4 not in chosen and chosen[-1] == 0
    points = [(t.values[0], t.values[1]) for t in done]
    second = [done[i].number for i in nondominated_fronts(points)[1]]
    assert set(chosen[3:5]) <= set(second) - {4}
    # a first front larger than 1/ETA of the trials goes up whole
    wide = [_trial(k, float(k), 30.0 + k, x=k) for k in range(6)]
    assert [t.number for t in select_promoted(wide, None)] == [0, 5, 1, 2, 3, 4]


def test_rung_budget_and_promotion_checks() -> None:
    smoke = get_budget("smoke")
    b = rung_budget(smoke, 1)
    assert (b.steps, b.num_val_clips) == (smoke.steps * ETA, smoke.num_val_clips * ETA)
    assert rung_budget(smoke, 2, steps=7).steps == 7
    assert Promotion("s", 2).name == "s@r2" and Promotion("s", 2).below == "s@r1"
    for bad in ({"rung": 0}, {"top": 0}, {"steps": 1}):
        with pytest.raises(PromotionError):
            Promotion("s", **bad)


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VRTSPIKE_DATA_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _cli(*args: str) -> int:
    return run_study.main(list(args))


def test_promote_resume_report_and_export(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{workdir / 's.db'}"
    store = ("--storage", url)
    up = ("promote", "--study-name", "t", "--space", SPACE, "--top")
    assert _cli("--space", SPACE, "--budget", "smoke", *store, "--study-name", "t",
                "--trials", "5") == 0  # fmt: skip
    base = optuna.load_study(study_name="t", storage=url)
    done = [t for t in base.trials if t.state == TrialState.COMPLETE]
    expected = [t.number for t in select_promoted(done, 2)]

    # interrupted in its second trial: exit 130, that trial failed and re-queued
    calls = {"n": 0}
    real = Objective.__call__

    def flaky(self: Objective, trial: optuna.Trial) -> tuple[float, float]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, trial)

    monkeypatch.setattr(Objective, "__call__", flaky)
    assert _cli(*up, "2", *store) == 130
    monkeypatch.setattr(Objective, "__call__", real)
    rung = optuna.load_study(study_name="t@r1", storage=url)
    assert tally(rung.trials).counted == 1
    assert _cli(*up, "2", *store) == 0  # resumes
    rung = optuna.load_study(study_name="t@r1", storage=url)
    t = tally(rung.trials)
    assert (t.counted, t.running, t.waiting, t.retried) == (len(expected), 0, 0, 1)
    assert _cli(*up, "2", *store) == 0  # nothing more runs
    assert len(optuna.load_study(study_name="t@r1", storage=url).trials) == len(rung.trials)

    # the records: what went up, from where, at which fidelity
    rec, below = StudyRecord.of(rung), StudyRecord.of(optuna.load_study(study_name="t",
                                                                        storage=url))  # fmt: skip
    assert list(rec.promoted) == expected and below.rungs == {1: "t@r1"}
    assert rec.rung == {
        "base": "t",
        "rung": 1,
        "below": "t",
        "steps": 3 * get_budget("smoke").steps,
        "val_clips": 3 * get_budget("smoke").num_val_clips,
        "top": 2,
    }
    kept = [t for t in rung.trials if t.state == TrialState.COMPLETE]
    froms = sorted(TrialRecord.of(t).promoted_from["trial"] for t in kept)
    assert froms == sorted(expected)
    for t in kept:
        src = base.trials[t.user_attrs["promoted_from"]["trial"]]
        assert t.params == src.params
        assert t.user_attrs["latency_target"]["source"] == "measured"
    assert rung.user_attrs["budget_settings"]["steps"] == 3 * get_budget("smoke").steps

    # pareto and export read the highest rung; --rung 0 the study itself
    capsys.readouterr()
    assert _cli("pareto", "--study-name", "t", *store) == 0
    out = capsys.readouterr().out
    assert "rung 1:" in out and "t@r1" in out and "dB below" in out
    agreement = optuna.load_study(study_name="t@r1", storage=url).user_attrs["agreement"]
    assert agreement["trials"] == len(expected)
    assert _cli("pareto", "--study-name", "t", "--rung", "0", *store) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "dB below" not in out and "t@r1" in out
    assert _cli("export", "--study-name", "t", *store, "--out", "best.yaml") == 0
    prov = yaml.safe_load((workdir / "best.yaml").read_text())["PROVENANCE"]
    assert prov["study"] == "t@r1" and prov["rung"] == 1
    assert prov["promoted_from_trial"]["study"] == "t"
    assert _cli("export", "--study-name", "t", *store, "--out", "r0.yaml", "--rung", "0") == 0
    prov = yaml.safe_load((workdir / "r0.yaml").read_text())["PROVENANCE"]
    assert prov["study"] == "t" and prov["rung"] == 0

    # another --top for the same rung is refused, naming what differs
    assert _cli(*up, "3", *store) == 2
    assert "was run with rung" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("promote", "--study-name", "nope"), "no study 'nope'"),
        (("promote", "--study-name", "t", "--top", "0"), "--top"),
        (("promote", "--study-name", "t", "--space", SPACE, "--rung", "2"), "has no rung 1"),
        (("promote", "--study-name", "e", "--space", SPACE), "has no complete trial"),
        (("promote", "--study-name", "t"), "not shipped: give its YAML file with --space PATH"),
        (("pareto", "--study-name", "t", "--rung", "1"), "has no rung 1"),
        (("export", "--study-name", "t", "--rung", "3", "--out", "x.yaml"), "has no rung 3"),
    ],
)
def test_bad_promotions_exit_2_with_one_line_and_write_nothing(
    workdir: Path,
    template: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    words: str,
) -> None:
    shutil.copy(template, workdir / "s.db")
    url = f"sqlite:///{workdir / 's.db'}"
    before = _snapshot(url)
    capsys.readouterr()
    assert _cli(*args, "--storage", url) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert _snapshot(url) == before and not (workdir / "x.yaml").exists()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage with study ``t`` (one complete smoke trial of the tiny space) and study ``e``
    (the same record, no trial)."""
    folder = tmp_path_factory.mktemp("template")
    url = f"sqlite:///{folder / 's.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("VRTSPIKE_DATA_CACHE", str(folder / "cache"))
        assert _cli("--space", SPACE, "--budget", "smoke", "--storage", url, "--study-name",
                    "t", "--trials", "1") == 0  # fmt: skip
    model = optuna.load_study(study_name="t", storage=url)
    empty = optuna.create_study(study_name="e", storage=url, directions=model.directions)
    for key, value in model.user_attrs.items():
        empty.set_user_attr(key, value)
    return folder / "s.db"


def _snapshot(url: str) -> dict[str, object]:
    storage = optuna.storages.RDBStorage(url)
    out: dict[str, object] = {}
    for s in storage.get_all_studies():
        trials = storage.get_all_trials(s._study_id, deepcopy=False)
        out[s.study_name] = (s.user_attrs, [(t.state, t.user_attrs) for t in trials])
    return out


def test_no_nan_in_agreement_with_one_trial() -> None:
    from search.report.report import Promoted, agreement

    one = [Promoted(0, 0, "", (1.0, 30.0), (1.1, 30.2), 1, 1)]
    a = agreement(one)
    assert a == {"trials": 1, "latency_ms": None, "psnr_db": None}
    assert not any(isinstance(v, float) and math.isnan(v) for v in a.values())
