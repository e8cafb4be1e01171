"""The shape of the code: layers, the one record module, function size, docs that match the code."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from search.measure.budgets import BUDGETS

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "model").rglob("*.py"), *(ROOT / "search").rglob("*.py")])
RECORD = ROOT / "search" / "study" / "record.py"
RUNNER = ("search.study.objective", "search.study.runner", "search.study.worker")
RUNNER += ("search.study.launch", "search.study.progress", "search.measure.train")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _top_level_imports(path: Path) -> set[str]:
    """Modules a file imports at module level (imports inside functions are deliberate)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("search/data", ("search.measure", "search.study", "search.report")),
        ("search/measure", ("search.study", "search.report")),
        ("search/report", RUNNER),
    ],
)
def test_layers_import_only_downwards(package: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        f"{_rel(p)} imports {name}"
        for p in sorted((ROOT / package).rglob("*.py"))
        for name in _top_level_imports(p)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, bad


def test_exporting_a_yaml_pulls_in_neither_training_nor_workers() -> None:
    code = (
        "import sys, search.report.export, search.report.dashboard, search.report.report\n"
        f"print([m for m in {RUNNER!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_only_the_record_module_reads_or_writes_stored_attributes() -> None:
    """``grep -rnE 'user_attr|system_attr' search run_study.py`` finds only record.py."""
    pattern = re.compile(r"\b(set_)?(user|system)_attrs?\b")
    hits = []
    for path in [*SOURCES, ROOT / "run_study.py"]:
        if path == RECORD:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if pattern.search(line):
                hits.append(f"{_rel(path)}:{number}: {line.strip()}")
    assert not hits, hits


def _string_constants(path: Path) -> set[str]:
    """String literals of the code (docstrings and ``__all__`` lists left out)."""
    skip: set[int] = set()
    for node in ast.walk(tree := ast.parse(path.read_text())):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip.add(id(node.value))  # a docstring (or a bare string statement)
        elif isinstance(node, ast.Assign | ast.AugAssign) and "__all__" in ast.unparse(node):
            skip.update(id(n) for n in ast.walk(node.value))
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
    }


def test_distinctive_record_keys_are_spelled_only_in_the_record_module() -> None:
    """Keys of the record table (those that are no other record's field) appear nowhere else."""
    keys = re.findall(r"^``([a-z_:<>]+)``", RECORD.read_text(), flags=re.M)
    keys = [k for k in keys if "_" in k and k not in ("input_psnr_db", "per_stage_ms")]
    assert {"reused_from", "skipped_training", "trained_config", "device_windows"} <= set(keys)
    hits = [
        f"{_rel(path)}: {k!r}"
        for path in [*SOURCES, ROOT / "run_study.py"]
        if path != RECORD
        for k in sorted(set(keys) & _string_constants(path))
    ]
    assert not hits, hits


def test_no_function_is_longer_than_60_lines() -> None:
    long = [
        f"{_rel(path)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, long


def test_run_study_only_parses_and_dispatches() -> None:
    assert len((ROOT / "run_study.py").read_text().splitlines()) <= 250


def test_nothing_cites_a_file_the_repository_does_not_have() -> None:
    files = [*SOURCES, ROOT / "run_study.py", ROOT / "README.md", *(ROOT / "spaces").glob("*")]
    files += [*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tests").rglob("*.py")]
    cited = [
        f"{_rel(p)}: {name}"
        for p in files
        if p != Path(__file__)
        for name in ("DESIGN.md", "SEED-GUIDE.md", "STYLE.md", "shared/notes")
        if name in p.read_text()
    ]
    assert not cited, cited


def test_readme_budget_table_is_the_code() -> None:
    """Every row of the README's budget table states its budget's numbers."""
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"^\| budget \| steps \|.*?\n\n", readme, flags=re.M | re.S)
    assert table, "README has no budget table (header '| budget | steps |')"
    rows = {m[1]: m[0] for m in re.finditer(r"^\| `(\w+)` \|.*$", table[0], flags=re.M)}
    assert set(rows) >= set(BUDGETS)
    for name, b in BUDGETS.items():
        cells = [c.strip() for c in rows[name].strip("|").split("|")]
        t, s = b.latency_frames, b.latency_size
        assert cells[1] == str(b.steps), (name, cells)
        assert cells[2] == ("full" if b.width_scale == 1 else f"x{b.width_scale:g}"), cells
        clips = f"{b.clip_len} x {b.data_size}², crops {b.crop_size}, K {b.num_bins}"
        assert cells[3] == clips, (name, cells)
        assert cells[4].startswith(f"1x{t}x3x{s}x{s}"), (name, cells)
