from __future__ import annotations

import uuid

import optuna
import pg_server as pg
import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool


def _scalar(url: str, query: str) -> object:
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(query)).scalar()
    finally:
        engine.dispose()


def test_vrt_logs_in_over_loopback_with_its_password_only(pg_server: pg.PgServer) -> None:
    assert _scalar(pg_server.url, "SELECT current_user") == pg.ROLE
    assert _scalar(pg_server.url, "SHOW listen_addresses") == "127.0.0.1"
    wrong = pg_server.url.replace(pg.PASSWORD, "not-the-password")
    with pytest.raises(sqlalchemy.exc.OperationalError, match="password authentication failed"):
        _scalar(wrong, "SELECT 1")


def test_pg_url_databases_are_distinct(pg_server: pg.PgServer, pg_url: str) -> None:
    other_name = f"t_other_{uuid.uuid4().hex[:8]}"
    other = pg_server.create_database(other_name)
    try:
        assert pg.database_name(pg_url) != other_name
        engine = sqlalchemy.create_engine(pg_url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE TABLE only_here (x int)"))
        engine.dispose()
        assert _scalar(pg_url, "SELECT to_regclass('only_here') IS NOT NULL") is True
        assert _scalar(other, "SELECT to_regclass('only_here') IS NOT NULL") is False
        assert _scalar(other, "SELECT current_user") == pg.ROLE
    finally:
        pg_server.drop_database(other_name)


def test_optuna_study_lives_in_its_database(pg_server: pg.PgServer, pg_url: str) -> None:
    name = pg.database_name(pg_url)
    empty = pg_server.database_size_bytes(name)
    storage = optuna.storages.RDBStorage(pg_url)
    study = optuna.create_study(
        storage=storage, study_name="pg-smoke", directions=["minimize", "maximize"]
    )
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=3)
    storage.engine.dispose()
    loaded = optuna.load_study(study_name="pg-smoke", storage=pg_url)
    assert len(loaded.trials) == 3
    assert pg_server.database_size_bytes(name) > empty
