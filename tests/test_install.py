"""The versioned install: idempotent, recorded, the same through psql's script and through Python."""

import psycopg

from conftest import with_db
from pgmrl import schema
from pgmrl.client import Client

MIGRATIONS = ["001_schema.sql", "001a_repair_early_001.sql", "002_dead_letters_truncation.sql", "003_alter_sets.sql",
              "004_search_tuning.sql", "005_providers_finetune.sql", "006_queue_intake.sql", "007_security.sql",
              "007a_repair_early_007.sql", "008_install_record.sql", "009_chunks_full_text.sql",
              "010_compact_storage.sql"]


def test_install_twice_is_a_noop(client):
    assert client.install() == []  # the template already ran every migration
    assert schema.installed_migrations(client.conn) == MIGRATIONS
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
            conn.execute(schema.build_script("public"))
            conn.execute(schema.build_script("public"))  # twice: still fine
            assert schema.installed_migrations(conn) == MIGRATIONS
            assert schema.schema_problem(conn) is None  # the script itself records checksums and its digest
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


# Upgrades from earlier versions: tests/test_upgrade.py (installs their real SQL from tests/data/legacy).


def test_printed_script_through_psql_is_one_transaction_that_stops_at_an_error(server_dsn):
    """`pgmrl install --print-sql | psql`: installs (and again: nothing to do); a refused migration stops the
    script and leaves the database exactly as it was (nothing the script would rewrite is rewritten)."""
    import subprocess
    import sys

    from pgmrl.embedded.server import bin_dir

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS pgmrl_psql_test")
        conn.execute("CREATE DATABASE pgmrl_psql_test")
    dsn = with_db(server_dsn, "pgmrl_psql_test")
    printed = subprocess.run([sys.executable, "-m", "pgmrl.cli", "install", "--print-sql"], capture_output=True,
                             text=True, check=True).stdout

    def psql():
        return subprocess.run([str(bin_dir() / "psql"), "-X", "-q", dsn], input=printed, capture_output=True, text=True)

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
            assert psql().returncode == 0
            assert psql().returncode == 0
            assert schema.installed_migrations(conn) == MIGRATIONS and schema.schema_problem(conn) is None
            conn.execute("UPDATE mrl.migrations SET checksum = repeat('0', 64) WHERE name = '002_dead_letters_truncation.sql'")
            conn.execute("UPDATE mrl.install_record SET functions_digest = 'before'")
            conn.execute("COMMENT ON FUNCTION mrl.sql_embedding_available() IS 'before'")  # the script would rewrite it
            out = psql()
            assert out.returncode != 0 and "002_dead_letters_truncation.sql" in out.stderr, out.stderr
            assert conn.execute("SELECT functions_digest FROM mrl.install_record").fetchone()[0] == "before"
            assert conn.execute("SELECT obj_description('mrl.sql_embedding_available()'::regprocedure, 'pg_proc')"
                                ).fetchone()[0] == "before"
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS pgmrl_psql_test WITH (FORCE)")
