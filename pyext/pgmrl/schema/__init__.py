"""Installs and upgrades the `mrl` schema.

sql/migrations/NNN_*.sql run once each (recorded in mrl.migrations); sql/functions/NNN_*.sql are idempotent
(CREATE OR REPLACE) and run on every install, merged by number with sql/plpython/ (servers with plpython3u:
SQL can reach the sidecar) or sql/fallback/ (servers without it: the same functions explain what is missing).
Both are concatenated into one script, so `pgmrl install` and a DBA piping `pgmrl install --print-sql` into psql
do exactly the same thing.
"""

from __future__ import annotations

from importlib import resources

import psycopg
from psycopg import sql

from ..db import one, scalar
from ..errors import PgmrlError

MIN_PGVECTOR = (0, 7, 0)
_LOCK_KEY = 0x6D726C  # advisory lock serialising concurrent installs


def _files(kind: str) -> list[tuple[str, str]]:
    folder = resources.files("pgmrl.schema") / "sql" / kind
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, (folder / name).read_text(encoding="utf-8")) for name in names]


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".")[:3] if x.isdigit())


def build_script(vector_schema: str = "public", plpython: bool = False) -> str:
    """The whole install script; `vector_schema` is the schema the pgvector extension lives in, `plpython` whether
    the server has plpython3u (created beforehand)."""
    vec = sql.Identifier(vector_schema).as_string(None)
    out = [
        "-- pgmrl install script (generated). Safe to run again: migrations are recorded in mrl.migrations.",
        "DO $check$ BEGIN IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'vector') THEN "
        "RAISE EXCEPTION 'pgmrl needs the pgvector extension' USING HINT = 'CREATE EXTENSION vector; (pgvector >= 0.7)'; "
        "END IF; END $check$;",
        "CREATE SCHEMA IF NOT EXISTS mrl;",
        "CREATE TABLE IF NOT EXISTS mrl.migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());",
    ]
    for name, body in _files("migrations"):
        if "$pgmrl_migration$" in body:
            raise ValueError(f"{name} uses the reserved dollar-quote tag")
        body = body.replace("@vec@", vec)
        out.append(
            f"DO $pgmrl_run$ BEGIN\n"
            f"IF NOT EXISTS (SELECT FROM mrl.migrations WHERE name = '{name}') THEN\n"
            f"EXECUTE $pgmrl_migration$\n{body}\n$pgmrl_migration$;\n"
            f"INSERT INTO mrl.migrations (name) VALUES ('{name}');\n"
            f"END IF; END $pgmrl_run$;"
        )
    functions = sorted(_files("functions") + _files("plpython" if plpython else "fallback"))
    for name, body in functions:
        out.append(f"-- {name}\n" + body.replace("@vec@", vec))
    return "\n\n".join(out) + "\n"


def ensure_pgvector(conn: psycopg.Connection) -> str:
    """Creates pgvector if needed; returns its schema. Raises PgmrlError when it is missing or too old."""
    row = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    if row is None:
        raise PgmrlError(
            "pgvector is not installed on this PostgreSQL server. Install it (e.g. the postgresql-NN-pgvector "
            "package, or build it from source), or use the embedded server: `pgmrl up`.")
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    version, schema = one(conn.execute(
        "SELECT e.extversion, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"))  # just created
    if _version_tuple(version) < MIN_PGVECTOR:
        raise PgmrlError(
            f"pgvector {version} is too old: pgmrl needs >= {'.'.join(map(str, MIN_PGVECTOR))} (halfvec, "
            f"l2_normalize, subvector). Upgrade the package, then run ALTER EXTENSION vector UPDATE.")
    return schema


def ensure_plpython(conn: psycopg.Connection) -> bool:
    """Creates plpython3u when the server has it and we may; True when it is there."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'plpython3u'").fetchone():
        return True
    if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'plpython3u'").fetchone():
        return False
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION plpython3u")
    except psycopg.errors.InsufficientPrivilege:
        return False  # a superuser must create it; the fallback functions say so
    return True


def install(conn: psycopg.Connection) -> list[str]:
    """Installs or upgrades the schema in one transaction; returns the migrations applied now."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        schema = ensure_pgvector(conn)
        before: set[str] = set()
        if scalar(conn.execute("SELECT to_regclass('mrl.migrations')")) is not None:
            before = {r[0] for r in conn.execute("SELECT name FROM mrl.migrations")}
        conn.execute(build_script(schema, ensure_plpython(conn)))
        after = [r[0] for r in conn.execute("SELECT name FROM mrl.migrations ORDER BY name")]
    return [m for m in after if m not in before]


def installed_migrations(conn: psycopg.Connection) -> list[str]:
    if scalar(conn.execute("SELECT to_regclass('mrl.migrations')")) is None:
        return []
    return [r[0] for r in conn.execute("SELECT name FROM mrl.migrations ORDER BY name")]
