"""Storage URLs are parsed once, into one value every part of the service reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.study.locks import StorageGate, lock_dir
from search.study.storage import ARTIFACT_DIR_ENV, StorageError, StorageURL


@pytest.mark.parametrize(
    ("text", "backend", "path"),
    [
        ("sqlite:///studies/s.db", "sqlite", Path("studies/s.db")),
        ("sqlite:////abs/s.db", "sqlite", Path("/abs/s.db")),
        ("journal:studies/j.log", "journal", Path("studies/j.log")),
        ("journal:/abs/j.log", "journal", Path("/abs/j.log")),
        ("journal:///abs/j.log", "journal", Path("/abs/j.log")),
        ("postgresql://vrt:secret@db:5432/studies", "postgresql", None),
    ],
)
def test_parse(text: str, backend: str, path: Path | None) -> None:
    url = StorageURL.parse(text)
    assert (url.backend, url.path) == (backend, path)
    assert "secret" not in url.redacted


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("journal://rel.log", "ambiguous"),
        ("journal:", "give a file"),
        ("journal:studies/", "give a file"),
        ("notaurl", "malformed storage URL"),
        ("mysql://u@h/db", "not supported"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_parse_refuses(text: str, words: str) -> None:
    with pytest.raises(StorageError, match=words):
        StorageURL.parse(text)


def test_default_is_the_sqlite_file_under_studies() -> None:
    assert StorageURL.parse(None) == StorageURL.default()
    assert StorageURL.default().path == Path("studies/vrt_spike.db")


def test_journal_gate_and_artifacts_use_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate's lock and the artifact folder both follow the one parsed path (a relative
    ``journal:PATH`` once opened ``//PATH`` in one place and locked ``PATH`` in another)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VRTSPIKE_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv(ARTIFACT_DIR_ENV, raising=False)
    rel, absolute = StorageURL.parse("journal:j.log"), StorageURL.parse(f"journal:{tmp_path}/j.log")
    assert rel.lock_name == absolute.lock_name == str(tmp_path / "j.log")
    assert rel.artifact_dir() == Path("j_artifacts")
    assert absolute.artifact_dir() == tmp_path / "j_artifacts"
    gates = [StorageGate(u) for u in (rel, absolute)]
    assert gates[0]._path == gates[1]._path and gates[0]._path.parent == lock_dir()
    rel.open(create=True)
    assert (tmp_path / "j.log").is_file() and not Path("//j.log").exists()


def test_artifact_folder_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ARTIFACT_DIR_ENV, "/shared/artifacts")
    assert StorageURL.parse("postgresql://u@h/db").artifact_dir() == Path("/shared/artifacts")
