"""What users of other clients stumbled on: a command the hints name, errors that say what to do."""

import numpy as np
import psycopg
from click.testing import CliRunner

from conftest import with_db
from helpers import cosine
from pgmrl.cli import cli


def test_pgmrl_embed_prints_a_vector_sql_accepts(client, dsn, embedder):
    out = CliRunner().invoke(cli, ["embed", "web browser", "--dsn", dsn])
    assert out.exit_code == 0, out.output
    text = out.output.strip()
    vector = np.array([float(x) for x in text.strip("[]").split(",")], dtype=np.float32)
    assert vector.shape == (384,)
    assert cosine(vector, embedder.encode(["web browser"], "query")[0]) >= 0.999
    assert client.conn.execute("SELECT vector_dims(%s::vector)", (text,)).fetchone()[0] == 384


def test_the_null_vector_hint_names_a_command_that_exists(client):
    client.conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    client.create_set("T", "t", "t", "body")
    try:
        client.conn.execute("SELECT * FROM mrl.two_stage_search('t', NULL::vector)")
        raise AssertionError("a NULL query vector was accepted")
    except psycopg.errors.NullValueNotAllowed as exc:
        assert "pgmrl embed" in exc.diag.message_hint
    assert CliRunner().invoke(cli, ["embed", "--help"]).exit_code == 0


def test_commands_before_install_say_to_install(server_dsn):
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS pgmrl_bare")
        conn.execute("CREATE DATABASE pgmrl_bare")
    try:
        out = CliRunner().invoke(cli, ["status", "--dsn", with_db(server_dsn, "pgmrl_bare")])
        assert out.exit_code == 1
        assert "pgmrl is not installed in this database: run `pgmrl install`" in out.output, out.output
        assert "does not exist" not in out.output
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS pgmrl_bare WITH (FORCE)")


def test_a_stopped_embedded_server_is_named_by_its_data_directory(tmp_path):
    where = tmp_path / "nowhere"
    for args in (["psql"], ["status"]):
        out = CliRunner().invoke(cli, [*args, "--data-dir", str(where)] if args == ["psql"] else args,
                                 env={"PGMRL_DATA_DIR": str(where), "PGMRL_DSN": ""})
        assert out.exit_code == 1 and str(where) in out.output, out.output
