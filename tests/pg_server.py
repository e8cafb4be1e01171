"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests and CI.

``start(data_dir)`` runs ``initdb`` into ``data_dir`` and starts the server with ``pg_ctl``,
listening on 127.0.0.1 only (TCP, password auth with scram-sha-256) and on a unix socket inside
``data_dir`` (trust auth, reachable only by the cluster's owner: initdb makes the directory 0700).
It then creates the login role ``vrt`` and a database ``vrt`` owned by it. PostgreSQL refuses to
run as root, so as root every server binary runs as the ``postgres`` system user (``runuser``).

CLI (from the repository root; ``DIR`` is the data directory, created if missing)::

    eval "$(python -m tests.pg_server start DIR)"   # exports VRTSPIKE_TEST_PG_URL/_DIR
    python -m tests.pg_server stop DIR
    python -m tests.pg_server bindir                # exit status 1 when no server binaries

``python tests/pg_server.py ...`` works the same.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

HOST = "127.0.0.1"
ROLE = "vrt"
PASSWORD = "vrt-pw-s3cret"
DATABASE = "vrt"
SUPERUSER = "postgres"
#: Bare scheme: SQLAlchemy 2.1 (the project needs it) maps it to psycopg 3, the project's driver.
SCHEME = "postgresql"
#: The system user the server runs as when this process is root.
PG_OS_USER = "postgres"
ENV_URL = "VRTSPIKE_TEST_PG_URL"
ENV_DIR = "VRTSPIKE_TEST_PG_DIR"

_SERVER_BINARIES = ("initdb", "pg_ctl", "psql")
_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_TIMEOUT_S = 120


def url_for(port: int, database: str) -> str:
    """The ``vrt`` role's URL for ``database`` on the server at 127.0.0.1:``port``."""
    return f"{SCHEME}://{ROLE}:{PASSWORD}@{HOST}:{port}/{database}"


def database_name(url: str) -> str:
    """The database a PostgreSQL URL names (e.g. the one the ``pg_url`` fixture returns)."""
    return urlsplit(url).path.lstrip("/")


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``psql``.

    Tries ``pg_config --bindir``, then the newest ``/usr/lib/postgresql/*/bin``, then the
    directory of ``initdb`` on ``PATH`` (symlinks resolved).

    Raises:
        RuntimeError: none of them holds the three binaries; the message says what was tried.
    """
    tried: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        tried.append("pg_config is not on PATH")
    else:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            tried.append(f"`pg_config --bindir` failed ({exc})")
        else:
            if _has_server(Path(out)):
                return Path(out)
            # libpq-dev ships pg_config without the server
            tried.append(f"`pg_config --bindir` says {out}, which lacks {_missing(Path(out))}")
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for bindir in versions:
        if _has_server(bindir):
            return bindir
    tried.append(
        f"{', '.join(map(str, versions))} lack {'/'.join(_SERVER_BINARIES)}"
        if versions
        else "no /usr/lib/postgresql/*/bin"
    )
    initdb = shutil.which("initdb")
    if initdb is None:
        tried.append("initdb is not on PATH")
    else:
        bindir = Path(initdb).resolve().parent
        if _has_server(bindir):
            return bindir
        tried.append(f"initdb on PATH is in {bindir}, which lacks {_missing(bindir)}")
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl, psql) not found: "
        + "; ".join(tried)
        + " (Debian/Ubuntu: apt-get install postgresql)"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass(frozen=True)
class PgServer:
    """A running throwaway cluster (see the module docstring).

    Attributes:
        data_dir: The cluster's data directory; also its unix-socket directory.
        port: The TCP port on 127.0.0.1 (and the socket's number).
        url: The ``vrt`` role's URL for the ``vrt`` database.
        bindir: Where ``pg_ctl`` and ``psql`` live.
    """

    data_dir: Path
    port: int
    url: str
    bindir: Path

    @classmethod
    def attach(cls, data_dir: Path, url: str | None = None) -> PgServer:
        """The server already running on ``data_dir`` (started by ``start``, maybe elsewhere).

        Args:
            data_dir: Its data directory.
            url: Its ``vrt`` URL (e.g. ``$VRTSPIKE_TEST_PG_URL``); read the port from
                ``postmaster.pid`` when ``None``.

        Raises:
            RuntimeError: the URL is not on 127.0.0.1, or the server is not running.
        """
        data_dir = Path(data_dir).absolute()
        pid_file = data_dir / "postmaster.pid"
        if not pid_file.exists():
            raise RuntimeError(f"no PostgreSQL server is running on {data_dir} (no {pid_file})")
        if url is None:
            # postmaster.pid: pid, data dir, start time, port, socket dir, listen address, ...
            port = int(pid_file.read_text().splitlines()[3])
            url = url_for(port, DATABASE)
        parts = urlsplit(url)
        if parts.hostname != HOST or parts.port is None:
            raise RuntimeError(f"the test server must listen on {HOST}:<port>, got {parts.netloc}")
        return cls(data_dir=data_dir, port=parts.port, url=url, bindir=find_bindir())

    def stop(self) -> None:
        """Stop the server at once (``pg_ctl -m immediate``); no-op when it is not running."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        pg_ctl = str(self.bindir / "pg_ctl")
        _run([pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"], as_pg_user=True)

    def create_database(self, name: str) -> str:
        """Create the empty database ``name`` owned by ``vrt`` and return its ``vrt`` URL.

        Raises:
            ValueError: ``name`` is not a plain lower-case identifier of at most 63 characters.
        """
        self.sql(f'CREATE DATABASE "{_check_name(name)}" OWNER {ROLE}')
        return url_for(self.port, name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, closing whatever connections it still has."""
        self.sql(f'DROP DATABASE IF EXISTS "{_check_name(name)}" WITH (FORCE)')

    def database_size_bytes(self, name: str) -> int:
        """``pg_database_size`` of database ``name``, in bytes."""
        return int(self.sql(f"SELECT pg_database_size('{_check_name(name)}')"))

    def sql(self, *statements: str, database: str = "postgres") -> str:
        """Run ``statements`` (each on its own, in order) as the superuser over the socket.

        Returns:
            What ``psql -tA`` printed, stripped.

        Raises:
            RuntimeError: psql failed; the message holds its output.
        """
        argv = [
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
        ]
        for statement in statements:
            argv += ["-c", statement]
        return _run(argv, as_pg_user=True).strip()


def start(data_dir: Path, port: int | None = None) -> PgServer:
    """Create a cluster in ``data_dir``, start it on 127.0.0.1 and add role and database ``vrt``.

    Args:
        data_dir: A missing or empty directory. As root, the ``postgres`` user must be able to
            reach it: its parent is handed to ``postgres`` when it is a temporary directory
            right under the system one (``mktemp -d``, ``tempfile.mkdtemp``).
        port: The TCP port; a free one when ``None`` (retried on a bind race).

    Returns:
        The running server; call ``stop()`` when done.

    Raises:
        RuntimeError: binaries missing, directory unusable, or initdb/pg_ctl/psql failed.
    """
    bindir = find_bindir()
    data_dir = Path(data_dir).absolute()
    if data_dir.exists() and any(data_dir.iterdir()):
        raise RuntimeError(f"{data_dir} is not empty; give start() a new directory")
    socket_path = data_dir / ".s.PGSQL.65535"
    if len(os.fsencode(socket_path)) > _SOCKET_PATH_MAX:
        raise RuntimeError(
            f"{data_dir} is too long for a unix socket path ({_SOCKET_PATH_MAX} bytes max); "
            "use a shorter directory"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _hand_to_pg_user(data_dir)
    _initdb(bindir, data_dir)
    log = data_dir / "server.log"
    for attempt in range(1 if port is not None else 3):
        chosen = port if port is not None else free_port()
        options = (
            f"-c listen_addresses={HOST} -p {chosen} -k {shlex.quote(str(data_dir))}"
            " -c fsync=off -c max_connections=200"
        )
        argv = [str(bindir / "pg_ctl"), "-D", str(data_dir), "-l", str(log)]
        try:
            _run([*argv, "-o", options, "-w", "start"], as_pg_user=True)
            break
        except RuntimeError as exc:
            tail = _tail(log)
            if port is None and attempt < 2 and "could not bind" in tail:
                continue  # someone took the free port in between: try another
            raise RuntimeError(f"{exc}\n--- {log} (tail) ---\n{tail}") from None
    server = PgServer(data_dir=data_dir, port=chosen, url=url_for(chosen, DATABASE), bindir=bindir)
    try:
        server.sql(
            f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'",
            f"CREATE DATABASE {DATABASE} OWNER {ROLE}",
        )
    except BaseException:
        server.stop()
        raise
    return server


def _initdb(bindir: Path, data_dir: Path) -> None:
    """``initdb`` into ``data_dir`` with a random superuser password (local: trust)."""
    fd, pwfile = tempfile.mkstemp(prefix="vrtspike-pg-pw-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
        if os.geteuid() == 0:
            user = pwd.getpwnam(PG_OS_USER)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            as_pg_user=True,
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pwfile)


def _hand_to_pg_user(data_dir: Path) -> None:
    """As root: give ``data_dir`` to ``postgres`` and make sure that user can reach it."""
    try:
        user = pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root needs the {PG_OS_USER!r} system user (PostgreSQL refuses root); "
            "installing the postgresql package creates it"
        ) from None
    if shutil.which("runuser") is None:
        raise RuntimeError("running as root needs `runuser` (util-linux) to drop to postgres")
    gids = set(os.getgrouplist(user.pw_name, user.pw_gid))
    parent = data_dir.parent
    in_tmp = parent.parent == Path(tempfile.gettempdir())
    if in_tmp and not _traversable(parent, user.pw_uid, gids):
        os.chown(parent, user.pw_uid, user.pw_gid)
    for ancestor in data_dir.parents:
        if not _traversable(ancestor, user.pw_uid, gids):
            raise RuntimeError(
                f"the {PG_OS_USER!r} user cannot reach {ancestor}, so it cannot run a server in "
                f"{data_dir}; use a directory from `mktemp -d` instead"
            )
    os.chown(data_dir, user.pw_uid, user.pw_gid)
    data_dir.chmod(0o700)


def _traversable(path: Path, uid: int, gids: set[int]) -> bool:
    """Whether a user ``uid`` in groups ``gids`` may search directory ``path``."""
    st = path.stat()
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid in gids:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def _run(argv: list[str], *, as_pg_user: bool = False) -> str:
    """Run ``argv`` (as ``postgres`` when root and ``as_pg_user``), return its stdout.

    ``PG*`` variables are dropped from the environment so that nothing outside points the
    client tools elsewhere.

    Raises:
        RuntimeError: it exited non-zero or ran past the timeout; with its output.
    """
    if as_pg_user and os.geteuid() == 0:
        argv = ["runuser", "-u", PG_OS_USER, "--", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env,
            cwd="/",  # the postgres user may not be allowed into ours
            timeout=_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{shlex.join(argv)} ran past {_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}".rstrip()
        )
    return proc.stdout


def _check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"database name {name!r} is not [a-z_][a-z0-9_]{{0,62}}")
    return name


def _has_server(bindir: Path) -> bool:
    return not _missing(bindir)


def _missing(bindir: Path) -> str:
    return ", ".join(b for b in _SERVER_BINARIES if not os.access(bindir / b, os.X_OK))


def _version_key(bindir: Path) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in bindir.parent.name.split("."))
    except ValueError:
        return (-1,)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    """CLI: ``start DIR`` (prints ``export`` lines for ``eval``), ``stop DIR``, ``bindir``."""
    parser = argparse.ArgumentParser(prog="python -m tests.pg_server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", help="start a server in DIR, print export lines").add_argument(
        "dir", type=Path
    )
    sub.add_parser("stop", help="stop the server in DIR").add_argument("dir", type=Path)
    sub.add_parser("bindir", help="print the server binaries' directory")
    args = parser.parse_args(argv)
    try:
        if args.command == "bindir":
            print(find_bindir())
        elif args.command == "start":
            server = start(args.dir)
            print(f"export {ENV_URL}={shlex.quote(server.url)}")
            print(f"export {ENV_DIR}={shlex.quote(str(server.data_dir))}")
        else:
            try:
                server = PgServer.attach(args.dir)
            except RuntimeError as exc:
                print(f"nothing to stop: {exc}", file=sys.stderr)
                return 0
            server.stop()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
