"""The versioned install: idempotent, recorded, the same through psql's script and through Python."""

import psycopg

from pgmrl import sqlinstall
from pgmrl.client import Client

from conftest import with_db

MIGRATIONS = ["001_schema.sql", "001a_repair_early_001.sql", "002_dead_letters_truncation.sql", "003_alter_sets.sql",
              "004_search_tuning.sql", "005_providers_finetune.sql", "006_queue_intake.sql", "007_security.sql",
              "007a_repair_early_007.sql"]


def test_install_twice_is_a_noop(client):
    assert client.install() == []  # the template already ran every migration
    assert sqlinstall.installed_migrations(client.conn) == MIGRATIONS
    names = [r[0] for r in client.conn.execute("SELECT name FROM mrl.embedding_configs WHERE builtin ORDER BY name")]
    assert names == ["all-minilm-l6-v2", "bge-large-en-v1.5", "e5-mistral-7b", "gte-large-en-v1.5",
                     "jina-embeddings-v2-base-code", "multilingual-e5-large", "multilingual-e5-small",
                     "mxbai-embed-large-v1", "nomic-embed-text-v1.5"]


def test_seeded_configs(client):
    row = client.conn.execute("SELECT supports_mrl, matryoshka_dims, default_truncate_dim, query_prefix, "
                              "document_prefix FROM mrl_internal._config('nomic-embed-text')").fetchone()
    assert row == (True, [768, 512, 256, 128, 64], 256, "search_query: ", "search_document: ")
    assert client.conn.execute("SELECT dims, supports_mrl FROM mrl_internal._config('all-minilm-l6-v2')").fetchone() == (384, False)


def test_reinstall_keeps_vectors_and_user_configs(client):
    conn = client.conn
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    conn.execute("INSERT INTO t VALUES (1, 'a')")
    conn.execute("SELECT mrl.create_embedding_set('T', 't', 't', 'body')")
    conn.execute("INSERT INTO mrl_data.t VALUES (1, array_fill(0.1, ARRAY[384])::vector, NULL, md5('a'))")
    conn.execute("INSERT INTO mrl.embedding_configs (name, model, dims) VALUES ('mine', '/models/mine', 8)")
    conn.execute("UPDATE mrl.embedding_configs SET query_prefix = 'tampered' WHERE name = 'bge-large-en-v1.5'")
    client.install()
    conn = client.conn  # install() reconnects
    assert conn.execute("SELECT count(*) FROM mrl_data.t").fetchone()[0] == 1
    assert conn.execute("SELECT model FROM mrl.embedding_configs WHERE name = 'mine'").fetchone()[0] == "/models/mine"
    assert conn.execute("SELECT query_prefix FROM mrl_internal._config('bge-large-en-v1.5')").fetchone()[0].startswith("Represent")


def test_printed_script_installs_a_fresh_database(server_dsn):
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS pgmrl_script_test")
        conn.execute("CREATE DATABASE pgmrl_script_test")
    dsn = with_db(server_dsn, "pgmrl_script_test")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
            conn.execute(sqlinstall.build_script("public"))
            conn.execute(sqlinstall.build_script("public"))  # twice: still fine
            assert sqlinstall.installed_migrations(conn) == MIGRATIONS
            fns = {r[0] for r in conn.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'mrl'")}
            assert {"create_embedding_set", "two_stage_search", "search", "vectors_table", "set_status",
                    "refit_rotation", "drop_embedding_set"} <= fns
            # every function pins its search_path
            unpinned = conn.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'mrl' "
                "AND NOT coalesce(p.proconfig, '{}') @> ARRAY['search_path=pg_catalog, pg_temp']").fetchall()
            assert unpinned == []
        with Client(dsn) as c:  # and the Python install on top of it has nothing left to do
            assert c.install() == []
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS pgmrl_script_test WITH (FORCE)")


def test_upgrade_from_the_first_schema_keeps_vectors(client, dsn, corpus, corpus_vectors):
    """A database at migration 001 (as the first release left it) is upgraded in place by `pgmrl install`."""
    from helpers import make_docs_table

    conn = client.conn
    make_docs_table(conn, corpus[:50])
    client.create_set("Docs", "docs", "docs", "body")
    client.load_vectors("docs", list(range(1, 51)), corpus_vectors[0][:50])
    before = conn.execute("SELECT id, embedding::text, content_hash FROM mrl_data.docs ORDER BY id").fetchall()
    # back to the 001 layout: what 002 added is not there yet
    conn.execute("DROP VIEW mrl.failed_items")
    conn.execute("ALTER TABLE mrl.queue DROP COLUMN failed_at")
    conn.execute("ALTER TABLE mrl_data.docs DROP COLUMN truncated")
    conn.execute("ALTER TABLE mrl.embedding_sets DROP COLUMN replaces CASCADE")
    conn.execute("CREATE OR REPLACE VIEW mrl.queue_status AS SELECT e.slug, count(q.qid) FILTER (WHERE NOT q.dead) "
                 "AS queued, count(q.qid) FILTER (WHERE q.dead) AS failed, clock_timestamp() - min(q.queued_at) "
                 "FILTER (WHERE NOT q.dead) AS oldest_queued_age FROM mrl.embedding_sets e "
                 "LEFT JOIN mrl.queue q ON q.set_id = e.id GROUP BY e.slug")  # as 001 defined it
    conn.execute("DROP VIEW mrl.finetune_summary")
    conn.execute("DROP TABLE mrl.queue_intake, mrl.finetune_pairs, mrl.finetune_datasets")
    conn.execute("ALTER TABLE mrl.embedding_configs DROP COLUMN endpoint")
    conn.execute("ALTER TABLE mrl.embedding_configs DROP COLUMN owner CASCADE")
    conn.execute("ALTER TABLE mrl.embedding_configs DROP CONSTRAINT embedding_configs_provider_check")
    for col in ("default_ef_search", "binary_coarse_k", "default_strategy", "tuned_at", "tuned_agreement",
                "text_columns", "owner"):
        conn.execute(f"ALTER TABLE mrl.embedding_sets DROP COLUMN {col} CASCADE")
    # the 003-era search signature (no filter), which 004 replaces
    conn.execute("CREATE FUNCTION mrl.search(text, vector, int DEFAULT 10, text DEFAULT 'two_stage', int DEFAULT NULL, "
                 "int DEFAULT NULL) RETURNS TABLE (id text, distance float8) LANGUAGE sql AS 'SELECT NULL::text, 0::float8'")
    conn.execute("DELETE FROM mrl.migrations WHERE name <> '001_schema.sql'")
    assert client.install() == MIGRATIONS[1:]
    conn = client.conn
    assert conn.execute("SELECT id, embedding::text, content_hash FROM mrl_data.docs ORDER BY id").fetchall() == before
    assert conn.execute("SELECT count(*) FROM mrl_data.docs WHERE NOT truncated").fetchone()[0] == 50
    assert conn.execute("SELECT count(*) FROM mrl.failed_items").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'search' "
                        "AND pronamespace = 'mrl'::regnamespace").fetchone()[0] == 5  # vector, text, halfvec, real[], float8[]
    assert len(client.search("docs", corpus_vectors[1][0], 5)) == 5
    assert client.install() == []
