"""Bad input, end to end in a subprocess: exit code 2, one ``error:`` line, no traceback, no writes.

Every case runs the real command line (``run_study.py`` or ``python -m search.train_cli``) with a
temporary working directory and temporary data cache, lock and artifact folders, and compares a
snapshot of all of them (paths, sizes, modification times, contents) before and after. The one
thing allowed to appear is an empty ``*.lock`` file in the lock folder: the SQLite single-worker
lock is taken before the data is loaded, and ``flock`` files are kept on purpose (deleting one
would let two processes lock different files of the same name).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from search.data import SyntheticSpec, write_spk_gopro

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(ROOT / "run_study.py")]
TRAIN = [sys.executable, "-m", "search.train_cli"]
TINY = str(ROOT / "tests" / "data" / "space_tiny.yaml")
RUN_ARGS = ["--budget", "smoke", "--space", TINY, "--trials", "2"]
PASSWORD = "vrt-pw-s3cret"  # the test server's (tests/pg_server.py)
HANG_GUARD_S = 60  # a hang guard, not a timing assertion (the connect timeout is 10 s)

Snapshot = dict[str, tuple[object, ...]]


@dataclass(frozen=True)
class Sandbox:
    """Where a command runs: ``cwd`` and the env folders, all under ``root``."""

    root: Path
    cwd: Path
    locks: Path
    env: dict[str, str]


@pytest.fixture()
def sandbox(tmp_path: Path) -> Sandbox:
    cwd, locks = tmp_path / "work", tmp_path / "locks"
    cwd.mkdir()
    locks.mkdir()  # as the default <tmp>/vrt-spike-locks: it exists once anything ran
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "VRTSPIKE_DATA_CACHE": str(tmp_path / "cache"),  # absent: creating it is a write
        "VRTSPIKE_LOCK_DIR": str(locks),
        "VRTSPIKE_ARTIFACT_DIR": str(tmp_path / "artifacts"),  # absent, likewise
    }
    env.pop("VRTSPIKE_WORKER", None)
    return Sandbox(root=tmp_path, cwd=cwd, locks=locks, env=env)


def _snapshot(root: Path) -> Snapshot:
    """Every file and folder under ``root``: folders by name, files by size, mtime and digest."""
    snap: Snapshot = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() and not path.is_symlink():
            snap[rel] = ("dir",)
        else:
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            snap[rel] = ("file", st.st_size, st.st_mtime_ns, digest)
    return snap


def _drop_new_lock_files(after: Snapshot, before: Snapshot, locks: Path, root: Path) -> Snapshot:
    """``after`` without new, empty ``*.lock`` files directly in the lock folder."""
    prefix = locks.relative_to(root).as_posix() + "/"

    def allowed(rel: str, entry: tuple[object, ...]) -> bool:
        name = rel.removeprefix(prefix)
        return (
            rel not in before
            and rel.startswith(prefix)
            and "/" not in name
            and name.endswith(".lock")
            and entry[:2] == ("file", 0)
        )

    return {rel: entry for rel, entry in after.items() if not allowed(rel, entry)}


def _fails_cleanly(
    sb: Sandbox, argv: Sequence[str], words: Sequence[str], *, secrets: Sequence[str] = ()
) -> str:
    """Run ``argv`` in the sandbox; assert exit 2, one error line with ``words``, no writes.

    Returns the error line.
    """
    before = _snapshot(sb.root)
    start = time.monotonic()
    proc = subprocess.run(
        list(argv), cwd=sb.cwd, env=sb.env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    elapsed = time.monotonic() - start
    output = proc.stdout + proc.stderr
    assert elapsed < HANG_GUARD_S
    assert proc.returncode == 2, output
    assert "Traceback" not in output, output
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    for secret in secrets:
        assert secret not in output, output
    after = _snapshot(sb.root)
    assert _drop_new_lock_files(after, before, sb.locks, sb.root) == before
    assert not (sb.cwd / "studies").exists()
    return lines[0]


@pytest.mark.parametrize(
    ("url", "words", "secret"),
    [
        pytest.param(
            "postgresql://vrt:pw-n0t-shown@127.0.0.1:1/vrt",
            ["cannot open storage postgresql://vrt:***@127.0.0.1:1/vrt"],
            "pw-n0t-shown",
            id="closed-port",
        ),
        pytest.param(
            "postgresql://vrt:pw-n0t-shown@no-such-host.invalid/vrt",
            ["cannot open storage postgresql://vrt:***@no-such-host.invalid/vrt"],
            "pw-n0t-shown",
            id="unresolvable-host",
        ),
        pytest.param("notaurl", ["malformed storage URL"], None, id="malformed-no-scheme"),
        pytest.param(
            "postgresql://vrt:pw-n0t-shown@127.0.0.1:notaport/db",
            ["malformed storage URL"],
            "pw-n0t-shown",
            id="malformed-port",
        ),
    ],
)
def test_unusable_storage_url(
    sandbox: Sandbox, url: str, words: list[str], secret: str | None
) -> None:
    argv = [*RUN, *RUN_ARGS, "--storage", url]
    _fails_cleanly(sandbox, argv, words, secrets=[secret] if secret else [])


def test_wrong_password_against_the_real_server(sandbox: Sandbox, pg_url: str) -> None:
    assert f":{PASSWORD}@" in pg_url
    wrong = "wr0ng-pw-x7"
    bad_url = pg_url.replace(f":{PASSWORD}@", f":{wrong}@")
    _fails_cleanly(
        sandbox,
        [*RUN, *RUN_ARGS, "--storage", bad_url],
        ["cannot open storage postgresql://vrt:***@127.0.0.1:", "password authentication failed"],
        secrets=[PASSWORD, wrong],
    )
    engine = sqlalchemy.create_engine(pg_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("params", "words"),
    [
        pytest.param(
            "MODEL.NO_SUCH.KEY: {int: [1, 2]}",
            ["parameter MODEL.NO_SUCH.KEY: unknown config path"],
            id="unknown-parameter",
        ),
        pytest.param(
            "MODEL.WINDOW_SIZE: {int: [8, 6]}",
            ["parameter MODEL.WINDOW_SIZE: empty range [8, 6]"],
            id="low-above-high",
        ),
        pytest.param(
            "MODEL.SPIKE_TSA.CHUNK_SHAPE: {choices: [square, hexagon]}",
            ["parameter MODEL.SPIKE_TSA.CHUNK_SHAPE: value 'hexagon' is impossible"],
            id="invalid-choice",
        ),
    ],
)
def test_bad_space_file(sandbox: Sandbox, params: str, words: list[str]) -> None:
    space = sandbox.cwd / "bad_space.yaml"
    space.write_text(f"base: tiny\nparams:\n  {params}\n")
    argv = [*RUN, "--budget", "smoke", "--space", str(space), "--trials", "2"]
    _fails_cleanly(sandbox, argv, [f"{space}: ", *words])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param(
            "MODEL:\n  WINDOW_SIZE: 4\n  NO_SUCH_KEY: 1\n",
            ["MODEL.NO_SUCH_KEY: unknown key"],
            id="unknown-model-key",
        ),
        pytest.param(
            "TRAINING:\n  LR: 0.001\n",
            ["TRAINING: unknown key (valid: DATA, MODEL, TRAIN)"],
            id="unknown-section",
        ),
    ],
)
def test_train_cli_config_with_unknown_keys(sandbox: Sandbox, text: str, words: list[str]) -> None:
    config = sandbox.cwd / "bad.yaml"
    config.write_text(text)
    argv = [*TRAIN, "--config", str(config), "--budget", "smoke", "--out", "ckpt.pt"]
    _fails_cleanly(sandbox, argv, [f"{config}: ", *words])
    assert not (sandbox.cwd / "ckpt.pt").exists()


def test_truncated_spike_file(sandbox: Sandbox) -> None:
    root = write_spk_gopro(
        sandbox.root / "spk",
        SyntheticSpec(height=32, width=32, clip_len=3, num_bins=4, num_train=1, num_val=1),
    )
    dat = root / "train" / "clip_0000" / "spike" / "000001.dat"
    size = dat.stat().st_size
    dat.write_bytes(dat.read_bytes()[:-5])
    _fails_cleanly(
        sandbox,
        [*RUN, *RUN_ARGS, "--data", str(root)],
        [f"{dat}: {size - 5} bytes is not a whole number of 32x32 spike frames"],
    )


@pytest.mark.parametrize("failed_trial", [False, True], ids=["no-trials", "only-a-failed-trial"])
def test_export_without_finished_trials(sandbox: Sandbox, failed_trial: bool) -> None:
    url = f"sqlite:///{sandbox.cwd / 's.db'}"
    study = optuna.create_study(study_name="S", storage=url, directions=["minimize", "maximize"])
    if failed_trial:
        study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    argv = [*RUN, "export", "--study-name", "S", "--storage", url, "--out", "best.yaml"]
    _fails_cleanly(sandbox, argv, ["study 'S' has no finished feasible trial to export"])
    assert not (sandbox.cwd / "best.yaml").exists()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        pytest.param("-1", ["argument --trials: must be at least 1, got -1"], id="negative"),
        pytest.param("0", ["argument --trials: must be at least 1, got 0"], id="zero"),
        pytest.param("abc", ["argument --trials: expected a whole number, got 'abc'"], id="word"),
    ],
)
def test_bad_trial_count(sandbox: Sandbox, value: str, words: list[str]) -> None:
    argv = [*RUN, "--budget", "smoke", "--space", TINY, "--trials", value]
    _fails_cleanly(sandbox, argv, words)


def test_several_workers_on_default_sqlite_storage(sandbox: Sandbox) -> None:
    _fails_cleanly(
        sandbox,
        [*RUN, *RUN_ARGS, "--workers", "3"],
        ["--workers 3 with sqlite:///studies/vrt_spike.db", "SQLite cannot serve", "PostgreSQL"],
    )
