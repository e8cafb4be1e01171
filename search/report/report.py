"""The front report: one value built from a study, rendered as text (CLI) or Markdown (dashboard).

A :class:`FrontReport` holds the feasible Pareto front, the reference trials (the guide's
hand-made configurations) with whether the front dominates them, the references the space could
not express, the hypervolume history, and what the figures were measured on (budget, latency
input, device). :func:`render_text` and :func:`render_markdown` are its only two renderings.

A rung study (:mod:`search.study.promote`) also shows its promoted trials at both rungs, their
front level among the promoted set at each, and the rank agreement (Kendall tau per objective);
a study with rungs lists them.

Hypervolume reference point: ``(1.1 * max latency, min PSNR - 0.5 dB)`` over the study's
completed trials (feasible or not), so every completed feasible trial adds area; infeasible
trials add nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from search.report.pareto import dominates, hypervolume_2d, nondominated_fronts
from search.report.ranks import kendall_tau
from search.study.record import StudyRecord, TrialRecord, hv_figure_name, study_tally
from search.study.storage import StorageURL

__all__ = [
    "FrontReport",
    "HypervolumeHistory",
    "Promoted",
    "Row",
    "agreement",
    "front_report",
    "hypervolume_history",
    "render_markdown",
    "render_text",
    "summary_text",
]

logger = logging.getLogger(__name__)

LATENCY_MARGIN = 1.1
PSNR_MARGIN_DB = 0.5


@dataclass(frozen=True)
class Row:
    """One trial as the report shows it (speed-up and PSNR change vs the baseline reference).

    Attributes:
        on_front: On the feasible Pareto front; ``dominated``: some front trial dominates it.
        repeats: Later front trials of the same deployment config (a sampler may propose a
            configuration again; its PSNR is then reused and its latency the same), shown in
            this row instead of rows of their own.
    """

    number: int
    latency_ms: float
    latency_cv: float | None
    psnr_db: float
    ssim: float | None
    input_psnr_db: float | None
    reference: str
    reused_from: int | None
    speedup: float | None
    delta_psnr_db: float | None
    feasible: bool
    params: int | None
    on_front: bool
    dominated: bool
    repeats: tuple[int, ...] = ()


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


@dataclass(frozen=True)
class Promoted:
    """A trial of a rung study beside the trial of the rung below it re-measures.

    Attributes:
        below: ``(latency_ms, psnr_db)`` at the rung below; ``here``: at this rung.
        level_below, level_here: Its non-dominated front (1 = first) among the promoted trials
            complete at both rungs, at each rung.
    """

    number: int
    from_trial: int
    reference: str
    below: tuple[float, float]
    here: tuple[float, float]
    level_below: int
    level_here: int


@dataclass(frozen=True)
class FrontReport:
    """Everything a user reads about a study's front (see the module docstring)."""

    study: str
    space: str | None
    budget: str | None
    latency_of: str
    psnr_of: str
    devices: tuple[str, ...]
    front: tuple[Row, ...]
    references: tuple[Row, ...]
    skipped_references: dict[str, str]
    hypervolume: HypervolumeHistory
    rung: int = 0
    below: str | None = None
    promoted: tuple[Promoted, ...] = ()
    agreement: dict[str, Any] | None = None
    rungs: dict[int, tuple[str, int | None]] | None = None

    @property
    def measured_on(self) -> str:
        """``budget B; latency of <what> on DEVICE; PSNR after <what>``: what every figure is
        of."""
        device = ", ".join(self.devices) or "unknown device"
        return (
            f"budget {self.budget}; latency of {self.latency_of} on {device}; "
            f"PSNR after {self.psnr_of}"
        )


def _complete(study: optuna.Study) -> list[TrialRecord]:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [TrialRecord.of(t) for t in sorted(trials, key=lambda t: t.number) if t.values]


def hypervolume_history(study: optuna.Study) -> HypervolumeHistory:
    """Hypervolume over trials for a (latency_ms down, psnr_db up) study (see module doc)."""
    return _history(_complete(study))


def _history(done: Sequence[TrialRecord]) -> HypervolumeHistory:
    if not done:
        return HypervolumeHistory(reference=(0.0, 0.0), numbers=(), values=())
    reference = (
        max(t.latency_ms for t in done) * LATENCY_MARGIN,
        min(t.psnr_db for t in done) - PSNR_MARGIN_DB,
    )
    points: list[tuple[float, float]] = []
    values: list[float] = []
    for t in done:
        if t.feasible:
            points.append((t.latency_ms, t.psnr_db))
        values.append(hypervolume_2d(points, reference))
    return HypervolumeHistory(
        reference=reference, numbers=tuple(t.number for t in done), values=tuple(values)
    )


def front_report(study: optuna.Study) -> FrontReport:
    """Build the report of a study (any version of the record)."""
    done = _complete(study)
    front_numbers = {t.number for t in study.best_trials}
    front, repeats = _distinct_configs([t for t in done if t.number in front_numbers])
    base = next((t for t in done if t.reference == "baseline"), None)

    def row(t: TrialRecord) -> Row:
        point = (t.latency_ms, t.psnr_db)
        return Row(
            number=t.number,
            latency_ms=t.latency_ms,
            latency_cv=t.latency_cv,
            psnr_db=t.psnr_db,
            ssim=t.ssim,
            input_psnr_db=t.input_psnr_db,
            reference=t.reference,
            reused_from=t.reused_from,
            speedup=base.latency_ms / t.latency_ms if base and t.latency_ms > 0 else None,
            delta_psnr_db=t.psnr_db - base.psnr_db if base else None,
            feasible=t.feasible,
            params=t.params,
            on_front=t.number in front_numbers,
            dominated=any(dominates((f.latency_ms, f.psnr_db), point) for f in front),
            repeats=repeats.get(t.number, ()),
        )

    s = StudyRecord.of(study)
    promoted = _promoted(study, s, done)
    return FrontReport(
        study=study.study_name,
        space=s.space,
        budget=s.budget,
        latency_of=s.latency_of(),
        psnr_of=s.psnr_of(),
        devices=tuple(sorted({t.device_name for t in done if t.device_name})),
        front=tuple(sorted((row(t) for t in front), key=lambda r: (r.latency_ms, -r.psnr_db))),
        references=tuple(row(t) for t in done if t.reference),
        skipped_references={k: v for k, v in s.references.items() if v != "enqueued"},
        hypervolume=_history(done),
        rung=s.rung_number,
        below=(s.rung or {}).get("below"),
        promoted=promoted,
        agreement=agreement(promoted) if s.rung else None,
        rungs={r: (name, _study_id(study, name)) for r, name in s.rungs.items()} or None,
    )


def _distinct_configs(
    trials: Sequence[TrialRecord],
) -> tuple[list[TrialRecord], dict[int, tuple[int, ...]]]:
    """The earliest trial of each deployment config (trials without one stay apart), and per
    kept trial the numbers of the later ones with its config."""
    kept: dict[str, TrialRecord] = {}
    later: dict[int, list[int]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        key = json.dumps(t.config, sort_keys=True) if t.config else f"#{t.number}"
        first = kept.setdefault(key, t)
        if first is not t:
            later.setdefault(first.number, []).append(t.number)
    return list(kept.values()), {n: tuple(v) for n, v in later.items()}


def _study_id(study: optuna.Study, name: str) -> int | None:
    """The storage's id of study ``name`` (the dashboard's URLs use it), None if it is gone."""
    try:
        return study._storage.get_study_id_from_name(name)
    except KeyError:
        return None


def _levels(points: Sequence[tuple[float, float]]) -> list[int]:
    out = [0] * len(points)
    for level, front in enumerate(nondominated_fronts(points), start=1):
        for i in front:
            out[i] = level
    return out


def _promoted(
    study: optuna.Study, s: StudyRecord, done: Sequence[TrialRecord]
) -> tuple[Promoted, ...]:
    """The rung study's complete trials beside the complete trials of the rung below."""
    if not s.rung:
        return ()
    below = optuna.load_study(study_name=s.rung["below"], storage=study._storage)
    below_done = {t.number: t.values for t in below.get_trials(deepcopy=False)
                  if t.state == TrialState.COMPLETE and t.values}  # fmt: skip
    pairs = [(t, below_done[t.promoted_from["trial"]]) for t in done
             if t.promoted_from and t.promoted_from["trial"] in below_done]  # fmt: skip
    lv_below = _levels([(v[0], v[1]) for _, v in pairs])
    lv_here = _levels([(t.latency_ms, t.psnr_db) for t, _ in pairs])
    return tuple(
        Promoted(
            t.number,
            t.promoted_from["trial"],
            t.reference,
            (v[0], v[1]),
            (t.latency_ms, t.psnr_db),
            lv_below[k],
            lv_here[k],
        )  # fmt: skip
        for k, (t, v) in enumerate(pairs)
    )


def agreement(promoted: Sequence[Promoted]) -> dict[str, Any]:
    """Kendall tau between the rung below and this one, per objective (None: undefined, e.g.
    fewer than two trials or a constant side), and how many trials it covers."""
    out: dict[str, Any] = {"trials": len(promoted)}
    for k, name in enumerate(("latency_ms", "psnr_db")):
        try:
            tau = kendall_tau([p.below[k] for p in promoted], [p.here[k] for p in promoted])
        except ValueError:
            tau = None
        out[name] = tau
    return out


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.lstrip("+").split(".")[0] or 0)
    return format(value, spec) if value is not None else "-".rjust(width)


def _status(r: Row) -> str:
    if not r.feasible:
        return "infeasible"
    return "on the front" if r.on_front else "dominated by the front" if r.dominated else ""


def _also(r: Row) -> str:
    return "same config as " + ", ".join(f"#{n}" for n in r.repeats)


def _text_table(rows: Sequence[Row]) -> list[str]:
    lines = [
        f"{'trial':>5} {'latency ms':>10} {'cv':>5} {'PSNR dB':>8} {'SSIM':>6} {'in PSNR':>7} "
        f"{'speed-up':>8} {'dPSNR':>6}  reference / notes"
    ]
    for r in rows:
        notes = [r.reference] if r.reference else []
        if r.reused_from is not None:
            notes.append(f"PSNR of #{r.reused_from}")
        if r.repeats:
            notes.append(_also(r))
        if not r.feasible:
            notes.append("infeasible")
        lines.append(
            f"{r.number:>5} {r.latency_ms:>10.2f} {_fmt(r.latency_cv, '5.3f')} {r.psnr_db:>8.2f} "
            f"{_fmt(r.ssim, '6.4f')} {_fmt(r.input_psnr_db, '7.2f')} {_fmt(r.speedup, '7.2f')}x "
            f"{_fmt(r.delta_psnr_db, '+6.2f')}  {', '.join(notes)}"
        )
    return lines


def _hv_sentence(h: HypervolumeHistory, lead: str, unit: str) -> str:
    lat, psnr = h.reference
    return (
        f"{lead} of the feasible front: {h.values[-1]:.3f} {unit} over {len(h.values)} "
        f"trials (reference point {lat:.2f} ms, {psnr:.2f} dB)"
    )


def _sections(
    report: FrontReport,
    table: Callable[[Sequence[Row]], list[str]],
    heading: Callable[[str], str],
    item: Callable[[str], str],
) -> list[str]:
    """The report's body in either rendering: front, references, skipped references."""
    n = len(report.front)
    again = sum(len(r.repeats) for r in report.front)
    more = f" and {again} repeating one" if again else ""
    lines = [heading(f"Pareto front ({n} configurations{more}, feasible; speed-up and dPSNR "
                     "vs the baseline)")]  # fmt: skip
    lines += [*table(report.front), ""]
    if report.references:
        lines += [heading("Reference trials (the guide's hand-made choices)")]
        lines += table(report.references)
        for r in report.references:
            if _status(r) != "on the front":
                lines.append(item(f"{r.reference} (trial {r.number}) is {_status(r) or 'off'}"))
        lines.append("")
    for name, status in report.skipped_references.items():
        lines.append(item(f"{name}: {status}"))
    return lines


def _tau(value: float | None) -> str:
    return "undefined" if value is None else f"{value:+.2f}"


def rung_sentence(report: FrontReport) -> str:
    """What a rung study re-measured and how well the rung below had ranked it ("" at rung 0)."""
    if not report.rung:
        return ""
    a = report.agreement or {}
    kept = sum(1 for p in report.promoted if p.level_below == 1 and p.level_here == 1)
    first = sum(1 for p in report.promoted if p.level_below == 1)
    return (
        f"rung {report.rung}: {len(report.promoted)} trials promoted from {report.below} and "
        f"re-measured; rank agreement with the rung below (Kendall tau): latency "
        f"{_tau(a.get('latency_ms'))}, PSNR {_tau(a.get('psnr_db'))}; {kept} of the {first} "
        "promoted trials on the first front below are on the first front here"
    )


def _promoted_table(rows: Sequence[Promoted], sep: str) -> list[str]:
    """The promoted trials at both rungs (``sep``: column separator, " " or " | ")."""
    head = ["trial", "from", "ms below", "ms here", "dB below", "dB here", "front", "reference"]
    lines = [sep.join(head)]
    for p in rows:
        cells = [f"{p.number:>5}", f"{p.from_trial:>4}", f"{p.below[0]:>8.2f}",
                 f"{p.here[0]:>7.2f}", f"{p.below[1]:>8.2f}", f"{p.here[1]:>7.2f}",
                 f"{p.level_below} -> {p.level_here}", p.reference]  # fmt: skip
        lines.append(sep.join(cells))
    return lines


def _rung_lines(report: FrontReport, markdown: bool) -> list[str]:
    if report.rungs:
        named = [
            f"rung {r}: [{n}](/dashboard/studies/{i})" if markdown and i is not None
            else f"rung {r}: {n}"
            for r, (n, i) in sorted(report.rungs.items())
        ]  # fmt: skip
        return [f"{'- ' if markdown else ''}promoted to a higher fidelity: {', '.join(named)}", ""]
    if not report.rung:
        return []
    lines = [rung_sentence(report) + ".", ""]
    if markdown:
        table = _promoted_table(report.promoted, " | ")
        return [*lines, f"| {table[0]} |", "|" + " ---: |" * 7 + " --- |",
                *(f"| {row} |" for row in table[1:]), ""]  # fmt: skip
    return [*lines, *("  " + row for row in _promoted_table(report.promoted, " ")), ""]


def render_text(report: FrontReport) -> str:
    """The report as plain text for the terminal."""
    lines = [f"study {report.study}: space {report.space}, {report.measured_on}"]
    lines += ["", *_rung_lines(report, markdown=False)][:-1]  # the next heading starts a line
    lines += _sections(report, _text_table, lambda t: f"\n{t}:", lambda t: f"  {t}")
    if report.hypervolume.values:
        lines.append(_hv_sentence(report.hypervolume, "hypervolume", "ms*dB"))
    return "\n".join(lines).rstrip() + "\n"


def _md_table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| trial | latency_ms | psnr_db | SSIM | speed-up | dPSNR dB | feasible | reference |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | :---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.number} | {r.latency_ms:.2f} | {r.psnr_db:.2f} | {_fmt(r.ssim, '.4f')} | "
            f"{_fmt(r.speedup, '.2f')} | {_fmt(r.delta_psnr_db, '+.2f')} | "
            f"{'yes' if r.feasible else 'NO'} | "
            f"{', '.join(n for n in (r.reference, _also(r) if r.repeats else '') if n)} |"
        )
    return lines


def render_markdown(report: FrontReport) -> str:
    """The report as Markdown for the dashboard's study note."""
    lines = [
        f"## {report.study}: measured front",
        "",
        f"Space `{report.space}`; {report.measured_on}. Written by `run_study.py`; it is "
        "rewritten after each run, so edits made here are replaced.",
        "",
    ]
    lines += _rung_lines(report, markdown=True)
    lines += _sections(report, _md_table, lambda t: f"### {t}\n", lambda t: f"- {t}")
    h = report.hypervolume
    if h.values:
        lines += [
            "",
            f"{_hv_sentence(h, 'Hypervolume', 'ms x dB')}; figure "
            f"`{hv_figure_name(len(h.numbers))}`.",
            "",
            "The dashboard's own Pareto plot and best trials ignore `set_constraint`: check the "
            "`feasible` and `constraint:*` user attributes of each trial.",
        ]
    return "\n".join(lines)


def summary_text(study: optuna.Study, storage: StorageURL) -> str:
    """What a run prints at its end: the trial count, the report and how to export."""
    t = study_tally(study)
    extra = f" (+{t.retried} failed attempts that were retried)" if t.retried else ""
    return (
        f"\n{t.counted} finished trials in study {study.study_name}{extra}.\n\n"
        f"{render_text(front_report(study))}\n"
        f"export:  python run_study.py export --study-name {study.study_name} "
        f"--storage {storage.redacted} --out best.yaml --policy knee"
    )
