from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pg_server as pg
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _parents_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Elastic parents built by the tests go to one folder of the session (workers inherit it),
    never to the checkout's ``studies/parents``; a test that checks the cache uses its own."""
    old = os.environ.get("VRTSPIKE_PARENTS")
    os.environ["VRTSPIKE_PARENTS"] = str(tmp_path_factory.mktemp("parents"))
    yield
    if old is None:
        os.environ.pop("VRTSPIKE_PARENTS", None)
    else:
        os.environ["VRTSPIKE_PARENTS"] = old


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture
def native_cpu_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU runs bf16 natively, as far as the AMP rule is concerned: a test of the bf16 path
    then means the same on a CPU without AVX-512, where AMP would resolve to full precision."""
    import search.measure.device as device_rules

    monkeypatch.setattr(device_rules, "cpu_bf16_native", lambda: True)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pg.PgServer]:
    """A PostgreSQL server on 127.0.0.1 for the session (``tests/pg_server.py``).

    The one CI started when ``VRTSPIKE_TEST_PG_URL`` (and ``VRTSPIKE_TEST_PG_DIR``) are set;
    else one of its own, stopped at session end. Without server binaries the test is skipped,
    except under ``CI`` (set and non-empty), where it fails: CI must never skip these silently.
    """
    url = os.environ.get(pg.ENV_URL)
    if url:
        data_dir = os.environ.get(pg.ENV_DIR)
        if not data_dir:
            pytest.fail(f"{pg.ENV_URL} is set but {pg.ENV_DIR} is not", pytrace=False)
        yield pg.PgServer.attach(Path(data_dir), url)
        return
    try:
        pg.find_bindir()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL server binaries not found ({exc})")
    # As root the server runs as `postgres`, which cannot enter pytest's 0700 /tmp/pytest-of-root.
    as_root = os.geteuid() == 0
    if as_root:
        base = Path(tempfile.mkdtemp(prefix="vrtspike-pg-"))
    else:
        base = tmp_path_factory.mktemp("pg")
    server = pg.start(base / "data")
    try:
        yield server
    finally:
        server.stop()
        if as_root:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: pg.PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL (role ``vrt``) of a fresh, empty database for this test; dropped afterwards.

    ``pg_server.database_size_bytes(pg_server_module.database_name(pg_url))`` measures it.
    """
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)
