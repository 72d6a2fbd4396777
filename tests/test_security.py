"""A database shared by many roles: every attack here is run by an ordinary role (created by the test) and must be
refused with a clear SQLSTATE, leave no role with more privileges, write no file, and leave the data and the
pipeline as they were (the invariant holds and the least-privileged worker drains the queue).

Roles: `mal` is a set administrator (member of pgmrl_admin) and owns schema mal; `alice` owns schema alice (types,
casts, tables); `bob` has no privilege on public.docs; `writer` may read and write public.docs; `worker` is a
login in pgmrl_worker and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from helpers import check_invariant, login_dsn, pending
from pgmrl.worker import Worker

DATA = Path(__file__).parent / "data" / "debian-60.jsonl"
ROLE_NAMES = ("mal", "alice", "bob", "writer", "worker", "reader")


class Roles(dict):
    """name -> DSN of a login role; .sql(name) opens an autocommit connection as that role."""

    def sql(self, name: str) -> psycopg.Connection:
        return psycopg.connect(self[name], autocommit=True)

    def real(self, name: str) -> str:
        return conninfo_to_dict(self[name])["user"]


@pytest.fixture
def roles(dsn, server_dsn):
    suffix = uuid.uuid4().hex[:8]
    created = Roles()
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for name in ROLE_NAMES:
            role, password = f"{name}_{suffix}", uuid.uuid4().hex
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
            created[name] = login_dsn(dsn, role, password)
        conn.execute(f"GRANT pgmrl_admin TO mal_{suffix}")
        conn.execute(f"GRANT pgmrl_worker TO worker_{suffix}")
    yield created
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {conninfo_to_dict(dsn)['dbname']} WITH (FORCE)")
        for name in ROLE_NAMES:
            conn.execute(f"DROP ROLE IF EXISTS {name}_{suffix}")


def records(n: int = 60) -> list[dict]:
    with open(DATA, encoding="utf-8") as f:
        return [json.loads(line) for line in f][:n]


@pytest.fixture
def shared(client, roles, embedder):
    """public.docs (60 real descriptions and a secret column) with the set 'docs', embedded by the least-privileged
    worker; public.secrets; schemas mal and alice owned by those roles."""
    conn = client.conn
    r = roles.real
    conn.execute("CREATE TABLE public.docs (id bigint PRIMARY KEY, body text, secret text)")
    conn.cursor().executemany("INSERT INTO public.docs VALUES (%s, %s, %s)",
                              [(i + 1, rec["doc"], f"secret-{i}") for i, rec in enumerate(records())])
    conn.execute("CREATE TABLE public.secrets (id int PRIMARY KEY, s text)")
    conn.execute("INSERT INTO public.secrets VALUES (1, 'the launch code')")
    conn.execute(f"GRANT SELECT, INSERT, UPDATE ON public.docs TO {r('writer')}")
    conn.execute(f"GRANT SELECT ON public.docs TO {r('reader')}")
    conn.execute(f"CREATE SCHEMA mal AUTHORIZATION {r('mal')}")
    conn.execute(f"CREATE SCHEMA alice AUTHORIZATION {r('alice')}")
    client.create_set("Docs", "docs", "public.docs", "body", truncate_dim=32)
    Worker(roles["worker"]).run(once=True)
    client.refit("docs")
    check_invariant(conn, "docs", "body")
    return client


def superusers(conn, roles) -> list[str]:
    names = [roles.real(n) for n in ROLE_NAMES]
    return [r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY (%s) AND rolsuper", (names,))]


def refused(conn, sql: str, sqlstate: str, params=None, match: str = "") -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql, params)
    assert info.value.sqlstate == sqlstate, (info.value.sqlstate, str(info.value))
    assert match in str(info.value)
    return info.value


def drained(shared, roles, text_expr: str = "body", table: str = "public.docs", slug: str = "docs",
            cli: bool = False) -> None:
    """The pipeline works: the least-privileged worker drains the queue (with cli: the real `pgmrl serve --once`
    command, which must exit 0), and the invariant holds."""
    if cli:
        out = subprocess.run([sys.executable, "-m", "pgmrl.cli", "serve", "--once", "--max-attempts", "1",
                              "--dsn", roles["worker"]], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert out.returncode == 0, out.stderr[-2000:]
        assert "0 failed attempt(s)" in out.stderr, out.stderr[-2000:]
    else:
        w = Worker(roles["worker"], max_attempts=1)
        w.run(once=True)
        assert w.failed == 0
    check_invariant(shared.conn, slug, text_expr, table)


def dead_letters(conn, roles, slug: str) -> list[str]:
    """Runs the least-privileged worker once (one attempt per item) and returns the errors of the set's dead letters."""
    Worker(roles["worker"], max_attempts=1).run(once=True)  # returns: whatever failed is dead-lettered
    return [r[0] for r in conn.execute("SELECT last_error FROM mrl.failed_items WHERE slug = %s", (slug,))]


# -- 1. text expressions: what PostgreSQL executes is checked, not the text ------------------------------------
BYPASSES = [
    ("quoted name", "\"pg_read_file\"('/etc/hostname')"),
    ("unicode-escaped name", "U&\"\\0070g_read_file\"('/etc/hostname')"),
    ("query_to_xml", "\"query_to_xml\"('select s from public.secrets', true, true, '')::text"),
    ("large object export", "\"lo_export\"(\"lo_from_bytea\"(0, convert_to(body, 'UTF8')), '/tmp/pgmrl-pwned-{tag}')::text"),
    ("sleep for every writer", "\"pg_sleep\"(0.5)::text || body"),
    ("schema-qualified with spaces", "mal . lower(body)"),
    ("role's own operator", "body OPERATOR(mal.###) 'x'"),
    ("role's own domain", "(body::mal.dtext)::text"),
    ("subquery", "body || (SELECT string_agg(s, ',') FROM public.secrets)"),
    ("set_config", "set_config('role', 'postgres', false) || body"),
    ("current_user", "current_user || body"),
    ("aggregate", "string_agg(body, ',')"),
]


@pytest.fixture
def mal_table(shared, roles):
    """mal.t, owned by mal, with functions, an operator and a domain of mal's that escalate when run by a superuser."""
    with roles.sql("mal") as m:
        m.execute("CREATE TABLE mal.t (id int PRIMARY KEY, body text)")
        m.execute("INSERT INTO mal.t SELECT g, 'text ' || g FROM generate_series(1, 5) g")
        m.execute(f"CREATE FUNCTION mal.lower(text) RETURNS text LANGUAGE plpgsql AS "
                  f"$$BEGIN ALTER ROLE {roles.real('mal')} SUPERUSER; RETURN $1; END$$")
        m.execute("CREATE FUNCTION mal.cat(text, text) RETURNS text LANGUAGE sql AS $$SELECT $1 || $2$$")
        m.execute("CREATE OPERATOR mal.### (LEFTARG = text, RIGHTARG = text, FUNCTION = mal.cat)")
        m.execute("CREATE DOMAIN mal.dtext AS text CHECK (mal.lower(VALUE) IS NOT NULL)")
    return "mal.t"


@pytest.mark.parametrize("case,expr", BYPASSES, ids=[b[0] for b in BYPASSES])
def test_text_expression_bypasses_are_refused(shared, roles, mal_table, case, expr):
    tag = uuid.uuid4().hex[:8]
    expr = expr.replace("{tag}", tag)
    conn = shared.conn
    before = conn.execute("SELECT count(*) FROM mrl.embedding_sets").fetchone()[0]
    with roles.sql("mal") as m:  # a set administrator, over a table of its own
        err = refused(m, "SELECT mrl.create_embedding_set('x', 'x', 'mal.t', %s)", "22023", (expr,))
        assert "not allowed" in str(err) or "not an allowed" in str(err) or "not valid" in str(err)
    # a superuser creating the same set over mal's table is refused the same way
    refused(conn, "SELECT mrl.create_embedding_set('y', 'y', 'mal.t', %s)", "22023", (expr,))
    assert conn.execute("SELECT count(*) FROM mrl.embedding_sets").fetchone()[0] == before
    assert superusers(conn, roles) == []
    assert not Path(f"/tmp/pgmrl-pwned-{tag}").exists()
    drained(shared, roles)


def test_the_registry_cannot_be_written_around_the_check(shared, roles, mal_table):
    """Writing mrl.embedding_sets directly (insert or update) re-validates the text expression as the writer."""
    conn = shared.conn
    vt = conn.execute("SELECT vectors_table FROM mrl.embedding_sets WHERE slug = 'docs'").fetchone()[0]
    with roles.sql("mal") as m:
        # the stored form is PostgreSQL's own deparse, not the caller's string
        m.execute("SELECT mrl.create_embedding_set('ok', 'ok', 'mal.t', 'lower(  body ) || ''  x''')")
        expr, columns = m.execute("SELECT text_expr, text_columns FROM mrl.embedding_sets WHERE slug = 'ok'").fetchone()
        assert (expr.replace("mrl_src.", ""), columns) == ("(lower(body) || '  x'::text)", ["body"])  # PG < 16 qualifies
        refused(m, "UPDATE mrl.embedding_sets SET text_expr = 'mal.lower(body)' WHERE slug = 'ok'", "22023",
                match="not an allowed")
        # another role's set is invisible to it: nothing to update
        assert m.execute("UPDATE mrl.embedding_sets SET text_expr = 'secret' WHERE slug = 'docs'").rowcount == 0
        m.execute("CREATE TABLE mal.vt (id int)")
        refused(m, "INSERT INTO mrl.embedding_sets (name, slug, source, pk_column, pk_type, text_expr, config, dims, "
                   "coarse_method, vectors_table) VALUES ('x', 'x', 'mal.t', 'id', 'integer', 'mal.lower(body)', "
                   "'all-minilm-l6-v2', 384, 'none', 'mal.vt')", "22023")
        # pointing a set at another table (a queue the worker deletes from) is refused
        refused(m, "UPDATE mrl.embedding_sets SET vectors_table = 'mrl.queue' WHERE slug = 'ok'", "42501")
        # so is pointing its words at another set's words (the worker would write them, hybrid search read them) or
        # at any other table (which dropping the set would drop), even after dropping its own
        m.execute("SELECT mrl.create_embedding_set('w2', 'w2', 'mal.t', 'body')")
        refused(m, "UPDATE mrl.embedding_sets SET words_table = 'mrl_words.docs' WHERE slug = 'w2'", "42501")
        m.execute("DROP TABLE mrl_words.w2")
        refused(m, "UPDATE mrl.embedding_sets SET words_table = 'public.secrets' WHERE slug = 'w2'", "42501")
        m.execute("CREATE TABLE mrl_words.w2 (id int)")  # its own table in mrl_words, but not the set's words table
        refused(m, "UPDATE mrl.embedding_sets SET words_table = 'mrl_words.w2' WHERE slug = 'w2'", "42501")
    expr, table = conn.execute("SELECT text_expr, vectors_table::text FROM mrl.embedding_sets WHERE slug = 'docs'").fetchone()
    assert (expr.replace("mrl_src.", ""), table) == ("body", str(vt))
    assert superusers(conn, roles) == []
    # the set whose words table mal replaced is still removable (by a superuser too), and drops only its vectors
    conn.execute("SELECT mrl.drop_embedding_set('w2')")
    assert conn.execute("SELECT to_regclass('public.secrets') IS NOT NULL AND to_regclass('mrl_words.docs') IS NOT NULL "
                        "AND to_regclass('mrl_words.w2') IS NOT NULL").fetchone()[0]
    drained(shared, roles, "lower(body) || '  x'", "mal.t", "ok")


# -- 2. a table owner's types and casts never run as the set's creator or the worker ------------------------------
@pytest.fixture
def alice_table(shared, roles):
    """alice.t with a text column, and alice's composite type whose cast to text records who ran it."""
    with roles.sql("alice") as a:
        a.execute("CREATE TABLE alice.ran (who text)")
        a.execute("GRANT INSERT ON alice.ran TO PUBLIC")
        a.execute("CREATE TYPE alice.ct AS (a text)")
        a.execute("CREATE FUNCTION alice.evil(alice.ct) RETURNS text LANGUAGE plpgsql AS "
                  "$$BEGIN INSERT INTO alice.ran VALUES (current_user); RETURN ($1).a; END$$")
        a.execute("GRANT USAGE ON SCHEMA alice TO PUBLIC")
        a.execute("GRANT EXECUTE ON FUNCTION alice.evil(alice.ct) TO PUBLIC")
        a.execute("CREATE CAST (alice.ct AS text) WITH FUNCTION alice.evil(alice.ct)")
        a.execute("CREATE TABLE alice.t (id bigint PRIMARY KEY, body text, payload alice.ct)")
        a.execute("INSERT INTO alice.t SELECT g, 'package ' || g, row('p' || g)::alice.ct FROM generate_series(1, 8) g")
        a.execute("CREATE TABLE alice.k (id alice.ct PRIMARY KEY, body text)")
    return "alice.t"


def ran(conn) -> list:
    return conn.execute("SELECT who FROM alice.ran").fetchall()


def test_a_column_of_a_roles_type_is_refused(shared, roles, alice_table):
    conn = shared.conn
    refused(conn, "SELECT mrl.create_embedding_set('a', 'a', 'alice.t', 'payload')", "42804", match="not built in")
    refused(conn, "SELECT mrl.create_embedding_set('a', 'a', 'alice.t', 'body || payload')", "42804")
    refused(conn, "SELECT mrl.create_embedding_set('a', 'a', 'alice.k', 'body')", "42804", match="primary key")
    assert ran(conn) == [] and superusers(conn, roles) == []


def test_a_type_changed_after_creation_is_refused_by_triggers_and_worker(shared, roles, alice_table):
    conn = shared.conn
    conn.execute("SELECT mrl.create_embedding_set('a', 'a', 'alice.t', 'body')")  # a superuser, over alice's table
    drained(shared, roles, "body", "alice.t", "a")
    conn.execute("INSERT INTO alice.t VALUES (100, 'queued before the change', NULL)")
    with roles.sql("alice") as a:  # the same name, now a column of alice's type
        a.execute("ALTER TABLE alice.t RENAME COLUMN body TO old_body")
        a.execute("ALTER TABLE alice.t ADD COLUMN body alice.ct")
        # the trigger refuses alice's own writes from now on
        refused(a, "INSERT INTO alice.t (id, body) VALUES (200, row('y'))", "42804", match="not built in")
    assert pending(conn, "a") == 1
    errors = dead_letters(conn, roles, "a")
    assert errors and all("not built in" in e for e in errors)
    assert ran(conn) == [] and superusers(conn, roles) == []
    check_invariant(conn, "docs", "body")


def test_alice_update_with_changed_type_fails(shared, roles, alice_table):
    conn = shared.conn
    conn.execute("SELECT mrl.create_embedding_set('a', 'a', 'alice.t', 'body')")
    with roles.sql("alice") as a:
        a.execute("ALTER TABLE alice.t ALTER COLUMN body TYPE alice.ct USING row(body)::alice.ct")
        refused(a, "UPDATE alice.t SET body = row('x')::alice.ct", "42804", match="not built in")
    assert ran(conn) == [] and superusers(conn, roles) == []


# -- 3. sidecar/REST: see test_http.py::test_tokens_map_to_roles -------------------------------------------------

# -- 4. any login cannot stop the pipeline -----------------------------------------------------------------------
def test_the_queue_is_reached_only_through_the_triggers(shared, roles):
    conn = shared.conn
    set_id = conn.execute("SELECT id FROM mrl.embedding_sets WHERE slug = 'docs'").fetchone()[0]
    for name in ("bob", "writer", "alice"):
        with roles.sql(name) as c:
            refused(c, "INSERT INTO mrl.queue_intake (set_id, ids) VALUES (%s, ARRAY['1', NULL])", "42501", (set_id,))
            refused(c, "INSERT INTO mrl.queue (set_id, id) VALUES (%s, '1')", "42501", (set_id,))
            refused(c, "SELECT nextval('mrl.queue_qid_seq')", "42501")
            refused(c, "UPDATE mrl.queue SET next_attempt_at = 'infinity'", "42501")
            refused(c, "INSERT INTO mrl.queue (set_id, id, dead, last_error) VALUES (%s, '1', true, 'forged')",
                    "42501", (set_id,))
            refused(c, "INSERT INTO mrl.embedding_sets (name, slug, source, pk_column, pk_type, text_expr, config, "
                       "dims, coarse_method, vectors_table) VALUES ('x','x','public.docs','id','bigint','body',"
                       "'all-minilm-l6-v2',384,'none','public.docs')", "42501")
            refused(c, "SELECT * FROM mrl_internal._fetch_texts(%s, ARRAY['1'])", "42501", (set_id,))
            refused(c, "SELECT mrl_internal._fail_items(ARRAY[1::bigint], 'x')", "42501")
    with roles.sql("alice") as a:  # a trigger on her own table that queues for someone else's set
        a.execute("CREATE TABLE alice.own (id int PRIMARY KEY, body text)")
        refused(a, f"CREATE TRIGGER t AFTER INSERT ON alice.own REFERENCING NEW TABLE AS mrl_new FOR EACH STATEMENT "
                   f"EXECUTE FUNCTION mrl_internal._queue_changes('{set_id}')", "42501")
    with roles.sql("mal") as m:  # even a set administrator, who may create the trigger, queues nothing with it
        m.execute("CREATE TABLE mal.own (id bigint PRIMARY KEY, body text)")
        m.execute(f"CREATE TRIGGER t AFTER INSERT ON mal.own REFERENCING NEW TABLE AS mrl_new FOR EACH STATEMENT "
                  f"EXECUTE FUNCTION mrl_internal._queue_changes('{set_id}')")
        refused(m, "INSERT INTO mal.own VALUES (1, 'x')", "42501", match="does not belong")
    with roles.sql("writer") as w:  # writers still queue their changes, through the trigger
        w.execute("INSERT INTO public.docs VALUES (1000, 'a new package that compresses files', 's')")
        w.execute("UPDATE public.docs SET body = body || ' (updated)' WHERE id <= 3")
    assert conn.execute("SELECT count(*) FROM mrl.failed_items").fetchone()[0] == 0
    drained(shared, roles, cli=True)
    assert superusers(conn, roles) == []


def test_the_worker_survives_bad_queue_content(shared, roles):
    """Even content only the schema owner could write (a key that is not a key) is dead-lettered, not fatal."""
    conn = shared.conn
    set_id = conn.execute("SELECT id FROM mrl.embedding_sets WHERE slug = 'docs'").fetchone()[0]
    conn.execute("INSERT INTO mrl.queue (set_id, id) VALUES (%s, 'not-a-number'), (999999, '1')", (set_id,))
    refused(conn, "INSERT INTO mrl.queue_intake (set_id, ids) VALUES (%s, ARRAY['1', NULL])", "23514", (set_id,))
    conn.execute("UPDATE public.docs SET body = 'changed text' WHERE id = 7")
    w = Worker(roles["worker"], max_attempts=1)
    w.run(once=True)
    assert w.failed == 1
    assert conn.execute("SELECT count(*) FROM mrl.queue WHERE NOT dead AND set_id = %s", (set_id,)).fetchone()[0] == 0
    vt_hash = conn.execute("SELECT content_hash FROM mrl_data.docs WHERE id = 7").fetchone()[0]
    assert vt_hash == conn.execute("SELECT md5('changed text')").fetchone()[0]


# -- registry visibility -----------------------------------------------------------------------------------------
def test_roles_see_only_the_sets_they_may_read(shared, roles, embedder):
    conn = shared.conn
    q = embedder.encode(["tool to compress files"], kind="query")[0]
    expected = [r[0] for r in conn.execute("SELECT id FROM mrl.two_stage_search('docs', %s, k => 5)", (q,))]
    with roles.sql("bob") as b:
        for view in ("mrl.embedding_sets", "mrl.rotation_components", "mrl.queue_status", "mrl.failed_items"):
            assert b.execute(f"SELECT count(*) FROM {view}").fetchone()[0] == 0, view
        assert b.execute("SELECT count(*) FROM mrl_data.docs").fetchone()[0] == 0
        refused(b, "SELECT * FROM mrl.two_stage_search('docs', %s::vector, k => 5)", "42704", (str(q.tolist()),))
        refused(b, "SELECT * FROM mrl.settings", "42501")
    with roles.sql("reader") as r:
        assert r.execute("SELECT count(*) FROM mrl.embedding_sets").fetchone()[0] == 1
        assert r.execute("SELECT count(*) FROM mrl.rotation_components").fetchone()[0] == 32
        got = [row[0] for row in r.execute("SELECT id FROM mrl.two_stage_search('docs', %s::vector, k => 5)",
                                           (str(q.tolist()),))]
        assert got == expected
        refused(r, "SELECT mrl.drop_embedding_set('docs')", "42501")


def test_public_api_is_described_and_internals_are_closed(shared, roles):
    conn = shared.conn
    undescribed = conn.execute("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'mrl'::regnamespace "
                               "AND obj_description(p.oid, 'pg_proc') IS NULL").fetchall()
    assert undescribed == []
    assert conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'mrl'::regnamespace AND proname LIKE '\\_%'")\
        .fetchone()[0] == 0
    bob = roles.real("bob")
    worker_only = ["mrl_internal._fetch_texts(int, text[])", "mrl_internal._expand_intake(int)",
                   "mrl_internal._store_rotation(int, vector[], double precision[], bigint)",
                   "mrl_internal._queue_changes()", "mrl_internal._sync_changes()"]
    for fn in worker_only:
        assert not conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (bob, fn)).fetchone()[0], fn
    definers = {r[0] for r in conn.execute("SELECT p.proname FROM pg_proc p WHERE p.prosecdef "
                                           "AND p.pronamespace IN ('mrl'::regnamespace, 'mrl_internal'::regnamespace)")}
    assert definers <= {"_queue_changes", "_sync_changes", "_http_embed"}
    # every function pins its search_path
    unpinned = conn.execute("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace IN "
                            "('mrl'::regnamespace, 'mrl_internal'::regnamespace) AND NOT coalesce(p.proconfig, '{}') "
                            "@> ARRAY['search_path=pg_catalog, pg_temp']").fetchall()
    assert unpinned == []


# -- 5. uncast query vectors ---------------------------------------------------------------------------------------
@pytest.fixture
def query(shared, embedder):
    q = embedder.encode(["tool to compress files"], kind="query")[0]
    typed = [r[0] for r in shared.conn.execute("SELECT id FROM mrl.two_stage_search('docs', %s, k => 5)", (q,))]
    return q, typed


def test_psycopg2_adapter(shared, query):
    import psycopg2
    from pgvector.psycopg2 import register_vector

    q, typed = query
    with psycopg2.connect(shared.dsn) as c:
        register_vector(c)
        cur = c.cursor()
        cur.execute("SELECT id FROM mrl.two_stage_search('docs', %s, k => 5)", (q,))  # sent as '[...]', uncast
        assert [r[0] for r in cur.fetchall()] == typed
        cur.execute("SELECT id FROM mrl.search('docs', %s, 5)", (q,))
        assert [r[0] for r in cur.fetchall()] == typed
    c.close()


def test_asyncpg_adapter(shared, query):
    import asyncpg
    from pgvector.asyncpg import register_vector

    q, typed = query

    p = conninfo_to_dict(shared.dsn)
    kwargs = {"host": p.get("host"), "port": int(p.get("port") or 5432), "user": p.get("user"),
              "password": p.get("password"), "database": p["dbname"]}

    async def run():
        c = await asyncpg.connect(**{k: v for k, v in kwargs.items() if v is not None})
        try:
            await register_vector(c)
            text_form = await c.fetch("SELECT id FROM mrl.two_stage_search('docs', $1, k => 5)", str(q.tolist()))
            cast = await c.fetch("SELECT id FROM mrl.two_stage_search('docs', $1::vector, k => 5)", q)
            # an ndarray for the uncast (text) parameter is refused by asyncpg before anything is sent
            with pytest.raises(asyncpg.exceptions.DataError, match="expected str"):
                await c.fetch("SELECT id FROM mrl.two_stage_search('docs', $1, k => 5)", q)
            return [r[0] for r in text_form], [r[0] for r in cast]
        finally:
            await c.close()

    text_form, cast = asyncio.run(run())
    assert text_form == typed and cast == typed


def test_sqlalchemy_adapter(shared, query):
    from pgvector.sqlalchemy import Vector
    from sqlalchemy import bindparam, create_engine, text

    q, typed = query
    params = conninfo_to_dict(shared.dsn)
    url = f"postgresql+psycopg2:///{params['dbname']}"
    connect_args = {k: v for k, v in params.items() if k != "dbname"}
    engine = create_engine(url, connect_args=connect_args)
    stmt = text("SELECT id FROM mrl.two_stage_search('docs', :q, k => 5)").bindparams(bindparam("q", type_=Vector(384)))
    with engine.connect() as c:
        assert [r[0] for r in c.execute(stmt, {"q": q})] == typed
    engine.dispose()


def test_other_vector_types_and_refusals(shared, query):
    q, typed = query
    conn = shared.conn
    lit = str(q.tolist())
    for cast in ("::halfvec", "::real[]", "::float8[]"):
        value = lit.replace("[", "{").replace("]", "}") if "[]" in cast else lit
        got = [r[0] for r in conn.execute(f"SELECT id FROM mrl.two_stage_search('docs', %s{cast}, k => 5)", (value,))]
        # halfvec rounds the query: the ranking must match on these well-separated results
        assert got == typed, cast
    got = [r[0] for r in conn.execute("SELECT id FROM mrl.search('docs', %s::text, 5)", (lit,))]
    assert got == typed  # a vector written as text is searched as that vector, never embedded as words
    quoted = "{" + ",".join(f'"{x!r}"' for x in q.tolist()) + "}"  # node-postgres' form of a plain JS array
    assert [r[0] for r in conn.execute("SELECT id FROM mrl.search('docs', %s::text, 5)", (quoted,))] == typed
    refused(conn, "SELECT * FROM mrl.search('docs', '[1, 2, 3]'::text)", "22000", match="3 dimensions")
    refused(conn, "SELECT * FROM mrl.search('docs', '[1, 2, ]'::text)", "22P02", match="looks like a vector")
    refused(conn, "SELECT mrl.embed('[0.1, 0.2]')", "22023", match="is a vector")
    zero = "[" + ",".join(["0"] * 384) + "]"
    refused(conn, "SELECT * FROM mrl.two_stage_search('docs', %s::vector)", "22023", (zero,), match="all zeros")


# -- 6. smaller holes -----------------------------------------------------------------------------------------
def test_large_k_and_coarse_k(client, embedder):
    conn = client.conn
    n = 1500
    conn.execute("CREATE TABLE big (id int PRIMARY KEY, body text)")
    conn.execute("INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, %s) g", (n,))
    client.create_set("Big", "big", "big", "body", truncate_dim=32)
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(n, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    client.load_vectors("big", list(range(1, n + 1)), vecs)
    client.refit("big")
    conn.execute("SELECT mrl.create_full_index('big')")
    q = vecs[0]
    exact = [r[0] for r in conn.execute("SELECT id FROM mrl.search('big', %s, 1200, 'exact')", (q,))]
    assert len(exact) == 1200
    for strategy, ck in (("two_stage", 1500), ("hnsw", None)):
        got = [r[0] for r in conn.execute("SELECT id FROM mrl.search('big', %s, 1200, %s, %s)", (q, strategy, ck))]
        assert len(got) == 1200, strategy
        assert len(set(got) & set(exact)) / 1200 > 0.9, strategy
    refused(conn, "SELECT * FROM mrl.configure_search('big', ef_search => 5000)", "22023", match="between 1 and 1000")
    conn.execute("SELECT * FROM mrl.configure_search('big', coarse_k => 3000)")
    assert len(conn.execute("SELECT id FROM mrl.search('big', %s, 10)", (q,)).fetchall()) == 10


def test_session_settings_do_not_change_keys(client, roles, embedder):
    conn = client.conn
    conn.execute("CREATE TABLE ts_docs (id timestamp PRIMARY KEY, body text)")
    conn.execute("CREATE TABLE real_docs (id real PRIMARY KEY, body text)")
    client.create_set("TS", "ts_docs", "ts_docs", "body")
    client.create_set("Real", "real_docs", "real_docs", "body")
    with psycopg.connect(client.dsn, autocommit=True) as w:
        w.execute("SET DateStyle = 'SQL, DMY'")
        w.execute("SET extra_float_digits = -10")
        w.execute("SET TimeZone = 'Asia/Kolkata'")
        w.execute("INSERT INTO ts_docs VALUES ('2026-11-29 13:45:01.123456', 'a timestamp key'), "
                  "('2026-01-02 03:04:05', 'another timestamp key')")
        w.execute("INSERT INTO real_docs VALUES (0.1234567, 'a real key'), (3.14159274, 'another real key')")
    w = Worker(roles["worker"], max_attempts=1)
    w.run(once=True)
    assert w.failed == 0
    check_invariant(conn, "ts_docs", "body", "ts_docs")
    check_invariant(conn, "real_docs", "body", "real_docs")


def test_clear_errors_for_misuse(shared, roles):
    conn = shared.conn
    refused(conn, "SELECT mrl.create_embedding_set('x', NULL, 'public.docs', 'body')", "22023", match="invalid slug NULL")
    for source in ("mrl.embedding_configs", "mrl_data.docs", "mrl.queue", "pg_catalog.pg_authid"):
        refused(conn, "SELECT mrl.create_embedding_set('x', 'x', %s::regclass, 'name')", "42501", (source,),
                match="cannot read")
    with roles.sql("mal") as m:  # may manage sets, but may not read public.docs
        refused(m, "SELECT mrl.create_embedding_set('x', 'x', 'public.docs', 'body')", "42501",
                match="permission denied for table public.docs")
    with roles.sql("bob") as b:  # may not manage sets at all
        b.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, body text)")
        with pytest.raises(psycopg.Error) as info:
            b.execute("SELECT mrl.create_embedding_set('x', 'x', 'public.docs', 'body')")
        assert info.value.sqlstate == "42501"


def test_worker_reaches_sources_outside_public(client, roles, embedder):
    conn = client.conn
    conn.execute("CREATE SCHEMA app")
    conn.execute("CREATE TABLE app.docs (id int PRIMARY KEY, body text)")
    conn.execute("INSERT INTO app.docs SELECT i, r FROM unnest(%s::text[]) WITH ORDINALITY u(r, i)",
                 ([r["doc"] for r in records(20)],))
    client.create_set("App", "app_docs", "app.docs", "body")
    w = Worker(roles["worker"], max_attempts=1)
    w.run(once=True)
    assert w.failed == 0
    check_invariant(conn, "app_docs", "body", "app.docs")


def test_generated_token_file_is_private(dsn, tmp_path):
    from pgmrl.sidecar.runner import resolve_tokens

    path = tmp_path / "cfg" / "sidecar-token"
    mapping, written = resolve_tokens(dsn, None, None, None, path)
    assert written == str(path) and oct(os.stat(path).st_mode & 0o777) == "0o600"
    (token, role), = mapping.items()
    assert len(token) >= 32 and path.read_text().strip() == token
    with psycopg.connect(dsn) as c:
        is_super = c.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    assert role == ("pgmrl_worker" if is_super else None)  # a token never acts as a superuser by default
    assert resolve_tokens(dsn, None, None, None, path)[0] == mapping  # kept across restarts
    os.chmod(path, 0o644)
    with pytest.raises(Exception, match="may be read by others"):
        resolve_tokens(dsn, None, None, None, path)


# -- found by an attacker's review: what a set administrator or a table owner attaches to tables ------------------
def test_admin_cannot_escalate_through_pgmrl_triggers(shared, roles, mal_table):
    """The SECURITY DEFINER trigger fires only as the exact trigger pgmrl made (with its transition tables), and
    the sync trigger runs as the writer: neither runs an administrator's code with the installer's privileges."""
    conn = shared.conn
    with roles.sql("mal") as m:
        m.execute("SELECT mrl.create_embedding_set('own', 'own', 'mal.t', 'body')")
        set_id = m.execute("SELECT id FROM mrl.embedding_sets WHERE slug = 'own'").fetchone()[0]
        m.execute(f"CREATE FUNCTION mal.pwn() RETURNS text LANGUAGE plpgsql AS $$BEGIN "
                  f"ALTER ROLE {roles.real('mal')} SUPERUSER; RETURN 'x'; END$$")
        # a temporary view named like the transition table, and a trigger without REFERENCING
        m.execute("CREATE TEMP VIEW mrl_new AS SELECT 1 AS id, mal.pwn() AS body")
        m.execute("CREATE TABLE mal.t3 (id int PRIMARY KEY, body text)")
        m.execute("DROP TRIGGER mrl_own_ins ON mal.t")
        m.execute(f"CREATE TRIGGER mrl_own_ins AFTER INSERT ON mal.t FOR EACH STATEMENT "
                  f"EXECUTE FUNCTION mrl_internal._queue_changes('{set_id}')")
        refused(m, "INSERT INTO mal.t VALUES (100, 'x')", "42501", match="does not belong")
        # a trigger on its own vectors table, fired when a sync trigger writes there
        m.execute("CREATE FUNCTION mal.pwn_trigger() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$BEGIN PERFORM mal.pwn(); RETURN NULL; END$$")
        m.execute("CREATE TRIGGER pwn AFTER DELETE OR INSERT ON mrl_data.own FOR EACH STATEMENT "
                  "EXECUTE FUNCTION mal.pwn_trigger()")
        m.execute("DROP TRIGGER mrl_own_ins ON mal.t")
        m.execute(f"CREATE TRIGGER mrl_own_upd2 AFTER UPDATE ON mal.t REFERENCING OLD TABLE AS mrl_old "
                  f"NEW TABLE AS mrl_new FOR EACH STATEMENT EXECUTE FUNCTION mrl_internal._sync_changes('{set_id}')")
        refused(m, "UPDATE mal.t SET body = '' WHERE id = 1", "42501", match="does not belong")
        m.execute("DROP TRIGGER mrl_own_upd2 ON mal.t")
    assert superusers(conn, roles) == []
    # the worker refuses the set whose vectors table now carries mal's trigger, and runs none of it
    conn.execute("UPDATE mal.t SET body = 'changed' WHERE id = 2")
    errors = dead_letters(conn, roles, "own")
    assert errors and all("which pgmrl did not create" in e for e in errors), errors
    assert superusers(conn, roles) == []
    check_invariant(conn, "docs", "body")


def test_worker_runs_no_code_of_table_owners(shared, roles, alice_table):
    """Row-level security on a source, or anything attached to a vectors table, would run as the worker."""
    conn = shared.conn
    conn.execute("SELECT mrl.create_embedding_set('a', 'a', 'alice.t', 'body')")
    drained(shared, roles, "body", "alice.t", "a")
    with roles.sql("alice") as a:
        a.execute("CREATE FUNCTION alice.spy() RETURNS bool LANGUAGE plpgsql AS "
                  "$$BEGIN INSERT INTO alice.ran SELECT current_user; RETURN true; END$$")
        a.execute("GRANT EXECUTE ON FUNCTION alice.spy() TO PUBLIC")
        a.execute("ALTER TABLE alice.t ENABLE ROW LEVEL SECURITY")
        a.execute("CREATE POLICY p ON alice.t USING (alice.spy())")
        a.execute("INSERT INTO alice.t (id, body) VALUES (300, 'a new row')")
    errors = dead_letters(conn, roles, "a")
    assert errors and all("row-level security" in e for e in errors), errors
    assert ran(conn) == []
    refused(conn, "SELECT mrl.create_embedding_set('b', 'b', 'alice.t', 'body')", "42501", match="row-level security")


def test_admins_change_only_their_own_sets_and_configs(shared, roles, mal_table):
    conn = shared.conn
    conn.execute(f"GRANT pgmrl_admin TO {roles.real('alice')}")
    with roles.sql("alice") as a:  # another administrator, with a set of its own
        a.execute("CREATE TABLE alice.notes (id int PRIMARY KEY, body text)")
        a.execute("INSERT INTO alice.notes VALUES (1, 'a private note')")
        a.execute("SELECT mrl.create_embedding_set('notes', 'notes', 'alice.notes', 'body')")
    with roles.sql("mal") as m:
        m.execute("INSERT INTO mrl.embedding_configs (name, model, provider, dims, endpoint) "
                  "VALUES ('mal-endpoint', 'x', 'openai', 384, 'http://127.0.0.1:9/v1')")
        assert m.execute("UPDATE mrl.embedding_sets SET config = 'mal-endpoint' WHERE slug = 'notes'").rowcount == 0
        assert m.execute("UPDATE mrl.embedding_sets SET truncate_dim = 8 WHERE slug = 'notes'").rowcount == 0
        assert m.execute("DELETE FROM mrl.embedding_sets WHERE slug = 'notes'").rowcount == 0
        assert m.execute("UPDATE mrl.embedding_configs SET endpoint = 'http://127.0.0.1:9/v1' "
                         "WHERE name = 'all-minilm-l6-v2'").rowcount == 0
        assert m.execute("SELECT count(*) FROM mrl.queue_status WHERE slug = 'notes'").fetchone()[0] == 0
        notes_id = conn.execute("SELECT id FROM mrl.embedding_sets WHERE slug = 'notes'").fetchone()[0]
        refused(m, "INSERT INTO mrl.rotation_components VALUES (%s, 0, %s::vector)", "42501",
                (notes_id, "[" + ",".join(["0.1"] * 384) + "]"))
        m.execute("SELECT mrl.create_embedding_set('own', 'own', 'mal.t', 'body', 'mal-endpoint')")  # its own: fine
    with roles.sql("alice") as a:  # mal's config is not alice's to use
        refused(a, "SELECT mrl.create_embedding_set('n2', 'n2', 'alice.notes', 'body', 'mal-endpoint')", "42501",
                match="belongs to another role")
    assert conn.execute("SELECT config FROM mrl.embedding_sets WHERE slug = 'notes'").fetchone()[0] == "all-minilm-l6-v2"
    assert conn.execute("SELECT endpoint FROM mrl.embedding_configs WHERE name = 'all-minilm-l6-v2'").fetchone()[0] is None


def test_views_leak_nothing_through_cheap_functions(shared, roles):
    conn = shared.conn
    conn.execute("INSERT INTO mrl.queue (set_id, id, dead, last_error) SELECT id, 'k1', true, 'private error' "
                 "FROM mrl.embedding_sets WHERE slug = 'docs'")
    with roles.sql("bob") as b:
        notices = []
        b.add_notice_handler(lambda d: notices.append(d.message_primary))
        b.execute("CREATE FUNCTION pg_temp.leak(text, text) RETURNS bool LANGUAGE plpgsql COST 0.0000001 AS "
                  "$$BEGIN RAISE NOTICE 'LEAK % %', $1, $2; RETURN true; END$$")
        assert b.execute("SELECT count(*) FROM mrl.failed_items WHERE pg_temp.leak(id, last_error)").fetchone()[0] == 0
        assert b.execute("SELECT count(*) FROM mrl.queue_status WHERE pg_temp.leak(slug, '')").fetchone()[0] == 0
    assert not [n for n in notices if "LEAK" in n], notices


def test_worker_is_not_stalled_by_locks_or_inherited_rows(shared, roles, mal_table):
    conn = shared.conn
    with roles.sql("mal") as m:
        m.execute("CREATE TABLE mal.p (id int PRIMARY KEY, body text)")
        m.execute("CREATE TABLE mal.pchild () INHERITS (mal.p)")
        m.execute("SELECT mrl.create_embedding_set('p', 'p', 'mal.p', 'body')")
        m.execute("INSERT INTO mal.p VALUES (1, 'parent row')")
        m.execute("DELETE FROM ONLY mal.p WHERE id = 1")
        m.execute("INSERT INTO mal.pchild VALUES (1, 'child row with the same key')")
    w = Worker(roles["worker"], max_attempts=1)
    w.run(once=True)  # returns: the key has no row the foreign key can see, so it gets no vector
    assert conn.execute("SELECT count(*) FROM mrl_data.p").fetchone()[0] == 0
    # a writer holding a row lock makes the batch fail after lock_timeout, not wait for ever
    with roles.sql("writer") as wr:
        wr.execute("INSERT INTO public.docs VALUES (500, 'a row the writer then locks', 's')")
        wr.execute("BEGIN")
        wr.execute("SELECT * FROM public.docs WHERE id = 500 FOR UPDATE")  # the vector's foreign key check waits
        w = Worker(roles["worker"], max_attempts=1, lock_timeout=1.0)
        w.run(once=True)
        wr.execute("ROLLBACK")
    assert w.failed >= 1
    errors = [r[0] for r in conn.execute("SELECT last_error FROM mrl.failed_items WHERE slug = 'docs'")]
    assert any("lock" in e for e in errors), errors
    assert conn.execute("SELECT mrl.retry_failed('docs')").fetchone()[0] >= 1
    drained(shared, roles)


def test_expression_edge_cases(shared, roles, mal_table):
    with roles.sql("mal") as m:
        # whole-row references would read columns added later, of any type
        refused(m, "SELECT mrl.create_embedding_set('w', 'w', 'mal.t', 'concat(mrl_src, body)')", "22023")
        for i, expr in enumerate(["CASE WHEN body = ANY (ARRAY['a']) THEN 'a' ELSE body END",
                                  "trim(both 'x' from body)", "body COLLATE \"C\""]):
            m.execute("SELECT mrl.create_embedding_set(%s, %s, 'mal.t', %s)", (f"e{i}", f"e{i}", expr))
    drained(shared, roles, "CASE WHEN body = ANY (ARRAY['a']) THEN 'a' ELSE body END", "mal.t", "e0")


def test_searchers_run_no_policy_an_owner_adds(shared, roles, mal_table, embedder):
    conn = shared.conn
    with roles.sql("mal") as m:
        m.execute("SELECT mrl.create_embedding_set('own', 'own', 'mal.t', 'body')")
        m.execute(f"CREATE FUNCTION mal.pwn() RETURNS bool LANGUAGE plpgsql AS $$BEGIN "
                  f"ALTER ROLE {roles.real('mal')} SUPERUSER; RETURN true; END$$")
        m.execute("GRANT EXECUTE ON FUNCTION mal.pwn() TO PUBLIC")
        m.execute("DROP POLICY mrl_source_readers ON mrl_data.own")
        m.execute("CREATE POLICY mrl_source_readers ON mrl_data.own FOR SELECT USING (mal.pwn())")
    q = embedder.encode(["text"], kind="query")[0]
    refused(conn, "SELECT * FROM mrl.search('own', %s, 5, 'exact')", "42501", (q,), match="which pgmrl did not create")
    assert superusers(conn, roles) == []


# -- found by a second review --------------------------------------------------------------------------------------
@pytest.fixture
def mal_planner_code(shared, roles, mal_table):
    """mal.evil(int): IMMUTABLE, so the planner folds a call with a constant argument, running it as whoever plans."""
    with roles.sql("mal") as m:
        m.execute("CREATE TABLE mal.ran (who text)")
        m.execute("GRANT INSERT ON mal.ran TO PUBLIC")
        m.execute(f"CREATE FUNCTION mal.pwn2() RETURNS void LANGUAGE plpgsql AS $$BEGIN "
                  f"INSERT INTO mal.ran VALUES (current_user); "
                  f"IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN "
                  f"EXECUTE 'ALTER ROLE {roles.real('mal')} SUPERUSER'; END IF; END$$")
        m.execute("CREATE FUNCTION mal.evil(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS "
                  "$$BEGIN PERFORM mal.pwn2(); RETURN $1; END$$")
        m.execute("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA mal TO PUBLIC")
        m.execute("GRANT USAGE ON SCHEMA mal TO PUBLIC")
        m.execute("SELECT mrl.create_embedding_set('own', 'own', 'mal.t', 'body')")
    drained(shared, roles, "body", "mal.t", "own")
    return lambda: shared.conn.execute("SELECT who FROM mal.ran").fetchall()


def test_planner_code_on_a_source_never_runs(shared, roles, mal_planner_code, embedder):
    conn = shared.conn
    with roles.sql("mal") as m:
        m.execute("CREATE INDEX ON mal.t ((mal.evil(0) + id))")
        m.execute("INSERT INTO mal.t VALUES (50, 'a new row')")
    errors = dead_letters(conn, roles, "own")
    assert errors and all("the planner would run them" in e for e in errors), errors
    conn.execute("SELECT * FROM mrl.set_status('own')")  # counts nothing it would have to plan with mal's code
    q = embedder.encode(["text"], kind="query")[0]
    refused(conn, "SELECT * FROM mrl.search('own', %s, 5, filter => '{\"id\": 1}')", "42501", (q,))
    assert {r[0] for r in mal_planner_code()} <= {roles.real("mal")} and superusers(conn, roles) == []
    # and a new set over such a table is refused before anything reads it
    refused(conn, "SELECT mrl.create_embedding_set('own2', 'own2', 'mal.t', 'body')", "42501", match="indexes or statistics")


def test_planner_code_on_a_vectors_table_never_runs(shared, roles, mal_planner_code, embedder):
    conn = shared.conn
    with roles.sql("mal") as m:
        m.execute("CREATE STATISTICS mal.s ON (mal.evil(0) + 0), (length(content_hash)) FROM mrl_data.own")
        m.execute("ANALYZE mrl_data.own")
    ran_by_analyze = len(mal_planner_code())  # mal's own ANALYZE ran it as mal: no harm
    q = embedder.encode(["text"], kind="query")[0]
    refused(conn, "SELECT * FROM mrl.search('own', %s, 5)", "42501", (q,), match="which pgmrl did not create")
    with roles.sql("mal") as m:
        m.execute("DROP STATISTICS mal.s")
        m.execute("CREATE INDEX ON mrl_data.own ((mal.evil(0) + 1)) WHERE mal.evil(0) = 0")
        m.execute("CREATE TABLE mal.child () INHERITS (mrl_data.own)")
    refused(conn, "SELECT * FROM mrl.search('own', %s, 5)", "42501", (q,))
    conn.execute("UPDATE mal.t SET body = 'changed' WHERE id = 3")
    w = Worker(roles["worker"], max_attempts=1)
    w.run(once=True)
    assert w.failed >= 1
    assert {r[0] for r in mal_planner_code()} <= {roles.real("mal")}  # only mal's own statements ran mal's code
    assert ran_by_analyze >= 1 and superusers(conn, roles) == []


def test_replacements_and_ids_cannot_be_pointed_at_other_sets(shared, roles, mal_table):
    conn = shared.conn
    docs_id = conn.execute("SELECT id FROM mrl.embedding_sets WHERE slug = 'docs'").fetchone()[0]
    with roles.sql("mal") as m:
        m.execute("SELECT mrl.create_embedding_set('own', 'own', 'mal.t', 'body')")
        refused(m, "UPDATE mrl.embedding_sets SET replaces = %s WHERE slug = 'own'", "42501", (docs_id,))
        refused(m, "UPDATE mrl.embedding_sets SET id = 100000 WHERE slug = 'own'", "42501")
    conn.execute("SELECT mrl.drop_embedding_set('docs')")  # its owner can still drop it


def test_long_keys_never_stop_the_queue(shared, roles):
    conn = shared.conn
    conn.execute("CREATE TABLE public.bk (id bytea PRIMARY KEY, body text)")
    conn.execute(f"GRANT SELECT, INSERT ON public.bk TO {roles.real('writer')}")
    shared.create_set("Bytes", "bk", "public.bk", "body")
    with roles.sql("writer") as w:  # a 1,920-byte key fits the source's index but is 3,842 characters as text
        w.execute("INSERT INTO public.bk SELECT decode(string_agg(md5(g::text || random()::text), ''), 'hex'), 'x' "
                  "FROM generate_series(1, 120) g")
        w.execute("INSERT INTO public.docs VALUES (2000, 'another set''s new row', 's')")
    drained(shared, roles)
    check_invariant(conn, "bk", "body", "public.bk")


def test_finetune_pairs_and_vectors_follow_the_source_privileges(shared, roles):
    with roles.sql("bob") as b:  # may not read public.docs: the set does not exist for him
        refused(b, "SELECT * FROM mrl.set_document_pairs('docs', 'secret')", "42704")
        refused(b, "SELECT * FROM mrl.set_embeddings('docs', ARRAY['1'])", "42704")
    with roles.sql("mal") as m:
        m.execute("CREATE FUNCTION mal.leak(t text) RETURNS text LANGUAGE sql AS 'SELECT t'")
        m.execute("GRANT USAGE ON SCHEMA mal TO PUBLIC")  # the reader could call it: the check must still refuse
    with roles.sql("reader") as r:
        rows = r.execute("SELECT id, query FROM mrl.set_document_pairs('docs', 'upper(secret)')").fetchall()
        assert len(rows) == 60 and rows[0][1].startswith("SECRET-")
        assert len(r.execute("SELECT * FROM mrl.set_embeddings('docs', ARRAY['1', '2', '999'])").fetchall()) == 2
        refused(r, "SELECT * FROM mrl.set_document_pairs('docs', '(SELECT s FROM public.secrets)')", "22023",
                match="refused")
        refused(r, "SELECT * FROM mrl.set_document_pairs('docs', 'mal.leak(body)')", "22023")


def test_full_text_and_chunks_are_read_only_by_readers_of_the_source(shared, roles, embedder):
    """hybrid_search, text_search and search_chunks read the set's words and chunks as the caller: a role without
    SELECT on the source gets neither (not even by calling the internal helpers with a forged set)."""
    conn = shared.conn
    word = conn.execute("SELECT split_part(body, ' ', 1) FROM public.docs WHERE id = 3").fetchone()[0]
    q = str(embedder.encode([word], kind="query")[0].tolist())
    mine = conn.execute("SELECT id FROM mrl.hybrid_search('docs', %s, %s::vector, 5)", (word, q)).fetchall()
    assert len(mine) == 5
    with roles.sql("bob") as b:
        for sql, args in (("SELECT * FROM mrl.hybrid_search('docs', %s, %s::vector, 5)", (word, q)),
                          ("SELECT * FROM mrl.text_search('docs', %s)", (word,)),
                          ("SELECT * FROM mrl.search_chunks('docs', %s::vector)", (q,))):
            refused(b, sql, "42704", args)
        assert b.execute("SELECT count(*) FROM mrl_words.docs").fetchone()[0] == 0
        forged = conn.execute("SELECT e::text FROM mrl.embedding_sets e WHERE slug = 'docs'").fetchone()[0]
        assert b.execute("SELECT count(*) FROM mrl_internal._text_ranks(%s::mrl.embedding_sets, %s, 10, NULL)",
                         (forged, word)).fetchone()[0] == 0
        refused(b, "SELECT mrl.alter_embedding_set('docs', chunking => '\"tokens\"')", "42704")
    with roles.sql("reader") as r:
        assert r.execute("SELECT id FROM mrl.hybrid_search('docs', %s, %s::vector, 5)", (word, q)).fetchall() == mine


def test_a_superusers_compaction_checks_under_its_lock(shared, roles, mal_table):
    """mrl.compact_embedding_set by a superuser rewrites the table with ALTER TABLE, which re-checks its constraints as
    the caller: the set's owner must not be able to add one between the check and the rewrite. The check runs
    under the rewrite's own lock, so a constraint added meanwhile is seen and the rewrite refused."""
    conn = shared.conn
    with roles.sql("mal") as m:
        m.execute("SELECT mrl.create_embedding_set('mc', 'mc', 'mal.t', 'body', full_type => 'vector')")
        m.execute("CREATE FUNCTION mal.ok(text) RETURNS bool LANGUAGE sql IMMUTABLE AS "
                  "$$SELECT mal.lower($1) IS NOT NULL$$")
    holder = psycopg.connect(roles["mal"])  # mal's transaction holds the table while the superuser's call waits
    holder.execute("LOCK TABLE mrl_data.mc IN ACCESS EXCLUSIVE MODE")
    result: list = []

    def compact():
        with psycopg.connect(shared.dsn, autocommit=True) as su:
            try:
                su.execute("SELECT * FROM mrl.compact_embedding_set('mc', 'halfvec')")
                result.append("compacted")
            except psycopg.Error as exc:
                result.append(exc.sqlstate)

    t = threading.Thread(target=compact)
    t.start()
    time.sleep(1.5)
    holder.execute("ALTER TABLE mrl_data.mc ADD CONSTRAINT c CHECK (mal.ok(content_hash))")
    holder.commit()
    holder.close()
    t.join(60)
    assert result == ["42501"]
    assert superusers(conn, roles) == []
    assert conn.execute("SELECT full_type FROM mrl.embedding_sets WHERE slug = 'mc'").fetchone()[0] == "vector"


def test_the_worker_checks_the_tables_it_writes_under_its_lock(shared, roles, mal_table):
    """The worker checks a set's tables, then writes them: the set's owner must not be able to add a trigger to its
    words (or vectors) table in between, which would run as the worker (reading what the worker may read). The
    worker locks both tables before its check, so a trigger added meanwhile is seen and the batch refused."""
    conn = shared.conn
    with roles.sql("mal") as m:
        m.execute("SELECT mrl.create_embedding_set('mw', 'mw', 'mal.t', 'body')")
        m.execute("CREATE TABLE mal.loot (who text)")
        m.execute("GRANT INSERT ON mal.loot TO PUBLIC")
        m.execute("CREATE FUNCTION mal.t_loot() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$BEGIN INSERT INTO mal.loot VALUES (current_user); RETURN NEW; END$$")
    holder = psycopg.connect(roles["mal"])
    holder.execute("LOCK TABLE mrl_words.mw IN ACCESS EXCLUSIVE MODE")
    t = threading.Thread(target=lambda: Worker(roles["worker"], max_attempts=1).run(once=True))
    t.start()
    time.sleep(3)  # the worker has claimed the batch and waits for the table
    holder.execute("CREATE TRIGGER loot BEFORE INSERT OR UPDATE ON mrl_words.mw FOR EACH ROW EXECUTE FUNCTION mal.t_loot()")
    holder.commit()
    holder.close()
    t.join(120)
    assert conn.execute("SELECT count(*) FROM mal.loot").fetchone()[0] == 0
    errors = dead_letters(conn, roles, "mw")
    assert errors and all("trigger loot" in e for e in errors), errors
    assert superusers(conn, roles) == []
