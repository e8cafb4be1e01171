"""optuna-dashboard on the study storage, plus what the service publishes into it per study.

Per study the service adds a hypervolume-over-trials figure (a study artifact, ``image/png``) and
a study note (Markdown) with the Pareto table and the reference trials' results. Per trial the
objective uploads the restored-frames strip and the stage profile (see ``search.objective``).

Hypervolume reference point: ``(1.1 * max latency, min PSNR - 0.5 dB)`` over the study's
completed trials (feasible or not), so every completed feasible trial adds area; it is stored in
the study user attribute ``hypervolume`` and printed on the figure. Infeasible trials add nothing.

optuna-dashboard 0.21 ignores ``Trial.set_constraint`` (its JSON lists every trial's
``constraints`` as empty and its ``best_trials`` include infeasible trials); the objective mirrors
the values into the user attributes ``constraint:<name>`` and ``feasible``, which the dashboard
shows in the trial table. The front the service computes (``study.best_trials``) is feasible only.
"""

from __future__ import annotations

import ipaddress
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import optuna_dashboard
from optuna.trial import FrozenTrial, TrialState

from search.charts import line_chart_png
from search.export import FrontRow, front_rows, reference_rows
from search.pareto import hypervolume_2d
from search.storage import artifact_dir, open_storage
from search.study import METRIC_NAMES

__all__ = [
    "HypervolumeHistory",
    "hv_figure_name",
    "is_feasible",
    "hypervolume_history",
    "study_note",
    "publish_study",
    "publish_all",
    "dashboard_app",
    "serve",
    "is_loopback",
]

logger = logging.getLogger(__name__)

LATENCY_MARGIN = 1.1
PSNR_MARGIN_DB = 0.5


@dataclass(frozen=True)
class HypervolumeHistory:
    """Hypervolume of the feasible front after each completed trial.

    Attributes:
        reference: ``(latency_ms, psnr_db)`` worst corner of the measured area.
        numbers: Trial numbers of the completed trials, ascending.
        values: Hypervolume (ms x dB) of the feasible trials up to and including each number.
    """

    reference: tuple[float, float]
    numbers: tuple[int, ...]
    values: tuple[float, ...]


def hv_figure_name(completed: int) -> str:
    """File name of the hypervolume figure covering ``completed`` completed trials."""
    return f"hypervolume_{completed}trials.png"


def is_feasible(trial: FrozenTrial) -> bool:
    """Feasible by Optuna's constraints and by the mirrored ``feasible`` user attribute."""
    ok = all(v <= 0 for v in trial.constraints.values())
    return ok and bool(trial.user_attrs.get("feasible", True))


def hypervolume_history(study: optuna.Study) -> HypervolumeHistory:
    """Hypervolume over trials for a (latency_ms down, psnr_db up) study (see module doc)."""
    done = sorted(
        (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values),
        key=lambda t: t.number,
    )
    if not done:
        return HypervolumeHistory(reference=(0.0, 0.0), numbers=(), values=())
    reference = (
        max(t.values[0] for t in done) * LATENCY_MARGIN,
        min(t.values[1] for t in done) - PSNR_MARGIN_DB,
    )
    points: list[tuple[float, float]] = []
    values: list[float] = []
    for t in done:
        if is_feasible(t):
            points.append((t.values[0], t.values[1]))
        values.append(hypervolume_2d(points, reference))
    return HypervolumeHistory(
        reference=reference, numbers=tuple(t.number for t in done), values=tuple(values)
    )


def _md_table(rows: list[FrontRow]) -> list[str]:
    lines = [
        "| trial | latency_ms | psnr_db | SSIM | speed-up | dPSNR dB | feasible | reference |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | :---: | --- |",
    ]
    for r in rows:

        def f(v: float | None, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        lines.append(
            f"| {r.number} | {r.latency_ms:.2f} | {r.psnr_db:.2f} | {f(r.ssim, '.4f')} | "
            f"{f(r.speedup, '.2f')} | {f(r.delta_psnr_db, '+.2f')} | "
            f"{'yes' if r.feasible else 'NO'} | {r.reference} |"
        )
    return lines


def study_note(study: optuna.Study, history: HypervolumeHistory) -> str:
    """Markdown note: the feasible Pareto front and the reference trials, with the HV reference."""
    a = study.user_attrs
    lines = [
        f"## {study.study_name}: measured front",
        "",
        f"Space `{a.get('space')}`, budget `{a.get('budget')}`. Written by `run_study.py`; it is "
        "rewritten after each run, so edits made here are replaced.",
        "",
        "### Pareto front (feasible, `study.best_trials`)",
        "",
        *_md_table(front_rows(study)),
        "",
    ]
    refs = reference_rows(study)
    if refs:
        lines += ["### Reference trials", "", *_md_table(refs), ""]
    for name, status in (a.get("references") or {}).items():
        if status != "enqueued":
            lines.append(f"- {name}: {status}")
    if history.values:
        lat, psnr = history.reference
        figure = hv_figure_name(len(history.numbers))
        lines += [
            "",
            f"Hypervolume {history.values[-1]:.4g} ms x dB after {len(history.values)} completed "
            f"trials (reference point {lat:.2f} ms, {psnr:.2f} dB; figure `{figure}`).",
            "",
            "The dashboard's own Pareto plot and best trials ignore `set_constraint`: check the "
            "`feasible` and `constraint:*` user attributes of each trial.",
        ]
    return "\n".join(lines)


def publish_study(
    study: optuna.Study, artifact_store: optuna.artifacts.FileSystemArtifactStore
) -> HypervolumeHistory:
    """Upload the hypervolume figure and save the study note (skipped when nothing changed).

    The study user attribute ``hypervolume`` records the reference point, the final value and
    the number of completed trials it covers; a new figure is uploaded only when that number
    changed (earlier figures stay, their file names carry the count).
    """
    history = hypervolume_history(study)
    previous = study.user_attrs.get("hypervolume") or {}
    if previous.get("trials") == len(history.numbers) and len(history.numbers) > 0:
        return history
    if history.numbers:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / hv_figure_name(len(history.numbers))
            lat, psnr = history.reference
            line_chart_png(
                history.numbers,
                history.values,
                path,
                title=f"hypervolume of the feasible front (ref {lat:.2f} ms, {psnr:.2f} dB)",
                x_label="trial number",
                y_label="ms x dB",
            )
            optuna.artifacts.upload_artifact(
                artifact_store=artifact_store,
                file_path=str(path),
                study_or_trial=study,
                mimetype="image/png",
            )
    optuna_dashboard.save_note(study, study_note(study, history))
    study.set_user_attr(
        "hypervolume",
        {
            "reference": list(history.reference),
            "value": history.values[-1] if history.values else 0.0,
            "trials": len(history.numbers),
        },
    )
    return history


def _artifact_store(url: str) -> optuna.artifacts.FileSystemArtifactStore:
    path = artifact_dir(url)
    path.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(path))


def publish_all(url: str) -> list[str]:
    """Publish figure and note for every two-objective study named like ours; returns names."""
    storage = open_storage(url, create=False)
    store = _artifact_store(url)
    done: list[str] = []
    for summary in optuna.get_all_study_summaries(storage=storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        if study.metric_names != list(METRIC_NAMES):
            continue
        publish_study(study, store)
        done.append(summary.study_name)
    return done


def dashboard_app(url: str) -> Any:
    """optuna-dashboard's WSGI app on the storage at ``url`` with the study's artifact store.

    Raises:
        StudyError: no storage there (nothing is created) or it cannot be opened.
    """
    storage = open_storage(url, create=False)
    return optuna_dashboard.wsgi(storage, artifact_store=_artifact_store(url))


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def serve(url: str, *, host: str = "127.0.0.1", port: int = 8080) -> WSGIServer:
    """A bound (not yet serving) threaded server; call ``serve_forever()`` / ``shutdown()``.

    ``port=0`` picks a free port (read it back from ``server.server_port``).
    """
    app = dashboard_app(url)
    return make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
