"""A study written by an earlier version of the service still reports, exports and opens.

``tests/data/legacy_study/`` holds a SQLite study and its artifact folder written by commit
``ccdbcec`` (``run_study.py --space aggressive --budget smoke --trials 4 --max-latency-ms 100000``
then one enqueued chunk-only variant of the baseline, so trial 4 reuses trial 0's PSNR). Its
records carry every user attribute that version wrote; the current reader must understand them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_dashboard import get_json

import run_study
from model import VRTSpikeConfig

LEGACY = Path(__file__).parent / "data" / "legacy_study"


@pytest.fixture()
def legacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A writable copy of the legacy study; returns its storage URL."""
    shutil.copytree(LEGACY, tmp_path / "studies")
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'studies' / 'legacy.db'}"


def test_legacy_study_reports(legacy: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_study.main(["pareto", "--study-name", "legacy", "--storage", legacy]) == 0
    out = capsys.readouterr().out
    assert "space aggressive, budget smoke" in out and "Pareto front" in out
    assert "baseline" in out and "scheme_a" in out and "scheme_b" in out
    assert "PSNR of #0" in out or "dominated" in out
    assert "hypervolume of the feasible front" in out


def test_legacy_study_exports(legacy: str, tmp_path: Path) -> None:
    out = tmp_path / "best.yaml"
    args = ["export", "--study-name", "legacy", "--storage", legacy, "--out", str(out)]
    assert run_study.main([*args, "--trial", "4"]) == 0
    provenance = yaml.safe_load(out.read_text())["PROVENANCE"]
    assert provenance["trial"] == 4 and provenance["reused_psnr_from_trial"] == 0
    assert provenance["budget"] == "smoke" and provenance["measured_on_scaled_proxy"] is True
    cfg = VRTSpikeConfig.from_yaml(out)
    assert cfg.model.fuse.chunk_size == 80 and cfg.model.embed_dims == (96,) * 8
    assert run_study.main(args) == 0  # the knee of the feasible front
    assert VRTSpikeConfig.from_yaml(out).model.embed_dims == (96,) * 8


def test_legacy_study_opens_in_the_dashboard(legacy: str) -> None:
    from search.report.dashboard import dashboard_app, publish_all
    from search.study.storage import StorageURL

    storage = StorageURL.parse(legacy)
    assert publish_all(storage) == ["legacy"]
    app = dashboard_app(storage)
    (summary,) = get_json(app, "/api/studies")["study_summaries"]
    detail: dict[str, Any] = get_json(app, f"/api/studies/{summary['study_id']}")
    assert detail["objective_names"] == ["latency_ms", "psnr_db"]
    assert len(detail["trials"]) == 5
    note = detail["note"]["body"]
    assert "Pareto front" in note and "Reference trials" in note
    for t in detail["trials"]:
        names = {a["filename"] for a in t["artifacts"]}
        assert any(n.endswith("_blurry_restored_sharp.png") for n in names)
