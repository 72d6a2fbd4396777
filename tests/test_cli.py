"""The command line, run as a user would: separate processes, a separate embedded server."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from pgmrl.embedded.server import EmbeddedServer


def pgmrl(*args, env=None, timeout=600, check=True):
    out = subprocess.run([sys.executable, "-m", "pgmrl.cli", *args], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, **(env or {})})
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.fixture(scope="module")
def data_dir():
    tmp = tempfile.mkdtemp(prefix="pgmrl-cli-")
    os.chmod(tmp, 0o755)
    yield Path(tmp) / "pgdata"
    EmbeddedServer(Path(tmp) / "pgdata").stop()
    shutil.rmtree(tmp, ignore_errors=True)


def test_help_explains_commands():
    out = pgmrl("--help").stdout
    for cmd in ("quickstart", "up", "down", "psql", "install", "serve", "create-set", "search", "status", "refit"):
        assert cmd in out
    serve = pgmrl("serve", "--help").stdout
    assert "PGMRL_DSN" in serve and "--once" in serve and "--batch-size" in serve


def test_print_sql():
    out = pgmrl("install", "--print-sql").stdout
    assert "CREATE OR REPLACE FUNCTION mrl.two_stage_search" in out
    assert "mrl.migrations" in out and "@vec@" not in out


def test_no_database_is_a_clear_error(tmp_path):
    out = pgmrl("status", env={"PGMRL_DATA_DIR": str(tmp_path / "none"), "PGMRL_DSN": ""}, check=False)
    assert out.returncode != 0
    assert "pass --dsn" in out.stderr and "pgmrl up" in out.stderr


def test_quickstart_runs_twice_without_duplicates(data_dir):
    env = {"PGMRL_DATA_DIR": str(data_dir), "PGMRL_DSN": ""}
    first = pgmrl("quickstart", "--rows", "150", env=env).stdout
    m = re.search(r"agreement@10 with exact ([0-9.]+)", first)
    assert m, first
    assert float(m.group(1)) >= 0.9
    assert "150/150 rows embedded, 0 queued, 0 failed" in first
    # it ends with a text search typed in psql: SQL embeds the words through the sidecar (dblink), 3 packages
    sql_part = first[first.index("in SQL (`pgmrl psql`)"):]
    assert "mrl.search_rows(NULL::debian_packages, 'debian', 'tool to compress files', k => 3)" in sql_part
    assert "(3 rows)" in sql_part, sql_part
    second = pgmrl("quickstart", "--rows", "150", env=env).stdout
    assert "embedding 0 queued rows" in second
    dsn = EmbeddedServer(data_dir).dsn()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM debian_packages").fetchone()[0] == 150
        assert conn.execute("SELECT count(*) FROM mrl.embedding_sets").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM mrl_data.debian").fetchone()[0] == 150

    # the kept server: status, search and psql find it without a DSN
    assert "debian: 150/150 rows embedded" in pgmrl("status", env=env).stdout
    hits = pgmrl("search", "debian", "web browser", "-k", "3", env=env).stdout.strip().splitlines()
    assert len(hits) == 3
    out = pgmrl("psql", "-At", "-c", "SELECT count(*) FROM mrl.two_stage_search('debian', "
                "(SELECT embedding FROM mrl_data.debian LIMIT 1), k => 10)", env=env).stdout
    assert out.strip() == "10"


def test_up_and_down(data_dir):
    env = {"PGMRL_DATA_DIR": str(data_dir)}
    assert "export PGMRL_DSN=" in pgmrl("up", env=env).stdout
    assert pgmrl("down", env=env).stdout.strip() == "stopped"
    assert pgmrl("down", env=env).stdout.strip() == "not running"
    assert "export PGMRL_DSN=" in pgmrl("up", env=env).stdout  # data kept
    with psycopg.connect(EmbeddedServer(data_dir).dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM debian_packages").fetchone()[0] == 150
