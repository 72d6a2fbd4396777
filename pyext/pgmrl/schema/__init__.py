"""Builds, installs and checks the `mrl` schema: the SQL this package ships (sql/, see CONTRIBUTING.md).

sql/migrations/NNN_*.sql run once each (recorded in mrl.migrations); sql/functions/NNN_<concept>.sql (the public
API) and NNN_<concept>.internal.sql (its helpers in schema mrl_internal, sorting first) are idempotent (CREATE OR
REPLACE) and run on every install, merged by number with sql/plpython/ (servers with plpython3u: SQL can reach the
sidecar) or sql/fallback/ (servers without it: the same functions explain what is missing). Everything is
concatenated into one script, so `pgmrl install` and a DBA piping `pgmrl install --print-sql` into psql do exactly
the same thing.

A landed migration is never edited again: each is recorded with the sha256 of its text (sql/migrations/CHECKSUMS
lists them; a test keeps the two in step) and the script refuses one whose recorded checksum differs, apart from
the earlier texts in HISTORICAL_CHECKSUMS. Fixes go into a new migration. The script's last statement records a
digest of the function files it ran (mrl.install_record), so schema_problem() can tell a database whose schema is
not this code's.
"""

from __future__ import annotations

import hashlib
from functools import cache, lru_cache
from importlib import resources

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .._version import __version__
from ..db import one, scalar
from ..errors import PgmrlError

MIN_PGVECTOR = (0, 7, 0)
_LOCK_KEY = 0x6D726C  # advisory lock serialising concurrent installs
_FUNCTION_KINDS = ("functions", "plpython", "dblink", "fallback")
DBLINK_SCHEMA = "mrl_dblink"  # where pgmrl installs dblink, closed to PUBLIC (sql/dblink/085_http.sql says why)

# Migrations edited after they landed (before checksums were recorded): the checksums of their earlier texts, which
# a database installed then may carry. Their missing parts are added by the repair migrations named here. Never add
# to this for a new edit: change nothing that has landed, write a new migration.
HISTORICAL_CHECKSUMS: dict[str, tuple[str, ...]] = {
    # f74a3b3..b2e1cd6: without embedding_sets.mode and mrl.settings (001a_repair_early_001.sql)
    "001_schema.sql": ("bd2ee26ea5695f7722315ab083acbfe3405a50db0ea4dabad785c0750125a090",),
    # dfa4366: without the owner columns; fe255e2: without the queue's digest index (007a_repair_early_007.sql)
    "007_security.sql": ("0d47e65bb27ae73e0341c9d27b571cc79533af9dd34386d3492e074951a5c20b",
                         "ed1576ae5c6c63f7491cd77ef9f0ad246aebf97f625af49ef8a70460692a29f7"),
}


@cache  # read once per process: every CLI command and worker (re)connect checks the schema
def _files(kind: str) -> tuple[tuple[str, str], ...]:
    folder = resources.files("pgmrl.schema") / "sql" / kind
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return tuple((name, (folder / name).read_text(encoding="utf-8")) for name in names)


def checksum(text: str) -> str:
    """The checksum recorded for a migration: sha256 of its file's text (before @vec@ is substituted)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def migrations() -> list[tuple[str, str]]:
    """(name, text) of every migration, in the order they run."""
    return list(_files("migrations"))


@lru_cache(maxsize=1)
def functions_digest() -> str:
    """sha256 over the names and texts of every function file (all variants): what mrl.install_record holds after
    an install by this code, whatever the vector schema and plpython3u."""
    h = hashlib.sha256()
    for kind in _FUNCTION_KINDS:
        for name, body in _files(kind):
            data = body.encode("utf-8")
            h.update(f"{kind}/{name}\0{len(data)}\0".encode())
            h.update(data)
    return h.hexdigest()


def _literal(value: str) -> str:
    return sql.Literal(value).as_string(None)


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".")[:3] if x.isdigit())


def build_script(vector_schema: str = "public", plpython: bool = False, dblink_schema: str | None = None) -> str:
    """The whole install script; `vector_schema` is the schema the pgvector extension lives in, `plpython` whether
    the server has plpython3u (created beforehand), `dblink_schema` the schema of the dblink extension if it is
    there (used when plpython3u is not: SQL then reaches the sidecar's PostgreSQL-protocol endpoint)."""
    vec = sql.Identifier(vector_schema).as_string(None)
    variant = "plpython" if plpython else "dblink" if dblink_schema else "fallback"
    dbl = sql.Identifier(dblink_schema or "public").as_string(None)
    out = [
        "-- pgmrl install script (generated). Safe to run again: migrations are recorded in mrl.migrations.",
        "DO $check$ BEGIN IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'vector') THEN "
        "RAISE EXCEPTION 'pgmrl needs the pgvector extension' USING HINT = 'CREATE EXTENSION vector; (pgvector >= 0.7)'; "
        "END IF; END $check$;",
        "CREATE SCHEMA IF NOT EXISTS mrl;",
        "CREATE TABLE IF NOT EXISTS mrl.migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());",
        "ALTER TABLE mrl.migrations ADD COLUMN IF NOT EXISTS checksum text;  -- sha256 of the migration's text",
    ]
    for name, body in migrations():
        if "$pgmrl_migration$" in body:
            raise ValueError(f"{name} uses the reserved dollar-quote tag")
        digest = checksum(body)
        accepted = ", ".join(_literal(c) for c in (digest, *HISTORICAL_CHECKSUMS.get(name, ())))
        body = body.replace("@vec@", vec)
        # Run once; a database recorded by a pgmrl that kept no checksums gets this one; a different one is refused.
        out.append(
            f"DO $pgmrl_run$ DECLARE recorded text; BEGIN\n"
            f"SELECT checksum INTO recorded FROM mrl.migrations WHERE name = {_literal(name)};\n"
            f"IF NOT FOUND THEN\n"
            f"EXECUTE $pgmrl_migration$\n{body}\n$pgmrl_migration$;\n"
            f"INSERT INTO mrl.migrations (name, checksum) VALUES ({_literal(name)}, {_literal(digest)});\n"
            f"ELSIF recorded IS NULL THEN\n"
            f"UPDATE mrl.migrations SET checksum = {_literal(digest)} WHERE name = {_literal(name)};\n"
            f"ELSIF recorded NOT IN ({accepted}) THEN\n"
            f"RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database "
            f"(recorded checksum %, this pgmrl''s %)', {_literal(name)}, recorded, {_literal(digest)}\n"
            f"USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new "
            f"migration (or install the pgmrl version that applied it).';\n"
            f"END IF; END $pgmrl_run$;"
        )
    functions = sorted(_files("functions") + _files(variant))
    for name, body in functions:
        out.append(f"-- {name}\n" + body.replace("@vec@", vec).replace("@dblink@", dbl)
                   .replace("@dblink_shared@", "false" if dblink_schema == DBLINK_SCHEMA else "true"))
    # Last: which function files this database now runs (schema_problem compares it with the code's).
    out.append(
        f"INSERT INTO mrl.install_record (functions_digest, pgmrl_version) "
        f"VALUES ({_literal(functions_digest())}, {_literal(__version__)})\n"
        f"ON CONFLICT (singleton) DO UPDATE SET functions_digest = EXCLUDED.functions_digest, "
        f"pgmrl_version = EXCLUDED.pgmrl_version, installed_at = now();")
    return "\n\n".join(out) + "\n"


def psql_script(vector_schema: str = "public", plpython: bool = False, dblink_schema: str | None = None) -> str:
    """The install script for psql (`pgmrl install --print-sql | psql`): the same statements as `pgmrl install`, in
    one transaction under the same advisory lock, stopping at the first error (ON_ERROR_STOP), so a refused
    migration leaves the database as it was. pgvector (and plpython3u, for plpython=True) must exist beforehand."""
    return ("\\set ON_ERROR_STOP on\nBEGIN;\n"
            f"SELECT pg_advisory_xact_lock({_LOCK_KEY});\n"
            + build_script(vector_schema, plpython, dblink_schema) + "COMMIT;\n")


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


def ensure_dblink(conn: psycopg.Connection) -> str | None:
    """Creates dblink, in its own schema closed to PUBLIC (mrl_dblink: installing pgmrl gives no role dblink), when
    the server has it and we may; its schema when it is there, else None."""
    row = conn.execute("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                       "WHERE e.extname = 'dblink'").fetchone()
    if row:
        return row[0]
    if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'dblink'").fetchone():
        return None
    try:
        with conn.transaction():
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {DBLINK_SCHEMA}")
            conn.execute(f"REVOKE ALL ON SCHEMA {DBLINK_SCHEMA} FROM PUBLIC")
            conn.execute(f"CREATE EXTENSION dblink SCHEMA {DBLINK_SCHEMA}")
            conn.execute(f"REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {DBLINK_SCHEMA} FROM PUBLIC")
    except psycopg.errors.InsufficientPrivilege:
        return None  # the fallback functions say what is missing
    return ensure_dblink(conn)


def node_script() -> str:
    """What every node of a Citus cluster needs (the shard triggers' intake): sql/node/*.sql, idempotent."""
    return "\n\n".join(body for _, body in _files("node"))


def citus_role(conn: psycopg.Connection) -> str | None:
    """'coordinator' when this database has the Citus extension and this node coordinates it, 'worker' on one of
    its workers, None without Citus."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone() is None:
        return None
    return "coordinator" if scalar(conn.execute("SELECT pg_catalog.citus_is_coordinator()")) else "worker"


def citus_workers(conn: psycopg.Connection) -> list[tuple[str, int]]:
    """(host, port) of the active primary worker nodes, as the coordinator knows them."""
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT nodename, nodeport FROM pg_catalog.pg_dist_node WHERE isactive AND noderole = 'primary' "
        "AND groupid <> 0 ORDER BY nodeid")]


def node_dsn(dsn: str, host: str, port: int) -> str:
    """The coordinator's connection string (user, password, database, options) aimed at another node."""
    params = conninfo_to_dict(dsn)
    params.pop("hostaddr", None)
    params.update(host=host, port=str(port))
    return make_conninfo("", **params)


def _iterative_scans(node: psycopg.Connection) -> None:
    """On a Citus worker: a pushed-down `ORDER BY coarse <=> q LIMIT n` runs on every shard, and a shard's HNSW scan
    returns at most hnsw.ef_search rows, which the coordinator cannot raise there from inside a function (Citus sends
    SET LOCAL to the workers only in a transaction block). With iterative scans (pgvector >= 0.8) a shard's scan goes
    on until it has its n rows, in distance order; queries that get their rows within ef_search are unchanged."""
    version = scalar(node.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
    if version is not None and _version_tuple(version) >= (0, 8, 0):
        node.execute(sql.SQL("ALTER DATABASE {} SET hnsw.iterative_scan = 'strict_order'").format(
            sql.Identifier(scalar(node.execute("SELECT current_database()")))))


def install(conn: psycopg.Connection, dsn: str | None = None) -> list[str]:
    """Installs or upgrades the schema in one transaction; returns the migrations applied now. On the coordinator of
    a Citus cluster the schema stays on the coordinator (DDL propagation off) and every node, workers included,
    gets the node script (reached with `dsn`'s credentials, or the connection's own parameters)."""
    citus = citus_role(conn)
    if citus == "worker":
        raise PgmrlError("this database is a worker node of a Citus cluster: run `pgmrl install` on the coordinator "
                         "(it installs what the workers need)")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        if citus:
            conn.execute("SET LOCAL citus.enable_ddl_propagation = off")
        schema = ensure_pgvector(conn)
        before: set[str] = set()
        if scalar(conn.execute("SELECT to_regclass('mrl.migrations')")) is not None:
            before = {r[0] for r in conn.execute("SELECT name FROM mrl.migrations")}
        plpython = ensure_plpython(conn)
        conn.execute(build_script(schema, plpython, None if plpython else ensure_dblink(conn)))
        after = [r[0] for r in conn.execute('SELECT name FROM mrl.migrations ORDER BY name COLLATE "C"')]
        if citus:
            conn.execute(node_script())
            workers = citus_workers(conn)
    if citus:
        base = dsn or conn.info.dsn
        for host, port in workers:
            try:
                with psycopg.connect(node_dsn(base, host, port)) as node:
                    node.execute("SET LOCAL citus.enable_ddl_propagation = off")
                    node.execute(node_script())
                    _iterative_scans(node)
            except psycopg.OperationalError as exc:
                raise PgmrlError(f"Citus worker {host}:{port} cannot be reached with the coordinator's credentials "
                                 f"({str(exc).strip().splitlines()[0]}): the schema is installed on the coordinator; "
                                 f"make the worker reachable and run `pgmrl install` again") from exc
    return [m for m in after if m not in before]


def installed_migrations(conn: psycopg.Connection) -> list[str]:
    if scalar(conn.execute("SELECT to_regclass('mrl.migrations')")) is None:
        return []
    return [r[0] for r in conn.execute('SELECT name FROM mrl.migrations ORDER BY name COLLATE "C"')]


def schema_problem(conn: psycopg.Connection) -> str | None:
    """None when the database holds the schema this code installs; else what is wrong and what to do (run
    `pgmrl install`, or upgrade pgmrl when the database is newer). Reads only what PUBLIC may read."""
    if scalar(conn.execute("SELECT to_regclass('mrl.migrations')")) is None:
        return "pgmrl is not installed in this database: run `pgmrl install`"
    recorded = {r[0]: r[1] for r in conn.execute("SELECT name, to_jsonb(m) ->> 'checksum' FROM mrl.migrations m")}
    known = dict(migrations())
    newer = sorted(set(recorded) - set(known))
    if newer:
        return (f"this database's pgmrl schema is newer than this pgmrl (migrations it does not know: "
                f"{', '.join(newer)}): upgrade pgmrl to the version that installed it (`pgmrl install` would not "
                f"downgrade it)")
    missing = sorted(set(known) - set(recorded), key=lambda n: n.encode())
    if missing:
        return (f"this database's pgmrl schema is older than this pgmrl (migrations not applied: "
                f"{', '.join(missing)}): run `pgmrl install` to upgrade it")
    for name, text in known.items():
        found = recorded[name]
        if found is not None and found != checksum(text) and found not in HISTORICAL_CHECKSUMS.get(name, ()):
            return (f"migration {name} in this database differs from this pgmrl's (recorded checksum {found}): it "
                    f"was installed by another build of pgmrl; install the matching pgmrl (`pgmrl install` refuses "
                    f"a changed migration)")
    row = None
    if scalar(conn.execute("SELECT to_regclass('mrl.install_record')")) is not None:
        row = conn.execute("SELECT functions_digest, pgmrl_version FROM mrl.install_record").fetchone()
    if row is None:
        return "this database's pgmrl functions were installed by an older pgmrl: run `pgmrl install` to upgrade them"
    if row[0] != functions_digest():
        return (f"this database's pgmrl functions are not this pgmrl's (installed by pgmrl {row[1]}, other function "
                f"files): run `pgmrl install` with this pgmrl to bring them up to date (or, if the database's are "
                f"newer, upgrade pgmrl)")
    return None
