"""The elastic parent: the space's extremes, sandwich training, the cache, --parent, the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
import torch

import run_study
from model import VRTSpikeConfig
from search.budgets import get_budget
from search.inherit import check_covered
from search.space import load_space
from search.study import parent as parent_module
from search.study.parent import (
    ParentError,
    _Sandwich,
    elastic_bounds,
    ensure_parent,
    load_parent,
    parent_file,
)
from search.study.runner import load_data
from search.train_cli import main as train_main

DATA = Path(__file__).parent / "data"
SPACE = str(DATA / "space_tiny.yaml")
BUDGET = dataclasses.replace(get_budget("smoke"), parent_steps=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    mp = pytest.MonkeyPatch()
    mp.setenv("VRTSPIKE_DATA_CACHE", str(tmp_path_factory.mktemp("data_cache")))
    yield load_data("synthetic", BUDGET, seed=0)
    mp.undo()


def _ensure(folder: Path, data, **kw):  # type: ignore[no-untyped-def]
    args = {"device": "cpu", "seed": 0, "data_name": "synthetic", "folder": folder} | kw
    return ensure_parent(load_space(SPACE), args.pop("budget", BUDGET), data, **args)


def test_the_extremes_of_a_space() -> None:
    largest, smallest = elastic_bounds(load_space("aggressive"))
    assert largest.model.vrt_depths == (8, 8, 8, 8, 4, 4, 4, 8)
    assert smallest.model.vrt_depths == (4, 4, 4, 4, 2, 2, 2, 4)
    assert (largest.model.window_size, smallest.model.window_size) == (8, 6)
    assert largest.model.fuse.stages == smallest.model.fuse.stages == (1, 2, 3, 4)
    assert not largest.train.amp_enabled
    check_covered(largest, smallest)


def test_a_space_searching_widths_has_no_parent(tmp_path: Path) -> None:
    path = tmp_path / "wide.yaml"
    path.write_text("base: tiny\nparams:\n  MODEL.EMBED_DIMS[0]: {choices: [8, 16]}\n")
    with pytest.raises(ParentError, match=r"MODEL.EMBED_DIMS\[0\].*--from-scratch"):
        elastic_bounds(load_space(path))


def test_each_sandwich_step_runs_largest_smallest_and_covered_random_children() -> None:
    space = load_space("aggressive")
    budget = get_budget("cpu")
    largest, _ = elastic_bounds(space)
    from search.measure.budgets import apply_budget

    proxy = apply_budget(largest, budget)
    sandwich = _Sandwich(space, budget, proxy, n=2, seed=0)
    seen = set()
    for step in range(10):
        nets = sandwich(step)
        assert nets[0] is None and nets[1] == sandwich.smallest and len(nets) == 4
        for child in nets[1:]:
            check_covered(proxy, child)  # the parent's own weights compute every child
            seen.add(child.model.vrt_depths)
    assert len(seen) > 5  # random children differ from step to step


def test_the_cache_is_built_once_reused_and_rebuilt_when_its_key_changes(
    tmp_path: Path, data
) -> None:  # type: ignore[no-untyped-def]
    parent, built = _ensure(tmp_path, data)
    assert built and parent.path.exists() and parent.path.parent == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == [parent.path.name]  # no temporary left
    assert parent.result["steps"] == 2 and "smallest_psnr_db" in parent.result
    again, built = _ensure(tmp_path, data)
    assert not built and again.key == parent.key
    assert all(torch.equal(again.state[k], v) for k, v in parent.state.items())
    other, built = _ensure(tmp_path, data, seed=1)
    assert built and other.key != parent.key and len(list(tmp_path.iterdir())) == 2
    longer = dataclasses.replace(BUDGET, parent_steps=3)
    path, digest = parent_file(load_space(SPACE), longer, seed=0, data_name="synthetic",
                               folder=tmp_path)  # fmt: skip
    assert digest != parent.key and not path.exists()


def test_a_failed_write_leaves_no_file(
    tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    def broken(obj, f):  # type: ignore[no-untyped-def]
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(parent_module.torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        _ensure(tmp_path, data)
    assert list(tmp_path.iterdir()) == []


def test_a_user_checkpoint_is_a_parent_and_an_uncovering_one_is_refused(
    tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    cfg = VRTSpikeConfig.from_dict(_ensure(tmp_path / "p", data)[0].cfg.to_dict())
    for name, depth8 in (("ok", 2), ("short", 1)):
        yaml_path = tmp_path / f"{name}.yaml"
        cfg.with_overrides({"MODEL.VRT_DEPTHS[7]": depth8}).to_yaml(yaml_path)
        out = tmp_path / f"{name}.pt"
        assert train_main(["--config", str(yaml_path), "--budget", "smoke", "--out", str(out)]) == 0
    space = load_space(SPACE)
    user = load_parent(tmp_path / "ok.pt")
    assert user.key.startswith("file:")
    user.check_covers(space, BUDGET)
    with pytest.raises(ParentError, match=r"does not cover space space_tiny: MODEL.VRT_DEPTHS"):
        load_parent(tmp_path / "short.pt").check_covers(space, BUDGET)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ParentError, match="cannot read checkpoint"):
        load_parent(tmp_path / "junk.pt")


def _cli(*args: str) -> int:
    return run_study.main(list(args))


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data) -> Path:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_studies_inherit_by_default_and_from_scratch_on_request(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{workdir / 'studies' / 's.db'}"
    common = ("--space", SPACE, "--budget", "smoke", "--storage", url, "--trials", "2")
    assert _cli(*common, "--study-name", "inherit") == 0
    out = capsys.readouterr().out
    assert "weights from the space_tiny parent" in out and "PSNR after inheriting from" in out
    for t in optuna.load_study(study_name="inherit", storage=url).trials:
        inherit = t.user_attrs["inherit"]
        assert inherit["psnr_db"] == t.values[1] and "psnr_db_inherited" in inherit
        trained = t.user_attrs["trained_config"]["MODEL"]["EMBED_DIMS"]
        assert inherit["parent"] in inherit["parent_path"] and trained
    assert _cli(*common, "--study-name", "scratch", "--from-scratch") == 0
    assert "PSNR after 4 training steps from each trial's own" in capsys.readouterr().out
    scratch = optuna.load_study(study_name="scratch", storage=url).trials
    assert all("inherit" not in t.user_attrs for t in scratch)
    # a run that would start the weights elsewhere is refused before anything runs
    assert _cli(*common, "--study-name", "scratch") == 2
    err = capsys.readouterr().err
    assert "was run with parent 'scratch'" in err and err.count("\n") == 1


def test_cli_parent_command_and_a_bad_parent_path(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VRTSPIKE_PARENTS", str(workdir / "parents"))
    assert _cli("parent", "--space", SPACE, "--budget", "smoke") == 0
    out = capsys.readouterr().out
    assert "parent of space_tiny (smoke) [1/4]" in out and "gain of the largest sub-network" in out
    assert _cli("parent", "--space", SPACE, "--budget", "smoke") == 0
    assert capsys.readouterr().out.startswith("cached: ")
    (workdir / "junk.pt").write_bytes(b"junk")
    url = f"sqlite:///{workdir / 'x' / 's.db'}"
    args = ("--space", SPACE, "--budget", "smoke", "--storage", url, "--parent", "junk.pt")
    assert _cli(*args) == 2
    err = capsys.readouterr().err
    assert "junk.pt: cannot read checkpoint" in err and err.count("\n") == 1
    assert not (workdir / "x").exists()
    assert _cli("--space", SPACE, "--parent", "junk.pt", "--from-scratch") == 2
    assert "not allowed with argument" in capsys.readouterr().err
