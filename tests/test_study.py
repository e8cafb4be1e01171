"""The search service end to end on the smoke budget: objective, CLI, resume, reuse, export."""

from __future__ import annotations

from pathlib import Path

import optuna
import optuna_dashboard
import pytest
import yaml

import run_study
from model import VRTSpikeConfig, load_preset
from search.budgets import get_budget
from search.space import load_space
from search.study.objective import Objective, accuracy_key
from search.study.runner import REFERENCES, _enqueue_references, load_data

DATA = Path(__file__).parent / "data"
SPACE = str(DATA / "space_tiny.yaml")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture()
def workdir(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VRTSPIKE_DATA_CACHE", str(cache))
    return tmp_path


def _cli(*args: str) -> int:
    return run_study.main(list(args))


def test_objective_with_fixed_trial(workdir: Path) -> None:
    budget = get_budget("smoke")
    space = load_space(SPACE)
    objective = Objective(
        space=space,
        budget=budget,
        data=load_data("synthetic", budget, seed=0),
        device="cpu",
        seed=0,
    )
    params = {"MODEL.VRT_DEPTHS[7]": 1, "MODEL.WINDOW_SIZE": 3, "MODEL.FUSE.CHUNK_SIZE": 8}
    trial = optuna.trial.FixedTrial(params)
    latency_ms, psnr_db = objective(trial)
    assert latency_ms > 0 and 0 < psnr_db < 100
    attrs = trial.user_attrs
    cfg = VRTSpikeConfig.from_dict(attrs["config"])
    assert cfg.model.window_size == 3 and cfg.model.vrt_depths[7] == 1
    assert cfg == load_preset("tiny").with_overrides(
        {"MODEL.VRT_DEPTHS[7]": 1, "MODEL.WINDOW_SIZE": 3, "MODEL.FUSE.CHUNK_SIZE": 8}
    )
    assert attrs["latency"]["median_ms"] == latency_ms
    assert attrs["latency"]["attempts"] == budget.latency_blocks == 1  # smoke: never re-measured
    assert set(attrs["per_stage_ms"]) >= {"flow", "stage1", "stage8", "fusion1"}
    assert attrs["train"]["steps"] == budget.steps and attrs["params"] > 0 and attrs["flops"] > 0
    assert attrs["budget"]["name"] == "smoke" and attrs["feasible"] is True


def test_accuracy_key_ignores_chunking_only() -> None:
    cfg = load_preset("baseline")
    same = cfg.with_overrides(
        {"MODEL.FUSE.CHUNK_SIZE": 96, "MODEL.SPIKE_TSA.MAX_BATCH_TOKENS": 1024}
    )
    assert accuracy_key(cfg) == accuracy_key(same)
    assert accuracy_key(cfg) != accuracy_key(cfg.with_overrides({"MODEL.WINDOW_SIZE": 7}))
    assert accuracy_key(cfg) != accuracy_key(cfg.with_overrides({"TRAIN.AMP_ENABLED": True}))


def test_references_enqueued_once_with_reasons() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    status = _enqueue_references(study, load_space("conservative"))
    assert status["baseline"] == status["scheme_a"] == "enqueued"
    assert status["scheme_b"].startswith("skipped: MODEL.WINDOW_SIZE = 6 is outside the space")
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["reference"] for t in waiting] == ["baseline", "scheme_a"]
    assert _enqueue_references(study, load_space("conservative")) == status  # not twice
    assert len(study.get_trials()) == 2 and set(status) == set(REFERENCES)


def test_cli_study_resume_reuse_pareto_and_export(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{workdir / 'studies' / 's.db'}"
    common = ("--space", SPACE, "--budget", "smoke", "--storage", url, "--study-name", "t")
    assert _cli(*common, "--trials", "2") == 0
    study = optuna.load_study(study_name="t", storage=url)
    assert len(study.trials) == 2
    # two trials that differ only in fusion chunking: the second must reuse the first's PSNR
    base = {"MODEL.VRT_DEPTHS[7]": 2, "MODEL.WINDOW_SIZE": 4}
    study.enqueue_trial({**base, "MODEL.FUSE.CHUNK_SIZE": 16})
    study.enqueue_trial({**base, "MODEL.FUSE.CHUNK_SIZE": 8})
    assert _cli(*common, "--trials", "4") == 0  # resume to the requested total
    trials = optuna.load_study(study_name="t", storage=url).trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    first, second = trials[2], trials[3]
    if "reused_from" in first.user_attrs:  # the sampler already trained this accuracy config
        first = next(t for t in trials if t.number == first.user_attrs["reused_from"])
    assert second.user_attrs["reused_from"] == first.number
    assert second.values[1] == first.values[1]
    assert (
        "train" in second.user_attrs
        and second.user_attrs["latency"]["median_ms"] == second.values[0]
    )
    assert _cli(*common, "--trials", "4") == 0  # already complete: nothing more runs
    assert len(optuna.load_study(study_name="t", storage=url).trials) == 4

    # every finished trial has its restored-frames strip and its stage profile (chart + table)
    artifacts = workdir / "studies" / "s_artifacts"
    for t in trials:
        metas = optuna.artifacts.get_all_artifact_meta(t, storage=optuna.storages.RDBStorage(url))
        # (a reused strip keeps its source trial's file name)
        kinds = sorted((m.filename.split("_", 1)[1], m.mimetype) for m in metas)
        assert kinds == [
            ("blurry_restored_sharp.png", "image/png"),
            ("stage_profile.csv", "text/csv"),
            ("stage_profile.png", "image/png"),
        ]
        assert all((artifacts / m.artifact_id).stat().st_size > 100 for m in metas)
    # the run published the hypervolume figure and the study note for the dashboard
    study = optuna.load_study(study_name="t", storage=url)
    assert sorted(m.filename for m in optuna.artifacts.get_all_artifact_meta(study)) == [
        "hypervolume_2trials.png",
        "hypervolume_4trials.png",
    ]
    assert "Pareto front" in optuna_dashboard.get_note(study)

    capsys.readouterr()
    assert _cli("pareto", "--study-name", "t", "--storage", url) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "latency ms" in out

    out_yaml = workdir / "best.yaml"
    assert _cli("export", "--study-name", "t", "--storage", url, "--out", str(out_yaml)) == 0
    text = out_yaml.read_text()
    assert "PROVENANCE:" in text and "trial:" in text
    exported = VRTSpikeConfig.from_yaml(out_yaml)
    chosen = trials[yaml.safe_load(text)["PROVENANCE"]["trial"]]
    assert exported == VRTSpikeConfig.from_dict(chosen.user_attrs["config"])
    assert (
        _cli(
            "export", "--study-name", "t", "--storage", url, "--out", str(out_yaml), "--trial", "1"
        )
        == 0
    )
    assert VRTSpikeConfig.from_yaml(out_yaml) == VRTSpikeConfig.from_dict(
        trials[1].user_attrs["config"]
    )

    # a different budget for the same study is refused before anything runs
    assert _cli("--space", SPACE, "--budget", "cpu", "--storage", url, "--study-name", "t") == 2
    assert "was run with budget 'smoke'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--space", "nope", "--trials", "2"), "unknown space 'nope'"),
        (("pareto", "--study-name", "missing"), "no study storage"),
        (("export", "--study-name", "missing", "--out", "x.yaml"), "no study storage"),
        (("--device", "tpu"), "--device tpu"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], words: str
) -> None:
    assert _cli(*args) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert not (workdir / "studies").exists() and not (workdir / "x.yaml").exists()


def test_malformed_space_file_and_missing_study(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text("params: [\n")
    assert _cli("--space", str(bad)) == 2
    assert "malformed YAML" in capsys.readouterr().err
    url = f"sqlite:///{workdir / 'empty.db'}"
    optuna.create_study(study_name="other", storage=url, directions=["minimize", "maximize"])
    assert _cli("pareto", "--study-name", "t", "--storage", url) == 2
    err = capsys.readouterr().err
    assert "no study 't'" in err and "(studies there: other)" in err


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random"])
def test_every_sampler_runs_a_two_objective_study(name: str) -> None:
    from search.study.runner import make_sampler

    sampler = make_sampler(name, seed=0, n_trials=10)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    space = load_space("conservative")

    def objective(trial: optuna.trial.Trial) -> tuple[float, float]:
        cfg = space.sample(trial)
        return float(sum(cfg.model.vrt_depths)), float(cfg.model.window_size)

    study.optimize(objective, n_trials=6)
    assert len(study.best_trials) >= 1
    if name == "nsga2":
        assert sampler._population_size == 4  # sized to the trial count, not the default 50
