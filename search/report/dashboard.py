"""optuna-dashboard on the study storage, plus what the service publishes into it per study.

Per study the service adds a hypervolume-over-trials figure (a study artifact, ``image/png``) and
a study note (Markdown): the front report (:mod:`search.report.report`). Per trial the objective
uploads the restored-frames strip and the stage profile (:mod:`search.study.artifacts`).

optuna-dashboard 0.21 ignores ``Trial.set_constraint`` (its JSON lists every trial's
``constraints`` as empty and its ``best_trials`` include infeasible trials); the objective mirrors
the values into the trial record's ``constraint:<name>`` and ``feasible``, which the dashboard
shows in the trial table. The front the service computes (``study.best_trials``) is feasible only.
"""

from __future__ import annotations

import ipaddress
import logging
import tempfile
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import optuna_dashboard

from model.errors import VRTSpikeError
from search.report.charts import line_chart_png
from search.report.report import HypervolumeHistory, front_report, render_markdown
from search.study import record
from search.study.artifacts import upload_file
from search.study.record import METRIC_NAMES, StudyRecord, hv_figure_name
from search.study.storage import StorageURL

__all__ = [
    "DashboardError",
    "dashboard_app",
    "exposure_warning",
    "is_loopback",
    "publish_all",
    "publish_study",
    "serve",
]

logger = logging.getLogger(__name__)


def publish_study(
    study: optuna.Study, artifact_store: optuna.artifacts.FileSystemArtifactStore
) -> HypervolumeHistory:
    """Save the study note, and upload the hypervolume figure when it changed.

    The study record's ``hypervolume`` keeps the reference point, the final value and the number
    of completed trials it covers; a new figure is uploaded only when that number changed
    (earlier figures stay, their file names carry the count). A rung study also records its
    rank agreement with the rung below (``agreement``).
    """
    report = front_report(study)
    history = report.hypervolume
    done = len(history.numbers)
    optuna_dashboard.save_note(study, render_markdown(report))
    if report.agreement is not None:
        record.set_agreement(study, report.agreement)
    if StudyRecord.of(study).hypervolume.get("trials") == done and done > 0:
        return history
    if done:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / hv_figure_name(done)
            lat, psnr = history.reference
            line_chart_png(
                history.numbers,
                history.values,
                path,
                title=f"hypervolume of the feasible front (ref {lat:.2f} ms, {psnr:.2f} dB)",
                x_label="trial number",
                y_label="ms x dB",
            )
            upload_file(artifact_store, path, study, "image/png")
    value = history.values[-1] if history.values else 0.0
    record.set_hypervolume(study, reference=history.reference, value=value, trials=done)
    return history


def publish_all(storage: StorageURL) -> list[str]:
    """Publish figure and note for every two-objective study named like ours; returns names."""
    opened = storage.open(create=False)
    store = storage.artifact_store()
    done: list[str] = []
    for summary in optuna.get_all_study_summaries(storage=opened):
        study = optuna.load_study(study_name=summary.study_name, storage=opened)
        if study.metric_names != list(METRIC_NAMES):
            continue
        publish_study(study, store)
        done.append(summary.study_name)
    return done


def dashboard_app(storage: StorageURL) -> Any:
    """optuna-dashboard's WSGI app on the storage with the study's artifact store.

    Raises:
        StorageError: no storage there (nothing is created) or it cannot be opened.
    """
    opened = storage.open(create=False)  # first: a missing storage creates no artifact folder
    return optuna_dashboard.wsgi(opened, artifact_store=storage.artifact_store())


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


class DashboardError(VRTSpikeError):
    """The dashboard cannot be served as asked."""


def serve(storage: StorageURL, *, host: str = "127.0.0.1", port: int = 8080) -> WSGIServer:
    """A bound (not yet serving) threaded server; call ``serve_forever()`` / ``shutdown()``.

    ``port=0`` picks a free port (read it back from ``server.server_port``).
    """
    app = dashboard_app(storage)
    try:
        return make_server(
            host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler
        )
    except OSError as e:
        raise DashboardError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def exposure_warning(host: str) -> str:
    """What to tell a user who binds the dashboard beyond loopback ("" on loopback)."""
    if is_loopback(host):
        return ""
    return (
        f"binding to {host}: optuna-dashboard has write endpoints (delete studies, edit notes, "
        "upload artifacts) and no authentication; anyone who can reach this port can change the "
        "studies"
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
