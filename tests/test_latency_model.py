"""The latency target and the parts table: predicted = sum of parts, cached, shared, atomic."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import optuna
import pytest
import torch

import run_study
from model import load_preset
from model.errors import ConfigError
from search.measure.budgets import get_budget
from search.measure.latency_model import (
    LatencyTable,
    Probe,
    TableKey,
    canary_ms,
    predict_latency,
    probes_of,
    table_for,
    terms_of,
)
from search.measure.target import LatencyTarget, parse_shape
from search.report.ranks import jackknife_se, kendall_tau, spearman_rho, top_overlap
from search.study.objective import Objective
from search.study.runner import load_data
from search.study.space import load_space

DATA = Path(__file__).parent / "data"
SPACE = str(DATA / "space_tiny.yaml")
SHAPE = (2, 24, 24)


@pytest.fixture()
def tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tables"
    monkeypatch.setenv("VRTSPIKE_LATENCY_TABLES", str(folder))
    return folder


def test_shapes_parse_and_bad_ones_are_refused() -> None:
    assert parse_shape("5x256x256") == (5, 256, 256) and parse_shape(" 3X64x32 ") == (3, 64, 32)
    for bad in ("5x256", "0x8x8", "axbxc", "5x256x256x1"):
        with pytest.raises(ConfigError, match="TxHxW"):
            parse_shape(bad)
    with pytest.raises(ConfigError, match="latency source"):
        LatencyTarget((1, 8, 8), "guessed")


def test_auto_source_measures_on_cuda_and_small_cpu_shapes_and_predicts_large_ones(
    native_cpu_bf16: None,
) -> None:
    assert LatencyTarget((3, 32, 32)).source_on("cpu") == "measured"
    assert LatencyTarget((5, 256, 256)).source_on("cpu") == "predicted"
    assert LatencyTarget((5, 256, 256)).source_on("cuda") == "measured"
    assert LatencyTarget((5, 256, 256), "measured").source_on("cpu") == "measured"
    assert LatencyTarget((3, 32, 32), "predicted").source_on("cuda") == "predicted"
    record = LatencyTarget((5, 256, 256)).record(load_preset("scheme_a"), "cpu")
    assert record == {"shape": [5, 256, 256], "device": "cpu", "embed_dims": [96] * 8,
                      "amp": "bfloat16", "source": "predicted"}  # fmt: skip


def test_a_cpu_without_native_bf16_targets_scheme_a_in_full_precision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import search.measure.device as device_rules

    monkeypatch.setattr(device_rules, "cpu_bf16_native", lambda: False)
    record = LatencyTarget((5, 256, 256)).record(load_preset("scheme_a"), "cpu")
    assert record["amp"] is None and load_preset("scheme_a").train.amp_enabled


def test_a_stage_is_linear_in_its_depth_pairs_and_single_blocks() -> None:
    cfg = load_preset("tiny").with_overrides({"MODEL.VRT_DEPTHS": [5, 2, 2, 2, 1, 1, 1, 3, 1]})
    stage1 = [(t.key.split(":")[-2:], t.count) for t in terms_of(cfg, SHAPE)
              if t.label == "stage1" and t.key.startswith("tmsa")]  # fmt: skip
    # depth 5, mutual ratio 0.75: 3 mutual blocks (a pair + one) and 2 self blocks (a pair)
    assert stage1 == [(["mutual", "n2"], 1), (["mutual", "n1"], 1), (["self", "n2"], 1)]
    stage8 = [t for t in terms_of(cfg, SHAPE) if t.label == "stage8" and t.key.startswith("tmsa")]
    # group 7 (depth 3, temporal window 2): a pair + one; group 8 (per frame): one block
    got = [(t.key.split(":")[-3], t.key.split(":")[-1], t.count) for t in stage8]
    assert got == [("w2x4x4", "n2", 1), ("w2x4x4", "n1", 1), ("w1x4x4", "n1", 1)]
    # stages at one resolution and width share their block entries (stage 1 and stage 7)
    terms = terms_of(cfg.with_overrides({"MODEL.VRT_DEPTHS[6]": 5}), SHAPE)
    keys7 = {t.key for t in terms if t.label == "stage7" and "tmsa" in t.key}
    assert keys7 == {t.key for t in terms if t.label == "stage1" and "tmsa" in t.key}


def test_prediction_is_the_sum_of_the_table_and_the_table_is_reused(tables: Path) -> None:
    cfg = load_preset("tiny")
    first = predict_latency(cfg, SHAPE, "cpu")
    assert first.measured_parts == len(probes_of(cfg, SHAPE, "cpu")) > 10
    stored = json.loads(Path(first.table).read_text())
    entries = stored["entries"]
    assert stored["key"]["shape"] == list(SHAPE) and stored["key"]["dtype"] == "float32"
    terms = terms_of(cfg, SHAPE)
    assert first.median_ms == pytest.approx(sum(t.count * entries[t.key] for t in terms))
    assert sum(first.per_stage_ms.values()) == pytest.approx(first.median_ms)
    assert set(first.per_stage_ms) >= {"flow", "stage1", "fusion1", "spike_tsa", "stage8", "head"}
    mtime = Path(first.table).stat().st_mtime_ns
    again = predict_latency(cfg.with_overrides({"MODEL.VRT_DEPTHS[0]": 1}), SHAPE, "cpu")
    assert again.measured_parts == 0 and Path(first.table).stat().st_mtime_ns == mtime
    assert again.median_ms < first.median_ms  # one block fewer in stage 1
    # another window needs its own block entries, in the same table
    wider = predict_latency(cfg.with_overrides({"MODEL.WINDOW_SIZE": 3}), SHAPE, "cpu")
    assert 0 < wider.measured_parts < first.measured_parts and wider.table == first.table


def test_a_changed_key_is_another_table_and_a_foreign_file_is_rebuilt(
    tables: Path, native_cpu_bf16: None
) -> None:
    cfg = load_preset("tiny")
    table = table_for(cfg, SHAPE, "cpu")
    assert table_for(cfg, (3, 24, 24), "cpu").path != table.path
    assert table_for(cfg.with_overrides({"TRAIN.AMP_ENABLED": True}), SHAPE, "cpu").path != (
        table.path
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert table_for(cfg, SHAPE, "cpu").path != table.path
    finally:
        torch.set_num_threads(threads)
    table.folder.mkdir(parents=True)
    other = {"format": 2, "key": {"device_name": "elsewhere"}, "entries": {"flow": 1.0}}
    table.path.write_text(json.dumps(other))
    assert table.load() == {}
    assert predict_latency(cfg, SHAPE, "cpu").measured_parts > 0
    assert json.loads(table.path.read_text())["key"]["device_name"] != "elsewhere"


def test_a_failed_build_leaves_a_whole_table_with_what_it_finished(tables: Path) -> None:
    table = LatencyTable(TableKey.here("cpu", SHAPE, None), canary=lambda _: 100.0)

    def broken() -> dict[str, float]:
        raise RuntimeError("killed")

    probes = [Probe(("a",), "a", lambda: {"a": 1.5}), Probe(("b",), "b", broken)]
    with pytest.raises(RuntimeError, match="killed"):
        table.ensure(probes)
    assert table.load() == {"a": 1.5}
    assert [p.name for p in table.folder.iterdir() if ".tmp-" in p.name] == []
    entries, measured = table.ensure([probes[0], Probe(("b",), "b", lambda: {"b": 2.0})])
    assert entries == {"a": 1.5, "b": 2.0} and measured == 1


def test_entries_are_scaled_to_the_speed_the_host_had_when_the_table_was_created(
    tables: Path,
) -> None:
    """The canary reads 100 ms at creation and 300 ms after part a (the host slowed down): a's
    raw 10 ms were timed at a mean speed of 200, so the table holds 5; a later fill at 50 ms
    scales b's 4 ms up to 8. Raw times and readings are kept beside the entries."""
    readings = iter([100.0, 300.0, 50.0, 50.0])
    table = LatencyTable(TableKey.here("cpu", SHAPE, None), canary=lambda _: next(readings))
    entries, _ = table.ensure([Probe(("a",), "a", lambda: {"a": 10.0})])
    assert entries == {"a": pytest.approx(5.0)} and table.canary_reference() == 100.0
    entries, _ = table.ensure([Probe(("b",), "b", lambda: {"b": 4.0})])
    assert entries == {"a": pytest.approx(5.0), "b": pytest.approx(8.0)}
    stored = json.loads(table.path.read_text())
    assert stored["raw"] == {"a": 10.0, "b": 4.0} and stored["canary_at"] == {"a": 200.0, "b": 50.0}
    assert stored["canary_ms"] == 100.0 and stored["format"] == 2
    # another dtype's table of this host is scaled to the same reference, not to its own reading
    readings = iter([120.0, 120.0])
    bf16 = LatencyTable(
        TableKey.here("cpu", SHAPE, torch.bfloat16), canary=lambda _: next(readings)
    )
    entries, _ = bf16.ensure([Probe(("c",), "c", lambda: {"c": 6.0})])
    assert bf16.path != table.path and bf16.canary_reference() == 100.0
    assert entries == {"c": pytest.approx(5.0)}
    assert canary_ms("cpu") > 0  # the real yardstick runs
    pred = predict_latency(load_preset("tiny"), SHAPE, "cpu")
    assert pred.to_dict()["canary_ms"] == pred.canary_ms > 0


def _predict_in_process(folder: str) -> int:
    torch.set_num_threads(1)
    return predict_latency(load_preset("tiny"), SHAPE, "cpu", folder=Path(folder)).measured_parts


def test_workers_of_a_host_share_one_table_and_measure_each_part_once(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        counts = pool.map(_predict_in_process, [str(tmp_path)] * 2)
    torch.set_num_threads(2)
    assert sorted(counts)[0] == 0 and sum(counts) == len(probes_of(load_preset("tiny"), SHAPE,
                                                                   "cpu"))  # fmt: skip


@pytest.mark.parametrize("source", ["measured", "predicted"])
def test_a_trial_times_the_full_width_deployment_config_at_the_target(
    source: str,
    tables: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scheme A in fp32: bf16 on a CPU without native support takes reference kernels (minutes
    here); that a target records the trial's AMP is tested above."""
    monkeypatch.setenv("VRTSPIKE_DATA_CACHE", str(tmp_path / "data"))
    budget = get_budget("smoke")
    objective = Objective(
        space=load_space("conservative"),
        budget=budget,
        data=load_data("synthetic", budget, seed=0),
        device="cpu",
        seed=0,
        target=LatencyTarget((2, 16, 16), source),
    )
    scheme_a = load_preset("scheme_a").with_overrides({"TRAIN.AMP_ENABLED": False})
    params, _ = objective.space.params_for(scheme_a)
    trial = optuna.trial.FixedTrial(params)
    latency_ms, _ = objective(trial)  # (smoke trains a 1/8-width proxy of the config)
    attrs = trial.user_attrs
    assert attrs["latency_target"] == {
        "shape": [2, 16, 16],
        "device": "cpu",
        "embed_dims": [96] * 8,
        "amp": None,
        "source": source,
    }
    assert attrs["latency"]["source"] == source and attrs["latency"]["median_ms"] == latency_ms
    assert attrs["latency"]["rgb_shape"] == [1, 2, 3, 16, 16]
    assert attrs["trained_config"]["MODEL"]["EMBED_DIMS"] != [96] * 8  # the proxy is narrower
    assert set(attrs["per_stage_ms"]) >= {"flow", "stage1", "fusion1", "stage8"}
    if source == "predicted":  # scheme A: window 7, full widths, at the target's 16x16
        keys = [t[1] for t in attrs["latency"]["terms"]]
        assert "tmsa:16x16:c96:h6:m2:w2x7x7:mutual:n2" in keys


def test_cli_latency_options_are_recorded_and_a_study_refuses_another_target(
    tables: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VRTSPIKE_DATA_CACHE", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 's.db'}"
    common = ("--space", SPACE, "--budget", "smoke", "--storage", url, "--study-name", "t")
    assert run_study.main([*common, "--trials", "1", "--latency-shape", "2x24x24",
                           "--latency-source", "predicted"]) == 0  # fmt: skip
    study = optuna.load_study(study_name="t", storage=url)
    assert study.user_attrs["latency_target"] == {"shape": [2, 24, 24], "source": "predicted"}
    trial = study.trials[0]
    assert trial.user_attrs["latency_target"]["source"] == "predicted"
    assert list(tables.glob("*-2x24x24-float32-*.json"))
    capsys.readouterr()
    assert run_study.main(["pareto", "--study-name", "t", "--storage", url]) == 0
    assert "latency of the deployment model at 1x2x3x24x24, predicted from a parts table" in (
        capsys.readouterr().out
    )
    assert run_study.main([*common, "--trials", "2", "--latency-shape", "2x32x32"]) == 2
    err = capsys.readouterr().err
    assert "latency_target" in err and "[2, 32, 32]" in err and len(err.strip().splitlines()) == 1
    assert len(optuna.load_study(study_name="t", storage=url).trials) == 1
    assert run_study.main([*common, "--latency-shape", "2x32"]) == 2
    assert "TxHxW" in capsys.readouterr().err


def test_cli_builds_the_tables_of_a_space_with_progress(
    tables: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["latency-table", "--space", SPACE, "--latency-shape", "2x16x16", "--samples", "8"]
    assert run_study.main(args) == 0
    out = capsys.readouterr().out
    assert "[1/" in out and "skeleton" in out and "parts measured now" in out
    assert run_study.main(args) == 0
    assert ": 0 parts measured now" in capsys.readouterr().out


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="constant"):
        kendall_tau([1, 1, 1], [1, 2, 3])


def test_spearman_rho_and_top_overlap() -> None:
    assert spearman_rho([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert spearman_rho([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman_rho([1, 1, 2], [1, 2, 3]) == pytest.approx(3**0.5 / 2)  # tied ranks averaged
    with pytest.raises(ValueError, match="constant"):
        spearman_rho([1, 1], [1, 2])
    assert top_overlap([1, 2, 3, 4], [1, 2, 4, 3], 2) == 2
    assert top_overlap([1, 2, 3, 4], [4, 3, 2, 1], 2) == 0


def test_jackknife_se_of_a_tau() -> None:
    assert jackknife_se(kendall_tau, [1, 2, 3, 4], [5, 6, 7, 8]) == 0.0  # no pair moves it
    # left out in turn: [2,3]v[3,2] -1, [1,3]v[1,2] +1, [1,2]v[1,3] +1; mean 1/3
    # sqrt(2/3 * ((4/3)^2 + 2 * (2/3)^2)) = 4/3
    assert jackknife_se(kendall_tau, [1, 2, 3], [1, 3, 2]) == pytest.approx(4 / 3)
    with pytest.raises(ValueError, match="three or more"):
        jackknife_se(kendall_tau, [1, 2], [1, 2])
