"""Claims: which worker may run a trial (point x seed) or train a shared stage run, so none runs twice.

Two kinds, chosen by the Optuna storage (`claims_for`):

- `FileClaims` (SQLite, journal files: workers on one machine): `flock` on files under `results/`, as before.
- `ServerClaims` (PostgreSQL: workers on many machines): PostgreSQL session-level advisory locks.

Why advisory locks rather than Optuna's heartbeat (`heartbeat_interval`, `grace_period`,
`RetryFailedTrialCallback`): a claim must be exclusive before the trial starts, and a heartbeat does not
stop two workers from starting the same grid point (GridSampler may hand it to both); it only fails a
trial whose worker went quiet, after a grace period, leaving a retry to a sampler that knows nothing of our
checkpoints. An advisory lock is exactly a flock held by the database: taken or refused in one statement,
released by the server the moment the worker's connection ends (process killed: the socket closes; host
gone: TCP keepalives, set below, end the session within about a minute). The worker that takes the trial
next resumes it from the newest checkpoint in the shared results folder, as on one machine.

Lock names mirror the folder layout (`<study>/trials/<key>`, `<study>/runs/<run key>`, `<study>/records`),
not absolute paths, so hosts that mount the shared folder at different places agree on them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from pathlib import Path

from .locks import file_lock, is_locked

# Server-side keepalive (settable per session): a host that vanished without closing its socket is noticed
# after idle + interval x count seconds, and its locks are released then.
_KEEPALIVE = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}


class FileClaims:
    """flock on files in the results folder: correct among processes of one machine (local disk)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def trial(self, trial_dir: Path):
        """Non-blocking claim of a trial: yields True if this worker now owns it, False if another does."""
        return file_lock(Path(trial_dir) / ".lock", blocking=False)

    def run(self, runs_dir: Path, key: str):
        """Blocking claim of a stage run (shared by trials): waits while another worker trains it."""
        return file_lock(Path(runs_dir) / f".{key}.lock")

    def run_held(self, runs_dir: Path, key: str) -> bool:
        """True while a live worker trains the stage run (a probe: never waits)."""
        return is_locked(Path(runs_dir) / f".{key}.lock")

    def records(self, study_dir: Path):
        """Blocking claim of the study folder's shared files (study.json, records.csv, trials.csv)."""
        return file_lock(Path(study_dir) / ".records.lock")

    def held(self, trial_dir: Path) -> bool:
        """True while a live worker owns the trial."""
        return is_locked(Path(trial_dir) / ".lock")


def lock_id(name: str) -> int:
    """The signed 64-bit key of PostgreSQL's advisory locks for a claim name (stable across hosts)."""
    digest = hashlib.blake2b(f"palette-bench:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class ServerClaims:
    """PostgreSQL advisory locks, all held on one dedicated connection of this worker (not Optuna's pool,
    whose connections come and go). Use as a context manager: leaving it closes the connection, which
    releases every claim. `url`: the SQLAlchemy URL of the Optuna storage (postgresql+psycopg2://...)."""

    def __init__(self, url):
        import sqlalchemy

        self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        self._conn = None

    def __enter__(self):
        # AUTOCOMMIT: session-level locks need no transaction, and an idle one would hold back vacuum
        self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        for name, value in _KEEPALIVE.items():
            self._conn.exec_driver_sql(f"SET {name} = {int(value)}")
        # pg_stat_activity shows which host and process holds a connection (and so its locks)
        self._sql("SELECT set_config('application_name', :v, false)", v=f"bench {socket.gethostname()}:{os.getpid()}")
        return self

    def __exit__(self, *exc):
        self._conn.close()
        self._engine.dispose()
        return False

    def _sql(self, query: str, **params):
        from sqlalchemy import text

        return self._conn.execute(text(query), params).scalar()

    @contextlib.contextmanager
    def _lock(self, name: str, blocking: bool):
        key = lock_id(name)
        if blocking:
            self._sql("SELECT pg_advisory_lock(:k)", k=key)
            got = True
        else:
            got = bool(self._sql("SELECT pg_try_advisory_lock(:k)", k=key))
        try:
            yield got
        finally:
            if got:
                self._sql("SELECT pg_advisory_unlock(:k)", k=key)

    def trial(self, trial_dir: Path):
        trial_dir = Path(trial_dir)
        return self._lock(f"{trial_dir.parent.parent.name}/trials/{trial_dir.name}", blocking=False)

    def run(self, runs_dir: Path, key: str):
        return self._lock(f"{Path(runs_dir).parent.name}/runs/{key}", blocking=True)

    def run_held(self, runs_dir: Path, key: str) -> bool:
        with self._lock(f"{Path(runs_dir).parent.name}/runs/{key}", blocking=False) as got:
            return not got

    def records(self, study_dir: Path):
        return self._lock(f"{Path(study_dir).name}/records", blocking=True)

    def held(self, trial_dir: Path) -> bool:
        with self.trial(trial_dir) as got:
            return not got


def is_server(storage) -> bool:
    """True for an Optuna RDB storage on PostgreSQL (claims through the database)."""
    engine = getattr(storage, "engine", None)
    return engine is not None and engine.dialect.name == "postgresql"


def claims_for(storage) -> FileClaims | ServerClaims:
    """The claims that fit an Optuna storage object: the server's for PostgreSQL, else file locks."""
    return ServerClaims(storage.engine.url) if is_server(storage) else FileClaims()


@contextlib.contextmanager
def server_lock(url: str, name: str):
    """Hold one advisory lock on a short-lived connection (e.g. while Optuna creates its tables, which two
    workers starting at once would otherwise both try)."""
    claims = ServerClaims(url)
    with claims, claims._lock(name, blocking=True):
        yield
