"""Atomic writes: the old content or the new, never part, and no temporary file left behind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from search.files import atomic_path


class _Failed(Exception):
    pass


def test_a_finished_block_replaces_the_file_and_leaves_only_it(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "table.json"  # the folder is created
    with atomic_path(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".") and ".tmp-" in tmp.name
        assert tmp.suffix == ".json"  # writers that pick a format by the suffix still can
        tmp.write_text("new")
        assert not out.exists()  # nothing at the destination until the block ends
    assert out.read_text() == "new"
    assert [p.name for p in out.parent.iterdir()] == ["table.json"]


def test_a_failed_block_keeps_the_old_content_and_removes_its_temporary(tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    out.write_text("old")
    with pytest.raises(_Failed), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise _Failed
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.json"]


def test_two_writers_of_one_path_get_distinct_temporaries(tmp_path: Path) -> None:
    out = tmp_path / "x.pt"
    with atomic_path(out) as a, atomic_path(out) as b:
        assert a != b
        a.write_text("a")
        b.write_text("b")
    assert out.read_text() == "a"  # the last rename (the outer block ends last) wins


def test_the_module_imports_nothing_of_the_service() -> None:
    import search.files

    tree = ast.parse(Path(search.files.__file__).read_text())
    names = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.split(".")[0] in ("search", "model")], names
