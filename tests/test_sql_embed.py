"""Text from SQL: mrl.embed() through the sidecar (plpython3u), text searches, sync mode."""

import time

import httpx
import numpy as np
import psycopg
import pytest

from conftest import free_port
from helpers import cosine, make_docs_table
from pgmrl.db import to_numpy

N = 1500


@pytest.fixture
def docs_set(client, corpus, corpus_vectors):
    make_docs_table(client.conn, corpus[:N])
    client.create_set("Docs", "docs", "docs", "body", truncate_dim=128)
    client.load_vectors("docs", list(range(1, N + 1)), corpus_vectors[0][:N])
    client.refit("docs")
    return client


def test_text_search_in_sql_matches_vector_search(plpython, docs_set, sidecar, embedder):
    url = sidecar()
    conn = docs_set.conn
    assert conn.execute("SELECT count(*) FROM mrl.two_stage_search('docs', 'some words', k => 10)").fetchone()[0] == 10
    by_text = conn.execute("SELECT id FROM mrl.two_stage_search('docs', 'web browser', k => 10)").fetchall()
    by_vec = conn.execute("SELECT id FROM mrl.two_stage_search('docs', mrl.embed('web browser'), k => 10)").fetchall()
    assert by_text == by_vec and len(by_text) == 10
    exact = conn.execute("SELECT id FROM mrl.search('docs', 'web browser', k => 10, strategy => 'exact')").fetchall()
    assert len(exact) == 10

    sql_vec = to_numpy(conn.execute("SELECT mrl.embed('web browser')").fetchone()[0])
    http_vec = np.array(httpx.post(f"{url}/v1/embed", json={"texts": ["web browser"]}).json()["vectors"][0])
    st_vec = embedder.model.encode("web browser", normalize_embeddings=True)
    assert cosine(sql_vec, http_vec) >= 0.999 and cosine(sql_vec, st_vec) >= 0.999


def test_prefixes_follow_the_kind(plpython, client, sidecar, embedder):
    sidecar()
    conn = client.conn
    conn.execute("INSERT INTO mrl.embedding_configs (name, model, dims, query_prefix, document_prefix) VALUES "
                 "('prefixed', 'sentence-transformers/all-MiniLM-L6-v2', 384, 'query: ', 'passage: ')")
    q = to_numpy(conn.execute("SELECT mrl.embed('rust compiler', 'prefixed')").fetchone()[0])
    d = to_numpy(conn.execute("SELECT mrl.embed('rust compiler', 'prefixed', 'document')").fetchone()[0])
    assert cosine(q, embedder.model.encode("query: rust compiler", normalize_embeddings=True)) >= 0.999
    assert cosine(d, embedder.model.encode("passage: rust compiler", normalize_embeddings=True)) >= 0.999


def test_sync_mode_is_searchable_at_commit(plpython, client, sidecar, corpus, embedder):
    sidecar(work=False)  # HTTP only: no worker drains the queue
    conn = client.conn
    make_docs_table(conn, corpus[:5])
    client.create_set("Docs", "docs", "docs", "body", mode="sync")
    text = corpus[100]["doc"]
    with psycopg.connect(client.dsn) as writer:
        writer.execute("INSERT INTO docs (id, body) VALUES (500, %s)", (text,))
        writer.commit()
        hit = writer.execute("SELECT id FROM mrl.search('docs', %s, k => 1, strategy => 'exact')",
                             (corpus[100]["query"],)).fetchone()
    assert hit == ("500",)
    emb = to_numpy(conn.execute("SELECT embedding FROM mrl_data.docs WHERE id = 500").fetchone()[0])
    assert cosine(emb, embedder.model.encode(text, normalize_embeddings=True)) >= 0.999
    conn.execute("UPDATE docs SET body = 'changed text' WHERE id = 500")
    conn.execute("UPDATE docs SET body = NULL WHERE id = 500")
    assert conn.execute("SELECT count(*) FROM mrl_data.docs WHERE id = 500").fetchone()[0] == 0


def test_sidecar_down_is_a_clear_bounded_error(plpython, client, corpus):
    conn = client.conn
    port = free_port()  # nothing listens there
    conn.execute("SELECT mrl.configure_sidecar(%s, NULL, 3)", (f"http://127.0.0.1:{port}",))
    conn.execute("SELECT mrl.configure_sidecar_pg('127.0.0.1', %s)", (port,))  # (servers that embed through dblink)
    t = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as info:
        conn.execute("SELECT mrl.embed('hello')")
    assert time.monotonic() - t < 10
    assert f"127.0.0.1:{port} is not reachable" in info.value.diag.message_primary
    assert "pgmrl serve" in info.value.diag.message_hint
    # sync mode: the write fails, nothing half-done
    make_docs_table(conn, [])
    client.create_set("Docs", "docs", "docs", "body", mode="sync")
    with pytest.raises(psycopg.OperationalError, match="not reachable"):
        conn.execute("INSERT INTO docs (id, body) VALUES (1, 'x')")
    assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 0


def test_wrong_token_from_sql(plpython, client, sidecar):
    sidecar(token="s3cret")  # records its URL and token
    conn = client.conn
    assert conn.execute("SELECT vector_dims(mrl.embed('hi'))").fetchone()[0] == 384
    conn.execute("UPDATE mrl.settings SET value = 'wrong' WHERE key = 'sidecar_token'")
    with pytest.raises(psycopg.Error, match="refused the token"):
        conn.execute("SELECT mrl.embed('hi')")


def test_without_plpython_or_dblink_sql_says_how_to_search(server_dsn):
    """Where SQL cannot reach the sidecar (neither extension), the same functions say how to search instead."""
    from conftest import with_db
    from pgmrl import schema

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS pgmrl_fallback")
        conn.execute("CREATE DATABASE pgmrl_fallback")
    try:
        with psycopg.connect(with_db(server_dsn, "pgmrl_fallback"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
            conn.execute(schema.build_script("public", plpython=False, dblink_schema=None))
            assert conn.execute("SELECT mrl.sql_embedding_available()").fetchone()[0] is False
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
            conn.execute("SELECT mrl.create_embedding_set('T', 't', 't', 'body')")
            for sql in ("SELECT mrl.embed('hello')", "SELECT * FROM mrl.two_stage_search('t', 'hello')"):
                with pytest.raises(psycopg.errors.FeatureNotSupported) as info:
                    conn.execute(sql)
                assert "dblink or the plpython3u" in info.value.diag.message_primary
                assert "query vector" in info.value.diag.message_hint
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="sync mode needs SQL that can embed"):
                conn.execute("SELECT mrl.create_embedding_set('T2', 't2', 't', 'body', mode => 'sync')")
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS pgmrl_fallback WITH (FORCE)")


def test_dblink_belongs_to_pgmrl_alone(plpython, client, dsn, sidecar):
    """Where SQL embeds through dblink, an ordinary role gets the embedding but cannot reach dblink (its schema is
    closed), so it cannot replace, read through or hijack the session's connection to the sidecar."""
    import uuid

    from helpers import login_dsn

    conn = client.conn
    if conn.execute("SELECT mrl_internal._embed_transport()").fetchone()[0] != "dblink":
        pytest.skip("this server embeds through plpython3u")
    sidecar()
    role, password = f"eve_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        with psycopg.connect(login_dsn(dsn, role, password), autocommit=True) as eve:
            assert eve.execute("SELECT vector_dims(mrl.embed('hello'))").fetchone()[0] == 384
            for sql in ("SELECT mrl_dblink.dblink_get_connections()",
                        "SELECT mrl_dblink.dblink_disconnect('x')",
                        "SELECT * FROM mrl_dblink.dblink('x', 'SELECT 1') AS t(a int)"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    eve.execute(sql)
            assert eve.execute("SELECT vector_dims(mrl.embed('hello again'))").fetchone()[0] == 384
    finally:
        conn.execute(f"DROP ROLE {role}")


def test_texts_with_quotes_and_backslashes_arrive_intact(plpython, client, sidecar, embedder):
    sidecar()
    conn = client.conn
    for text in ["C:\\Users\\bob", "it's 'quoted'", 'printf("hello\\n");', "E'not an escape\\' string"]:
        emb = to_numpy(conn.execute("SELECT mrl.embed(%s)", (text,)).fetchone()[0])
        assert cosine(emb, embedder.encode([text], "query")[0]) >= 0.999, text


def test_an_ordinary_role_cannot_point_sql_at_another_sidecar(client, dsn):
    """configure_sidecar / configure_sidecar_pg are callable by PUBLIC, but only the schema's owner may write
    mrl.settings: an ordinary role cannot send everyone's texts (and the token) to an address of its choosing."""
    import uuid

    from helpers import login_dsn

    role, password = f"mal_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    client.conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        with psycopg.connect(login_dsn(dsn, role, password), autocommit=True) as mal:
            for sql in ("SELECT mrl.configure_sidecar('http://10.9.9.9:1', 'x')",
                        "SELECT mrl.configure_sidecar_pg('10.9.9.9', 1)"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    mal.execute(sql)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                mal.execute("SELECT value FROM mrl.settings")
    finally:
        client.conn.execute(f"DROP ROLE {role}")
