"""Awkward texts, the least-privileged worker role, and sets whose source table changed."""

import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from helpers import check_invariant, cosine, login_dsn
from pgmrl.db import to_numpy
from pgmrl.worker import Worker

TEXTS = [
    "Ein Paket für die Verwaltung von Zertifikaten",
    "日本語の形態素解析器",
    "Поиск файлов по содержимому",
    "emoji 🙂🚀 and a zero-width\u200bjoiner",
    "control\tcharacters\r\nand a bell \x07 and escape \x1b[0m",
    "x",
]


def test_unicode_control_characters_and_long_texts(client, dsn, embedder):
    conn = client.conn
    conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    long_text = " ".join(["a very long package description"] * 3000)  # ~15k tokens, window is 256
    huge_text = "z" * 300_000  # beyond the character cap
    rows = list(enumerate(TEXTS + [long_text, huge_text], 1))
    conn.cursor().executemany("INSERT INTO docs VALUES (%s, %s)", rows)
    client.create_set("Docs", "docs", "docs", "body")
    w = Worker(dsn)
    w.run(once=True)
    assert w.failed == 0
    check_invariant(conn, "docs", "body")
    got = dict(conn.execute("SELECT id, truncated FROM mrl_data.docs").fetchall())
    assert [got[i] for i in range(1, 7)] == [False] * 6 and got[7] and got[8]
    vecs = {i: to_numpy(v) for i, v in conn.execute("SELECT id, embedding FROM mrl_data.docs")}
    ref = embedder.model.encode(TEXTS, normalize_embeddings=True)
    assert min(cosine(vecs[i + 1], ref[i]) for i in range(len(TEXTS))) >= 0.999


@pytest.fixture
def worker_dsn(dsn, server_dsn):
    """A login role that is only a member of pgmrl_worker (created by pgmrl install)."""
    name, password = f"w_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE pgmrl_worker")
    yield login_dsn(dsn, name, password)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {conninfo_to_dict(dsn)['dbname']} WITH (FORCE)")
        conn.execute(f"DROP ROLE {name}")


def test_worker_runs_with_least_privilege(client, worker_dsn, corpus):
    conn = client.conn
    conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, secret text)")
    conn.cursor().executemany("INSERT INTO docs VALUES (%s, %s, 's')", [(i, r["doc"]) for i, r in enumerate(corpus[:140])])
    conn.execute("CREATE TABLE other (x int)")
    client.create_set("Docs", "docs", "docs", "body", truncate_dim=16)
    conn.execute("UPDATE mrl.embedding_sets SET rotation_min_rows = 100")
    w = Worker(worker_dsn)
    w.run(once=True)
    assert w.failed == 0
    check_invariant(conn, "docs", "body")
    assert client.status("docs")[0]["rotation_fitted_at"] is not None  # fitted without owning the table
    with psycopg.connect(worker_dsn, autocommit=True) as wc:
        for sql in ("SELECT * FROM other", "DELETE FROM docs", "DROP TABLE mrl_data.docs",
                    "UPDATE mrl.embedding_configs SET dims = 1", "INSERT INTO mrl.settings VALUES ('a', 'b')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                wc.execute(sql)


def test_renamed_and_dropped_source(client, dsn, corpus):
    conn = client.conn
    conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    conn.execute("INSERT INTO docs VALUES (1, 'one'), (2, 'two')")
    client.create_set("Docs", "docs", "docs", "body")
    conn.execute("ALTER TABLE docs RENAME TO documents")  # the set follows the table
    conn.execute("INSERT INTO documents VALUES (3, 'three')")
    Worker(dsn).run(once=True)
    check_invariant(conn, "docs", "body", table="documents")
    with pytest.raises(psycopg.errors.DependentObjectsStillExist):
        conn.execute("DROP TABLE documents")  # the vectors table depends on it
    conn.execute("DROP TABLE documents CASCADE")
    conn.execute("INSERT INTO mrl.queue (set_id, id) SELECT id, '1' FROM mrl.embedding_sets")
    w = Worker(dsn, max_attempts=1)
    w.run(once=True)
    err = client.failed_items("docs")[0]["last_error"]
    assert "source table of embedding set \"docs\" was dropped" in err
    st = client.status("docs")[0]
    assert st["rows"] is None and st["embedded"] == 3
    client.drop_set("docs")
    assert not client.set_exists("docs")


def test_bulk_keys_are_queued_in_one_statement_without_warnings(client, corpus):
    """A bulk INSERT leaves one key array per statement; the worker's expansion moves them all at once. (It used to
    fail every time on a name clash inside the function and fall back to one statement at a time, with a warning.)"""
    conn = client.conn
    conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    client.create_set("Docs", "docs", "docs", "body")
    conn.execute("DELETE FROM mrl.queue")
    for start in (0, 100, 200):  # three statements, three key arrays
        conn.cursor().execute("INSERT INTO docs SELECT * FROM unnest(%s::int[], %s::text[])",
                              (list(range(start, start + 100)), [r["doc"] for r in corpus[start:start + 100]]))
    assert conn.execute("SELECT count(*) FROM mrl.queue_intake").fetchone()[0] == 3
    warnings = []
    conn.add_notice_handler(lambda d: warnings.append(d.message_primary))
    assert conn.execute("SELECT mrl_internal._expand_intake()").fetchone()[0] == 300
    assert warnings == []
    assert conn.execute("SELECT count(*) FROM mrl.queue_intake").fetchone()[0] == 0
    assert conn.execute("SELECT count(DISTINCT id) FROM mrl.queue").fetchone()[0] == 300
