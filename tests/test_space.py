from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from model import load_preset
from search.space import SpaceError, available_spaces, load_space


def test_shipped_spaces_load() -> None:
    assert {"conservative", "aggressive", "full"} <= set(available_spaces())
    for name in available_spaces():
        space = load_space(name)
        assert space.params and space.description


@pytest.mark.parametrize(
    ("space", "expressible"),
    [
        ("conservative", {"baseline", "scheme_a"}),
        ("aggressive", {"baseline", "scheme_a", "scheme_b"}),
        ("full", {"baseline", "scheme_a", "scheme_b"}),
    ],
)
def test_reference_configs_round_trip_through_fixed_trials(
    space: str, expressible: set[str]
) -> None:
    s = load_space(space)
    for ref in ("baseline", "scheme_a", "scheme_b"):
        want = load_preset(ref)
        params, why = s.params_for(want)
        if ref not in expressible:
            assert params is None and "outside the space" in why
            continue
        got = s.sample(optuna.trial.FixedTrial(params))
        assert got.model == want.model
        assert got.train.amp_enabled == want.train.amp_enabled


def test_sampling_with_a_real_study_stays_in_range() -> None:
    s = load_space("aggressive")
    study = optuna.create_study(
        directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=1)
    )
    for _ in range(20):
        trial = study.ask()
        cfg = s.sample(trial)
        assert all(4 <= d <= 8 for d in cfg.model.vrt_depths[:4])
        assert set(cfg.model.fuse.stages) <= {1, 2, 3, 4}
        assert ("TRAIN.AMP_DTYPE" in trial.params) == cfg.train.amp_enabled
        study.tell(trial, [1.0, 1.0])


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("params:\n  MODEL.NOPE: {int: [1, 2]}\n", "parameter MODEL.NOPE: unknown config path"),
        (
            "params:\n  MODEL.WINDOW_SIZE: {int: [8, 6]}\n",
            "parameter MODEL.WINDOW_SIZE: empty range",
        ),
        ("params:\n  MODEL.WINDOW_SIZE: {int: [6, 9]}\n", "value 9 is impossible"),
        ("params:\n  MODEL.FUSE.STAGES: {choices: [[1, 8]]}\n", "outside 1-7"),
        ("params:\n  MODEL.WINDOW_SIZE: {choices: []}\n", "non-empty list"),
        ("params:\n  MODEL.WINDOW_SIZE: {int: [6, 8], choices: [6]}\n", "exactly one of"),
        ("params:\n  MODEL.WINDOW_SIZE: {uniform: [6, 8]}\n", "exactly one of"),
        ("params:\n  MODEL.VRT_DEPTHS[9]: {int: [1, 2]}\n", "index out of range"),
        ("params: {}\n", "non-empty mapping"),
        ("base: nonsense\nparams:\n  MODEL.WINDOW_SIZE: {int: [6, 8]}\n", "unknown preset"),
        (
            "params:\n  MODEL.WINDOW_SIZE: {int: [6, 8], when: {MODEL.X: 1}}\n",
            "'when' names an unknown",
        ),
        ("params: [\n", "malformed YAML"),
        ("sampler: tpe\nparams:\n  MODEL.WINDOW_SIZE: {int: [6, 8]}\n", "unknown top-level key"),
    ],
)
def test_bad_space_files_name_file_and_parameter(tmp_path: Path, text: str, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert str(path) in str(info.value)
    assert words in str(info.value)


def test_unknown_space_name_lists_the_shipped_ones() -> None:
    with pytest.raises(SpaceError, match="unknown space 'nope'.*conservative"):
        load_space("nope")
