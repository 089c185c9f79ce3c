"""A throwaway PostgreSQL server on 127.0.0.1 for tests and measurements: initdb + pg_ctl in a temporary folder,
as an unprivileged user (initdb refuses root: as root the server runs as the `postgres` user Debian's package
creates). Trust authentication on loopback only, durability off (fsync) since the data is thrown away.

    with postgres_server() as url:   # postgresql+psycopg2://bench@127.0.0.1:<port>/bench
        ...
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

REQUIRE_ENV = "PALETTE_BENCH_REQUIRE_POSTGRES"  # set by .ci/run: missing binaries fail the test instead of skipping


def server_bin() -> Path | None:
    """The folder holding initdb and pg_ctl (Debian: /usr/lib/postgresql/<major>/bin), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_reason() -> str | None:
    """Why no server can be started here (None when it can)."""
    if server_bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no `postgres` user to run initdb as (apt-get install postgresql creates it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server(db: str = "bench", user: str = "bench"):
    """Start a server, create database `db` owned by `user`; yields its SQLAlchemy URL; stops and deletes it."""
    bindir = server_bin()
    if bindir is None:
        raise RuntimeError(missing_reason())
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="palette-bench-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off " \
                  f"-c full_page_writes=off -c max_connections=60"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
            "-o", options, "start")
        try:
            run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, db)
            yield f"postgresql+psycopg2://{user}@127.0.0.1:{port}/{db}"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    except subprocess.CalledProcessError as e:
        log = folder / "server.log"
        raise RuntimeError(f"{e.cmd[len(as_user)]} failed: {e.stderr.strip()[-1500:]}"
                           f"{log.read_text()[-1500:] if log.exists() else ''}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
