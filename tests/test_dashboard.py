"""optuna-dashboard on a study of the service, through its own WSGI app (no socket, no training).

The study is built from ``create_trial`` records shaped like the objective's: values
``(latency_ms, psnr_db)``, ``set_constraint``-style constraints plus the mirrored ``feasible`` /
``constraint:latency_ms`` user attributes, a strip PNG and the stage profile (PNG + CSV) per trial.
Trial 2 is infeasible and dominates every feasible trial: Optuna's front excludes it, the
dashboard 0.21 (which ignores ``set_constraint``) serves it as the only best trial.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from PIL import Image

import run_study
from search.report.charts import stage_profile_csv, stage_profile_png
from search.report.dashboard import dashboard_app, is_loopback, publish_study
from search.report.pareto import hypervolume_2d
from search.report.report import hypervolume_history
from search.study.record import METRIC_NAMES, PROFILE_SUFFIX, STRIP_SUFFIX, hv_figure_name
from search.study.storage import StorageURL

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# number: (latency_ms, psnr_db, latency constraint value (<= 0 feasible), reference)
TRIALS = {
    0: (100.0, 30.0, -10.0, "baseline"),
    1: (50.0, 29.0, -60.0, ""),
    2: (20.0, 31.0, 5.0, ""),  # infeasible, dominates everything
    3: (80.0, 28.0, -30.0, "scheme_a"),  # dominated by trial 1
}
STAGES = {"flow": 3.0, "stage1": 10.0, "stage8": 4.0, "fusion1": 2.0, "other": 1.0}


def make_study(root: Path) -> tuple[str, optuna.Study]:
    """A finished study with per-trial artifacts, hypervolume figure and note (see module doc)."""
    url = f"sqlite:///{root / 'studies' / 'dash.db'}"
    storage = StorageURL.parse(url).open(create=True)
    study = optuna.create_study(
        storage=storage, study_name="dash", directions=["minimize", "maximize"]
    )
    study.set_metric_names(list(METRIC_NAMES))
    study.set_user_attr("space", "tiny")
    study.set_user_attr("budget", "smoke")
    study.set_user_attr("references", {"baseline": "enqueued", "scheme_a": "enqueued"})
    artifacts = StorageURL.parse(url).artifact_dir()
    artifacts.mkdir(parents=True, exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(artifacts))
    dist = {"MODEL.WINDOW_SIZE": optuna.distributions.IntDistribution(3, 8)}
    for number, (lat, psnr, over, ref) in TRIALS.items():
        # ask/tell: artifacts and constraints can only be written while the trial runs
        trial = study.ask(dist)
        attrs: dict[str, Any] = {
            "per_stage_ms": STAGES,
            "constraint:latency_ms": over,
            "feasible": over <= 0,
            "ssim": 0.9,
        }
        if ref:
            attrs["reference"] = ref
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        trial.set_constraint("latency_ms", over)
        strip = root / f"trial{number}{STRIP_SUFFIX}.png"
        Image.new("RGB", (3 * 32 + 4, 32), (40 * number, 120, 200)).save(strip)
        png = root / f"trial{number}{PROFILE_SUFFIX}.png"
        csv = root / f"trial{number}{PROFILE_SUFFIX}.csv"
        stage_profile_png(STAGES, png, title=f"trial {number}")
        stage_profile_csv(STAGES, csv)
        for path, mimetype in ((strip, "image/png"), (png, "image/png"), (csv, "text/csv")):
            optuna.artifacts.upload_artifact(
                artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype=mimetype
            )
        study.tell(trial, [lat, psnr])
    publish_study(study, store)
    return url, study


def get(app: Any, path: str) -> tuple[str, dict[str, str], bytes]:
    """One GET through the WSGI app: (status, headers, body)."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, dict(headers)
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return seen["status"], seen["headers"], body


def get_json(app: Any, path: str) -> Any:
    status, _, body = get(app, path)
    assert status.startswith("200"), (path, status, body[:200])
    return json.loads(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, optuna.Study, dict[str, Any]]:
    url, study = make_study(tmp_path_factory.mktemp("dash"))
    app = dashboard_app(StorageURL.parse(url))
    summaries = get_json(app, "/api/studies")["study_summaries"]
    (summary,) = [s for s in summaries if s["study_name"] == "dash"]
    return app, study, get_json(app, f"/api/studies/{summary['study_id']}")


def test_study_listed_with_objective_names(served: tuple[Any, optuna.Study, Any]) -> None:
    app, study, detail = served
    assert get_json(app, "/api/meta")["artifact_is_available"] is True
    assert detail["name"] == "dash"
    assert detail["objective_names"] == ["latency_ms", "psnr_db"] == study.metric_names
    assert detail["directions"] == ["minimize", "maximize"]


def test_best_trials_and_feasibility(served: tuple[Any, optuna.Study, Any]) -> None:
    _, study, detail = served
    expected = {t.number for t in study.best_trials}
    assert expected == {0, 1}  # Optuna: feasible front only
    served_best = {t["number"] for t in detail["best_trials"]}
    if served_best != expected:
        # optuna-dashboard 0.21 ignores set_constraint: every trial's constraints are served
        # empty and its front is the unconstrained one, here the infeasible trial 2 alone.
        assert served_best == {2}
        assert all(t["constraints"] == [] for t in detail["trials"])
    # the mirrored user attributes make feasibility visible in the dashboard anyway
    for t in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        over = TRIALS[t["number"]][2]
        assert attrs["feasible"] == str(over <= 0)
        assert float(attrs["constraint:latency_ms"]) == over


def test_every_trial_image_served_as_png(served: tuple[Any, optuna.Study, Any]) -> None:
    app, _, detail = served
    assert len(detail["trials"]) == len(TRIALS)
    for t in detail["trials"]:
        by_name = {a["filename"]: a for a in t["artifacts"]}
        names = {f"trial{t['number']}{STRIP_SUFFIX}.png", f"trial{t['number']}{PROFILE_SUFFIX}.png"}
        assert names <= set(by_name)
        for name in names:
            meta = by_name[name]
            status, headers, body = get(
                app, f"/artifacts/{t['study_id']}/{t['trial_id']}/{meta['artifact_id']}"
            )
            assert status.startswith("200") and headers["Content-Type"] == "image/png"
            assert body.startswith(PNG_MAGIC) and Image.open(io.BytesIO(body)).width > 30
        meta = by_name[f"trial{t['number']}{PROFILE_SUFFIX}.csv"]
        status, headers, body = get(
            app, f"/artifacts/{t['study_id']}/{t['trial_id']}/{meta['artifact_id']}"
        )
        assert headers["Content-Type"].startswith("text/csv")
        lines = body.decode().splitlines()
        assert lines[0] == "part,ms,share" and lines[1].startswith("stage1,10.0000,0.5000")
        assert len(lines) == 1 + len(STAGES)


def test_hypervolume_figure_and_note(served: tuple[Any, optuna.Study, Any]) -> None:
    app, study, detail = served
    (figure,) = [a for a in detail["artifacts"] if a["filename"] == hv_figure_name(4)]
    status, headers, body = get(app, f"/artifacts/{study._study_id}/{figure['artifact_id']}")
    assert headers["Content-Type"] == "image/png" and body.startswith(PNG_MAGIC)
    note = detail["note"]["body"]
    assert "Pareto front" in note and "Reference trials" in note and hv_figure_name(4) in note
    front_lines = [line for line in note.splitlines() if line.startswith("| 1 | 50.00")]
    assert front_lines and "| 3 | 80.00 | 28.00 |" in note  # scheme_a listed as reference
    assert "| 2 | 20.00" not in note  # the infeasible trial is not on the service's front


def test_hypervolume_history_values(served: tuple[Any, optuna.Study, Any]) -> None:
    _, study, _ = served
    h = hypervolume_history(study)
    assert h.reference == pytest.approx((110.0, 27.5))
    assert h.numbers == (0, 1, 2, 3)
    # trial 0: (110-100)*(30-27.5) = 25; trial 1: (110-50)*(29-27.5) = 90, overlap 10*1.5 = 15
    assert h.values[0] == pytest.approx(25.0) and h.values[1] == pytest.approx(100.0)
    assert h.values[2] == h.values[1]  # infeasible: adds nothing
    assert h.values[3] == h.values[1]  # dominated: adds nothing
    feasible = [(v[0], v[1]) for v in TRIALS.values() if v[2] <= 0]
    assert h.values[-1] == pytest.approx(hypervolume_2d(feasible, h.reference))
    assert study.user_attrs["hypervolume"]["value"] == pytest.approx(100.0)


def test_publish_is_idempotent(tmp_path: Path) -> None:
    url, study = make_study(tmp_path)
    store = optuna.artifacts.FileSystemArtifactStore(str(StorageURL.parse(url).artifact_dir()))
    publish_study(study, store)  # nothing new: no second figure
    metas = optuna.artifacts.get_all_artifact_meta(study)
    assert [m.filename for m in metas] == ["hypervolume_4trials.png"]


def test_cli_dashboard_errors_and_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    assert run_study.main(["dashboard", "--storage", missing]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no study storage" in err
    assert not (tmp_path / "nope.db").exists()
    assert run_study.main(["dashboard", "--port", "70000"]) == 2
    assert "must be 0-65535" in capsys.readouterr().err

    class _Server:
        server_port = 8123

        def serve_forever(self) -> None:
            raise KeyboardInterrupt

        def server_close(self) -> None:
            pass

    url, _ = make_study(tmp_path)
    monkeypatch.setattr(run_study, "serve", lambda *a, **k: _Server())
    assert run_study.main(["dashboard", "--storage", url, "--host", "0.0.0.0"]) == 0
    out, err = capsys.readouterr()
    assert "http://0.0.0.0:8123/dashboard" in out and "dash" in out
    assert "no authentication" in err
    assert run_study.main(["dashboard", "--storage", url]) == 0
    assert "no authentication" not in capsys.readouterr().err
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
