"""Upgrades from the real install scripts of earlier landed versions (tests/data/legacy, see its README): each is
installed in a fresh database, given an embedding set with stored vectors and queued work through that version's own
SQL API, upgraded by today's `pgmrl install`, and compared with a fresh install. Also: frozen migrations (checksums)
and the schema version check."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path

import psycopg
import pytest

from conftest import with_db
from helpers import check_invariant, login_dsn, make_docs_table, pending
from pgmrl import schema
from pgmrl.client import Client

DATA = Path(__file__).resolve().parent / "data"
LEGACY = DATA / "legacy"
MIGRATIONS_DIR = Path(schema.__file__).resolve().parent / "sql" / "migrations"
VERSIONS = ["f74a3b3", "6df6e11", "dfa4366", "fe255e2", "83b0cf1"]
SCHEMAS = ["mrl", "mrl_internal", "mrl_data", "mrl_words"]
N_STORED, N_ROWS, UPDATED = 30, 60, 5  # rows 1..30 get vectors before the upgrade; 31..60 and row 5 are queued


# -- the catalog of pgmrl's objects ---------------------------------------------------------------------------------
def _acl(col: str) -> str:
    return f"(SELECT array_agg(x::text ORDER BY x::text) FROM unnest({col}) x)::text"  # order-independent


def catalog(conn, sets: bool = True) -> dict[str, list[tuple]]:
    """Everything pgmrl owns in a database, as comparable text without OIDs: schemas; tables, views and sequences
    with their columns (types, defaults, identity), constraints, indexes, owners, grants, row-level security and
    comments; functions by identity arguments with their full definitions (language, volatility, security, config),
    grants and comments; types; triggers (on pgmrl's tables, and on any table calling a pgmrl function); policies;
    default privileges; event triggers. With sets=False the per-set objects (mrl_data's and mrl_words' tables, triggers on sources)
    are left out. The OIDs of tables outside pgmrl's schemas (sources, e.g. in policies) are written as names."""
    nsp = "n.nspname = ANY(%(schemas)s)"
    rel = "" if sets else "AND n.nspname NOT IN ('mrl_data', 'mrl_words')"
    queries = {
        "schemas": f"""SELECT n.nspname, pg_get_userbyid(n.nspowner), {_acl('n.nspacl')}, obj_description(n.oid, 'pg_namespace')
                         FROM pg_namespace n WHERE {nsp}""",
        "relations": f"""SELECT n.nspname, c.relname, c.relkind, c.relpersistence, {_acl('c.relacl')}, c.relrowsecurity,
                                c.relforcerowsecurity, c.reloptions::text, obj_description(c.oid, 'pg_class'),
                                CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
                                pg_get_userbyid(c.relowner), c.relispartition, c.relhassubclass
                           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE {nsp} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') {rel}""",
        "columns": f"""SELECT n.nspname, c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
                              a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
                              a.attcollation::regcollation::text, {_acl('a.attacl')}, col_description(c.oid, a.attnum)
                         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                        WHERE {nsp} AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f') {rel}""",
        "constraints": f"""SELECT n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid),
                                  k.condeferrable, k.condeferred, k.convalidated
                             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {nsp} {rel}""",
        "indexes": f"""SELECT n.nspname, c.relname, i.relname, pg_get_indexdef(i.oid)
                         FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
                         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {nsp} {rel}""",
        "sequences": f"""SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmax,
                                s.seqmin, s.seqcache, s.seqcycle,
                                (SELECT d.refobjid::regclass::text || '.' || a.attname FROM pg_depend d
                                   JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
                           FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
                           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {nsp} {rel}""",
        "functions": f"""SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind,
                                CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END, {_acl('p.proacl')},
                                obj_description(p.oid, 'pg_proc'), pg_get_userbyid(p.proowner)
                           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {nsp}""",
        "types": f"""SELECT n.nspname, t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod),
                            (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)::text
                       FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                      WHERE {nsp} AND (t.typtype IN ('d', 'e', 'r', 'm')
                            OR t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')""",
        "triggers": f"""SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
                          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                          JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
                         WHERE NOT t.tgisinternal
                           AND ({nsp} {rel} OR %(sets)s AND pn.nspname = ANY(%(schemas)s))""",
        "policies": f"""SELECT n.nspname, c.relname, p.polname, p.polcmd, p.polpermissive,
                               (SELECT array_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END ORDER BY 1)
                                  FROM unnest(p.polroles) r)::text,
                               pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
                          FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE {nsp} {rel}""",
        "default_acl": f"""SELECT pg_get_userbyid(d.defaclrole), n.nspname, d.defaclobjtype, {_acl('d.defaclacl')}
                             FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace WHERE {nsp}""",
        "event_triggers": """SELECT e.evtname, e.evtevent, e.evtfoid::regproc::text, e.evttags::text
                               FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid
                              WHERE p.pronamespace::regnamespace::text = ANY(%(schemas)s)""",
    }
    outside = {str(oid): f"<{name}>" for oid, name in conn.execute(
        "SELECT c.oid, c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname <> ALL(%(schemas)s) "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')", {"schemas": SCHEMAS})}

    def named(v):
        if isinstance(v, str) and outside:
            return re.sub(r"\b(\d{4,})\b", lambda m: outside.get(m.group(1), m.group(1)), v)
        return v

    args = {"schemas": SCHEMAS, "sets": sets}
    return {kind: sorted((tuple(named(v) for v in row) for row in conn.execute(q, args).fetchall()), key=repr)
            for kind, q in queries.items()}


def catalog_diff(a: dict, b: dict, names: tuple[str, str] = ("fresh", "upgraded")) -> list[str]:
    """One line per object that is not the same on both sides."""
    out = []
    for kind in a:
        sa, sb = set(a[kind]), set(b[kind])
        out += [f"{kind}: only in {names[0]}: {row}" for row in sorted(sa - sb, key=repr)]
        out += [f"{kind}: only in {names[1]}: {row}" for row in sorted(sb - sa, key=repr)]
    return out


# -- fixtures -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def records():
    with open(DATA / "debian-60.jsonl", encoding="utf-8") as f:
        out = [json.loads(line) for line in f]
    assert len(out) >= N_ROWS
    return out[:N_ROWS]


@pytest.fixture
def empty_db(server_dsn):
    """A fresh empty database (no pgvector, no pgmrl), dropped after the test."""
    name = "pgmrl_upgrade_test"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    yield with_db(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def install_legacy(conn, version: str) -> None:
    """Installs `version`'s own install script, the plpython3u variant where the server has plpython3u (as that
    version's `pgmrl install` would have)."""
    conn.execute("CREATE EXTENSION vector")
    script = LEGACY / f"{version}.sql"
    if (LEGACY / f"{version}-plpython.sql").exists() and conn.execute(
            "SELECT FROM pg_available_extensions WHERE name = 'plpython3u'").fetchone():
        conn.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")
        script = LEGACY / f"{version}-plpython.sql"
    conn.execute(script.read_text(encoding="utf-8"))


def vector_text(v) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def insert_rows(conn, records, start: int) -> None:
    """Rows start+1.. of the docs table, one statement each (as an application writes them)."""
    for i, r in enumerate(records, start=start):
        conn.execute("INSERT INTO docs (id, package, summary, body) VALUES (%s, %s, %s, %s)",
                     (i + 1, r["id"], r["query"], r["doc"]))


def create_set_sql() -> str:
    # the positional form every version accepts: (name, slug, source, text_column, config, truncate_dim)
    return "SELECT mrl.create_embedding_set('Docs', 'docs', 'docs'::regclass, 'body', 'all-minilm-l6-v2', 128)"


def searches(conn, queries) -> list[list[tuple[str, float]]]:
    return [[(i, round(d, 5)) for i, d in conn.execute(
        "SELECT id, distance FROM mrl.search('docs', %s::vector, 5, 'exact')", (vector_text(q),))] for q in queries]


# -- the upgrade of each landed version -----------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_a_landed_version_upgrades_to_a_fresh_install(version, empty_db, dsn, records, embedder):
    docs = embedder.encode([r["doc"] for r in records], kind="document")
    queries = embedder.encode([r["query"] for r in records[:4]], kind="query")

    # 1. The old version, with a set whose first rows have vectors and whose other rows wait in its queue.
    with psycopg.connect(empty_db, autocommit=True) as conn:
        install_legacy(conn, version)
        make_docs_table(conn, records[:N_STORED])
        conn.execute(create_set_sql())  # queues rows 1..30 (backfill)
        with conn.transaction():  # store their vectors as that version's worker did, and clear its queue
            for i in range(N_STORED):
                conn.execute("INSERT INTO mrl_data.docs (id, embedding, content_hash) "
                             "SELECT id, %s::vector, md5(body) FROM docs WHERE id = %s", (vector_text(docs[i]), i + 1))
            conn.execute("DELETE FROM mrl.queue")
            if conn.execute("SELECT to_regclass('mrl.queue_intake')").fetchone()[0]:
                conn.execute("DELETE FROM mrl.queue_intake")
        insert_rows(conn, records[N_STORED:], N_STORED)  # queued by the old triggers
        conn.execute("UPDATE docs SET body = body || ' (revised)' WHERE id = %s", (UPDATED,))  # queued too
        queued_before = conn.execute("SELECT count(*) FROM mrl.queue").fetchone()[0]
        if conn.execute("SELECT to_regclass('mrl.queue_intake')").fetchone()[0]:
            queued_before += conn.execute("SELECT coalesce(sum(cardinality(ids)), 0) FROM mrl.queue_intake").fetchone()[0]
        assert queued_before == N_ROWS - N_STORED + 1
        vectors_before = conn.execute("SELECT id, embedding::text, content_hash FROM mrl_data.docs "
                                      "WHERE id <> %s ORDER BY id", (UPDATED,)).fetchall()
        assert len(vectors_before) == N_STORED - 1
        found_before = searches(conn, queries)
        assert all(len(r) == 5 for r in found_before)
        problem = schema.schema_problem(conn)
        assert problem is not None and "pgmrl install" in problem, problem

    # 2. Today's install.
    with Client(empty_db) as c:
        applied = c.install()
    assert applied == [m for m, _ in schema.migrations() if m not in _legacy_migrations(version)] != []
    assert applied == sorted(applied, key=str.encode)

    with psycopg.connect(empty_db, autocommit=True) as conn, Client(dsn) as fresh:
        # (a) the schema is a fresh install's: the registry, and the set as today's API creates it (an upgraded set
        # keeps its single-precision full vectors: `pgmrl compact --full-type halfvec` converts them)
        make_docs_table(fresh.conn, records)
        fresh.conn.execute(create_set_sql().replace(", 128)", ", 128, full_type => 'vector')"))
        differences = catalog_diff(catalog(fresh.conn), catalog(conn))
        assert differences == [], "\n".join(differences)
        assert schema.schema_problem(conn) is None
        assert schema.installed_migrations(conn) == schema.installed_migrations(fresh.conn)
        registry = ("SELECT name, slug, source::text, pk_column, pk_type, text_expr, config, dims, truncate_dim, "
                    "coarse_method, on_create, on_update, mode, vectors_table::text, text_columns, replaces, "
                    "pg_get_userbyid(owner) FROM mrl.embedding_sets")
        assert conn.execute(registry).fetchall() == fresh.conn.execute(registry).fetchall()

        # (b) the stored vectors are kept
        assert conn.execute("SELECT id, embedding::text, content_hash FROM mrl_data.docs WHERE id <> %s ORDER BY id",
                            (UPDATED,)).fetchall() == vectors_before
        assert conn.execute("SELECT count(*) FROM mrl_data.docs WHERE NOT truncated").fetchone()[0] == N_STORED

        # (c) and so are the search results; the default search works too
        assert searches(conn, queries) == found_before
        for q in queries:
            assert len(conn.execute("SELECT * FROM mrl.search('docs', %s::vector, 5)", (vector_text(q),)).fetchall()) == 5
            assert len(conn.execute("SELECT * FROM mrl.two_stage_search('docs', %s::vector, 5)",
                                    (vector_text(q),)).fetchall()) == 5

        # (d) the old queue drains with today's worker; the stored rows are queued once for their full-text words
        # (009; or 010 for rows stored without them), which the worker writes without embedding them again
        # (009 queues every stored key, the revised one a second time; 010 only keys not queued yet)
        assert pending(conn, "docs") == N_ROWS - N_STORED + 1 + N_STORED - 1 + ("009_chunks_full_text.sql" in applied)
    from pgmrl.worker import Worker

    Worker(empty_db).run(once=True)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert check_invariant(conn, "docs", "body") == {"vectors": N_ROWS}
        assert conn.execute("SELECT count(*) FROM mrl.queue").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM mrl.queue_intake").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM mrl_data.docs v JOIN docs d USING (id) LEFT JOIN mrl_words.docs w USING (id) "
                            "WHERE w.tsv IS DISTINCT FROM to_tsvector('english', d.body)").fetchone()[0] == 0
        assert conn.execute("SELECT id, embedding::text, content_hash FROM mrl_data.docs WHERE id <> %s AND id <= %s "
                            "ORDER BY id", (UPDATED, N_STORED)).fetchall() == vectors_before
        # the revised row got a new vector; the new rows are searchable: each one's own vector finds it first
        assert conn.execute("SELECT content_hash = md5(d.body) FROM mrl_data.docs v JOIN docs d USING (id) "
                            "WHERE id = %s", (UPDATED,)).fetchone()[0]
        for i in (N_STORED + 1, N_ROWS):
            top = conn.execute("SELECT s.id FROM mrl_data.docs v, mrl.search('docs', v.embedding, 1) s "
                               "WHERE v.id = %s", (i,)).fetchone()[0]
            assert top == str(i)
        # and installing again changes nothing
    with Client(empty_db) as c:
        assert c.install() == []



def test_the_first_version_upgrades_around_a_users_view(empty_db):
    """001a rebuilds mrl.embedding_sets to put `mode` where today's 001 has it, unless objects outside pgmrl depend
    on the table: then it adds the column at the end, and the user's view stays."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        install_legacy(conn, "f74a3b3")
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO docs VALUES (1, 'a'), (2, 'b')")
        conn.execute(create_set_sql())
        conn.execute("CREATE VIEW my_sets AS SELECT id, slug FROM mrl.embedding_sets")
    with Client(empty_db) as c:
        assert "001a_repair_early_001.sql" in c.install()
        conn = c.conn
        assert conn.execute("SELECT * FROM my_sets").fetchall() == [(1, "docs")]
        assert conn.execute("SELECT mode FROM mrl.embedding_sets").fetchall() == [("async",)]
        cols = [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'mrl.embedding_sets'::regclass "
                                           "AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
        assert cols.index("mode") == cols.index("created_at") + 1  # the table was kept: mode after 001's columns
        assert schema.schema_problem(conn) is None
        assert pending(conn, "docs") == 2

def test_an_upgrade_never_runs_a_set_owners_code(empty_db, server_dsn):
    """Migration 010 reads every vectors table as the installer (to move its words). A set administrator's partial
    index calling its own function would run with the installer's privileges while that read is planned; a view on
    the moved column would stop the whole upgrade. Both sets keep their words where they are, with a warning; the
    other sets are upgraded, and the administrator gains nothing."""
    mal, password = f"mal_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(empty_db, autocommit=True) as conn:
        install_legacy(conn, "83b0cf1")
        conn.execute(f"CREATE ROLE {mal} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT pgmrl_admin TO {mal}")
        conn.execute(f"CREATE SCHEMA {mal} AUTHORIZATION {mal}")
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO docs VALUES (1, 'alpha'), (2, 'beta')")
        conn.execute(create_set_sql())
    try:
        with psycopg.connect(login_dsn(empty_db, mal, password), autocommit=True) as m:
            for t in ("a", "b"):
                m.execute(f"CREATE TABLE {mal}.{t} (id int PRIMARY KEY, body text)")
                m.execute(f"INSERT INTO {mal}.{t} VALUES (1, 'x')")
                m.execute(f"SELECT mrl.create_embedding_set('{t}', 'mal_{t}', '{mal}.{t}'::regclass, 'body', "
                          "'all-minilm-l6-v2', 128)")
            m.execute(f"CREATE FUNCTION {mal}.escalate() RETURNS void LANGUAGE plpgsql AS "
                      f"$$BEGIN EXECUTE 'ALTER ROLE {mal} SUPERUSER'; END$$")
            m.execute(f"CREATE FUNCTION {mal}.evil() RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$BEGIN "
                      f"IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN PERFORM {mal}.escalate(); "
                      "END IF; RETURN true; END$$")
            m.execute(f"CREATE INDEX mal_evil ON mrl_data.mal_a (id) WHERE {mal}.evil()")
            m.execute(f"CREATE VIEW {mal}.words AS SELECT tsv FROM mrl_data.mal_b")
        with Client(empty_db) as c:
            warnings: list[str] = []
            c.conn.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
            assert "010_compact_storage.sql" in c.install()
            conn = c.conn
            assert not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (mal,)).fetchone()[0]
            assert any('"mal_a" stay in' in w for w in warnings) and any('"mal_b" stay in' in w for w in warnings), warnings
            rows = dict(conn.execute("SELECT slug, words_table::text FROM mrl.embedding_sets").fetchall())
            assert rows == {"docs": "mrl_words.docs", "mal_a": None, "mal_b": None}
            assert schema.schema_problem(conn) is None
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as su:
            su.execute("DROP DATABASE IF EXISTS pgmrl_upgrade_test WITH (FORCE)")
            su.execute(f"DROP ROLE IF EXISTS {mal}")


# -- frozen migrations ----------------------------------------------------------------------------------------------
def test_migrations_match_their_recorded_checksums():
    """A landed migration is never edited: sql/migrations/CHECKSUMS holds each one's sha256 (`sha256sum -c`)."""
    listed = {}
    for line in (MIGRATIONS_DIR / "CHECKSUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    files = dict(schema.migrations())
    assert sorted(listed) == sorted(files), "CHECKSUMS must list every migration, and only those"
    for name, text in files.items():
        assert hashlib.sha256((MIGRATIONS_DIR / name).read_bytes()).hexdigest() == schema.checksum(text)
        assert schema.checksum(text) == listed[name], (
            f"{name} differs from the checksum in sql/migrations/CHECKSUMS: a landed migration must not be edited; "
            f"put the change in a new migration")


def _legacy_migrations(version: str) -> dict[str, str]:
    script = (LEGACY / f"{version}.sql").read_text(encoding="utf-8")
    # (the script's shape changed once: `IF NOT EXISTS (... WHERE name = ...) THEN`, later `... WHERE name = ...;
    # IF NOT FOUND THEN`, with the checksum recorded)
    found = re.findall(r"WHERE name = '([^']+)'(?:\) THEN|;\nIF NOT FOUND THEN)\nEXECUTE \$pgmrl_migration\$\n(.*?)"
                       r"\n\$pgmrl_migration\$;", script, flags=re.DOTALL)
    return {name: body.replace('"public".', "@vec@.") for name, body in found}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_landed_migration_text_is_known(version):
    """What each landed version recorded is today's text or one listed in HISTORICAL_CHECKSUMS (so an install never
    refuses a database that pgmrl itself installed)."""
    applied = _legacy_migrations(version)
    assert "001_schema.sql" in applied
    current = dict(schema.migrations())
    for name, body in applied.items():
        assert schema.checksum(body) in (schema.checksum(current[name]), *schema.HISTORICAL_CHECKSUMS.get(name, ())), name


def test_a_changed_migration_is_refused(client):
    conn = client.conn
    recorded = dict(conn.execute("SELECT name, checksum FROM mrl.migrations").fetchall())
    assert recorded == {name: schema.checksum(text) for name, text in schema.migrations()}
    conn.execute("UPDATE mrl.migrations SET checksum = repeat('0', 64) WHERE name = '002_dead_letters_truncation.sql'")
    with pytest.raises(psycopg.Error, match="migration 002_dead_letters_truncation.sql was changed after it was applied"):
        client.install()
    # the printed script (psql) refuses it the same way, and the install left nothing half done
    with psycopg.connect(client.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.Error, match="was changed after it was applied"):
            conn.execute(schema.build_script("public"))
        assert conn.execute("SELECT checksum FROM mrl.migrations WHERE name = '002_dead_letters_truncation.sql'"
                            ).fetchone()[0] == "0" * 64
        assert "002_dead_letters_truncation.sql" in schema.schema_problem(conn)


def test_checksums_of_old_databases_are_filled_in_and_known_edits_accepted(client):
    conn = client.conn
    conn.execute("UPDATE mrl.migrations SET checksum = NULL")  # as a pgmrl that kept none left them
    old_001 = schema.HISTORICAL_CHECKSUMS["001_schema.sql"][0]
    conn.execute("UPDATE mrl.migrations SET checksum = %s WHERE name = '001_schema.sql'", (old_001,))
    assert client.install() == []
    recorded = dict(client.conn.execute("SELECT name, checksum FROM mrl.migrations").fetchall())
    expected = {name: schema.checksum(text) for name, text in schema.migrations()}
    assert recorded == {**expected, "001_schema.sql": old_001}  # what was applied stays recorded
    assert schema.schema_problem(client.conn) is None


# -- the schema version check ---------------------------------------------------------------------------------------
def test_schema_problem(client, empty_db):
    conn = client.conn
    assert schema.schema_problem(conn) is None

    with psycopg.connect(empty_db, autocommit=True) as bare:
        assert "not installed" in schema.schema_problem(bare) and "pgmrl install" in schema.schema_problem(bare)

    conn.execute("UPDATE mrl.install_record SET functions_digest = 'x'")
    problem = schema.schema_problem(conn)
    assert "functions" in problem and "`pgmrl install`" in problem

    conn.execute("DELETE FROM mrl.migrations WHERE name = '006_queue_intake.sql'")
    problem = schema.schema_problem(conn)
    assert "older" in problem and "006_queue_intake.sql" in problem and "`pgmrl install`" in problem

    conn.execute("INSERT INTO mrl.migrations (name) VALUES ('006_queue_intake.sql'), ('999_from_the_future.sql')")
    problem = schema.schema_problem(conn)
    assert "newer" in problem and "999_from_the_future.sql" in problem and "upgrade pgmrl" in problem

    conn.execute("DELETE FROM mrl.migrations WHERE name = '999_from_the_future.sql'")
    client.install()  # puts the digest back (and checksums the re-inserted row)
    assert schema.schema_problem(client.conn) is None


def test_schema_problem_reads_only_what_any_login_may(client):
    """The worker's login checks it: mrl.migrations and mrl.install_record are readable by PUBLIC."""
    conn = client.conn
    conn.execute("CREATE ROLE pgmrl_nobody_upgrade NOLOGIN")
    try:
        with conn.transaction():
            conn.execute("SET LOCAL ROLE pgmrl_nobody_upgrade")
            assert schema.schema_problem(conn) is None
    finally:
        conn.execute("DROP ROLE pgmrl_nobody_upgrade")


def test_worker_and_cli_say_to_run_install_on_an_older_schema(client, dsn):
    """A database whose functions an older pgmrl installed: `pgmrl serve --once` and the CLI refuse with what to do,
    instead of failing on a missing function; `pgmrl install` brings it back."""
    from click.testing import CliRunner

    from pgmrl.cli import cli
    from pgmrl.errors import SchemaMismatch
    from pgmrl.worker import Worker

    client.conn.execute("UPDATE mrl.install_record SET functions_digest = md5('older'), pgmrl_version = '0.0.9'")
    with pytest.raises(SchemaMismatch, match="run `pgmrl install`"):
        Worker(dsn).run(once=True)
    out = CliRunner().invoke(cli, ["status", "--dsn", dsn])
    assert out.exit_code == 1 and "installed by pgmrl 0.0.9" in out.output and "pgmrl install" in out.output, out.output
    out = CliRunner().invoke(cli, ["install", "--dsn", dsn])
    assert out.exit_code == 0, out.output
    assert CliRunner().invoke(cli, ["status", "--dsn", dsn]).exit_code == 0
    Worker(dsn).run(once=True)
