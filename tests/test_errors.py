"""Acceptance 5: bad input raises an error that names the problem and the fix, and changes nothing."""

import numpy as np
import psycopg
import pytest

from helpers import make_docs_table
from pgmrl import PgmrlError

SETUP = """
CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text);
CREATE TABLE nopk (title text);
CREATE TABLE compo (a int, b int, body text, PRIMARY KEY (a, b));
INSERT INTO docs VALUES (1, 't', 'b');
SELECT mrl.create_embedding_set('Existing', 'existing', 'docs', 'body', 'all-minilm-l6-v2', 128);
"""

# (case, SQL, SQLSTATE, words the message must hold, words the hint must hold)
CASES = [
    ("truncate_dim not an MRL dim",
     "SELECT mrl.create_embedding_set('x', 'x', 'docs', 'body', 'nomic-embed-text-v1.5', 100)",
     "22023", "not a Matryoshka dimension", "768, 512, 256, 128, 64"),
    ("truncate_dim >= dims",
     "SELECT mrl.create_embedding_set('x', 'x', 'docs', 'body', 'all-minilm-l6-v2', 384)",
     "22023", "out of range", "between 1 and 383"),
    ("truncate_dim <= 0",
     "SELECT mrl.create_embedding_set('x', 'x', 'docs', 'body', 'nomic-embed-text-v1.5', 0)",
     "22023", "out of range", "512, 256, 128, 64"),
    ("raw truncation of a non-MRL model",
     "SELECT mrl.create_embedding_set('x', 'x', 'docs', 'body', 'all-minilm-l6-v2', 128, coarse_method => 'prefix')",
     "22023", "raw prefix truncation", "PCA rotation"),
    ("no primary key",
     "SELECT mrl.create_embedding_set('x', 'x', 'nopk', 'title')",
     "42P16", "has no primary key", "ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    ("composite primary key",
     "SELECT mrl.create_embedding_set('x', 'x', 'compo', 'body')",
     "42P16", "composite primary key", "single-column primary key"),
    ("unknown config",
     "SELECT mrl.create_embedding_set('x', 'x', 'docs', 'body', 'no-such-model')",
     "42704", "unknown embedding config", "all-minilm-l6-v2"),
    ("unknown set",
     "SELECT * FROM mrl.two_stage_search('nope', array_fill(0.1, ARRAY[384])::vector)",
     "42704", "unknown embedding set", "existing"),
    ("duplicate slug",
     "SELECT mrl.create_embedding_set('x', 'existing', 'docs', 'body')",
     "42710", "already exists", "drop it first"),
    ("slug with quotes and semicolons",
     "SELECT mrl.create_embedding_set('x', 'a\"; DROP TABLE docs; --', 'docs', 'body')",
     "22023", "invalid slug", "lower-case letter"),
    ("unicode slug",
     "SELECT mrl.create_embedding_set('x', 'données', 'docs', 'body')",
     "22023", "invalid slug", "lower-case letter"),
    ("text expression with a subquery",
     "SELECT mrl.create_embedding_set('x', 'x', 'docs', '(select string_agg(body, '''') from docs)')",
     "22023", "subqueries and statements are refused", "single expression"),
    ("text expression with a second statement",
     "SELECT mrl.create_embedding_set('x', 'x', 'docs', 'body); DROP TABLE docs; SELECT (1')",
     "22023", "statement separator", "single expression"),
    ("text expression with a missing column",
     "SELECT mrl.create_embedding_set('x', 'x', 'docs', 'title || nosuch')",
     "22023", "not valid for table public.docs: column \"nosuch\" does not exist", "Columns of public.docs: id, title, body"),
    ("text expression calling an unsafe function",
     "SELECT mrl.create_embedding_set('x', 'x', 'docs', 'pg_read_file(body)')",
     "22023", "not an allowed text function", "Allowed functions"),
    ("query vector of the wrong dimension",
     "SELECT * FROM mrl.two_stage_search('existing', array_fill(0.1, ARRAY[768])::vector)",
     "22000", "has 768 dimensions but set \"existing\" stores 384", "Embed the query with the set's model"),
    ("NULL query",
     "SELECT * FROM mrl.two_stage_search('existing', NULL::vector)",
     "22004", "query vector is NULL", "embedded query"),
    ("k <= 0",
     "SELECT * FROM mrl.search('existing', array_fill(0.1, ARRAY[384])::vector, k => 0)",
     "22023", "k must be between 1 and 10000", "number of results"),
    ("absurd k",
     "SELECT * FROM mrl.search('existing', array_fill(0.1, ARRAY[384])::vector, k => 1000000)",
     "22023", "k must be between 1 and 10000", "number of results"),
    ("coarse_k < k",
     "SELECT * FROM mrl.two_stage_search('existing', array_fill(0.1, ARRAY[384])::vector, k => 50, coarse_k => 10)",
     "22023", "must be at least k", "100 is a good start"),
    ("unknown strategy",
     "SELECT * FROM mrl.search('existing', array_fill(0.1, ARRAY[384])::vector, strategy => 'fast')",
     "22023", "unknown strategy", "two_stage"),
    ("coarse_dim larger than stored",
     "SELECT * FROM mrl.two_stage_search('existing', array_fill(0.1, ARRAY[384])::vector, coarse_dim => 256)",
     "22023", "coarse_dim 256 is not available", "between 1 and 128"),
]


@pytest.fixture
def setup(client):
    client.conn.execute(SETUP)
    return client


def _snapshot(conn):
    return (conn.execute("SELECT count(*) FROM mrl.embedding_sets").fetchone()[0],
            conn.execute("SELECT count(*) FROM mrl.queue").fetchone()[0],
            conn.execute("SELECT count(*) FROM docs").fetchone()[0],
            conn.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone()[0],
            conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'mrl_data'").fetchone()[0])


@pytest.mark.parametrize("case,sql,sqlstate,message,hint", CASES, ids=[c[0] for c in CASES])
def test_bad_input(setup, case, sql, sqlstate, message, hint):
    conn = setup.conn
    before = _snapshot(conn)
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql).fetchall()
    diag = info.value.diag
    assert diag.sqlstate == sqlstate, (diag.sqlstate, diag.message_primary)
    assert message in diag.message_primary
    assert hint in (diag.message_hint or ""), diag.message_hint
    assert _snapshot(conn) == before


CLIENT_CASES = [
    ("subquery", "(select 1)", "subquery"),
    ("two statements", "body; drop table docs", "more than one statement"),
    ("unknown column", "summary || nosuch", "unknown column 'nosuch'"),
    ("qualified column", "other.body", "use bare column names"),
    ("empty", "  ", "text column is empty"),
    ("garbage", "body ||| ", "does not parse"),
]


@pytest.mark.parametrize("case,expr,message", CLIENT_CASES, ids=[c[0] for c in CLIENT_CASES])
def test_client_checks_text_expressions(client, case, expr, message):
    make_docs_table(client.conn, [])
    with pytest.raises(PgmrlError, match=message):
        client.create_set("x", "x", "docs", expr)
    assert not client.set_exists("x")


def test_client_errors(client):
    with pytest.raises(PgmrlError, match="does not exist"):
        client.create_set("x", "x", "no_table", "body")
    client.conn.execute(SETUP)
    with pytest.raises(PgmrlError, match=r"set 'existing' needs \(n, 384\)"):
        client.load_vectors("existing", [1], np.zeros((1, 768)))


@pytest.mark.parametrize("expr", ["body", "summary || ': ' || body", "concat_ws(' ', summary, body)",
                                  "coalesce(summary, '') || ' ' || lower(body)", "\"body\""])
def test_valid_text_expressions_are_accepted(client, expr):
    make_docs_table(client.conn, [{"id": "p", "query": "q", "doc": "d"}])
    client.create_set("x", "x", "docs", expr)
    assert client.status("x")[0]["queued"] == 1
