"""Frozen migrations (checksums) and the schema version check."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import psycopg
import pytest

from pgmrl import sqlinstall

from conftest import with_db

DATA = Path(__file__).resolve().parent / "data"
LEGACY = DATA / "legacy"
MIGRATIONS_DIR = Path(sqlinstall.__file__).resolve().parent / "sql" / "migrations"
VERSIONS = ["f74a3b3", "6df6e11", "dfa4366", "fe255e2"]


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




# -- frozen migrations ----------------------------------------------------------------------------------------------
def test_migrations_match_their_recorded_checksums():
    """A landed migration is never edited: sql/migrations/CHECKSUMS holds each one's sha256 (`sha256sum -c`)."""
    listed = {}
    for line in (MIGRATIONS_DIR / "CHECKSUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    files = dict(sqlinstall.migrations())
    assert sorted(listed) == sorted(files), "CHECKSUMS must list every migration, and only those"
    for name, text in files.items():
        assert hashlib.sha256((MIGRATIONS_DIR / name).read_bytes()).hexdigest() == sqlinstall.checksum(text)
        assert sqlinstall.checksum(text) == listed[name], (
            f"{name} differs from the checksum in sql/migrations/CHECKSUMS: a landed migration must not be edited; "
            f"put the change in a new migration")


def _legacy_migrations(version: str) -> dict[str, str]:
    script = (LEGACY / f"{version}.sql").read_text(encoding="utf-8")
    found = re.findall(r"WHERE name = '([^']+)'\) THEN\nEXECUTE \$pgmrl_migration\$\n(.*?)\n\$pgmrl_migration\$;",
                       script, flags=re.DOTALL)
    return {name: body.replace('"public".', "@vec@.") for name, body in found}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_landed_migration_text_is_known(version):
    """What each landed version recorded is today's text or one listed in HISTORICAL_CHECKSUMS (so an install never
    refuses a database that pgmrl itself installed)."""
    applied = _legacy_migrations(version)
    assert "001_schema.sql" in applied
    current = dict(sqlinstall.migrations())
    for name, body in applied.items():
        assert sqlinstall.checksum(body) in (sqlinstall.checksum(current[name]), *sqlinstall.HISTORICAL_CHECKSUMS.get(name, ())), name


def test_a_changed_migration_is_refused(client):
    conn = client.conn
    recorded = dict(conn.execute("SELECT name, checksum FROM mrl.migrations").fetchall())
    assert recorded == {name: sqlinstall.checksum(text) for name, text in sqlinstall.migrations()}
    conn.execute("UPDATE mrl.migrations SET checksum = repeat('0', 64) WHERE name = '002_dead_letters_truncation.sql'")
    with pytest.raises(psycopg.Error, match="migration 002_dead_letters_truncation.sql was changed after it was applied"):
        client.install()
    # the printed script (psql) refuses it the same way, and the install left nothing half done
    with psycopg.connect(client.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.Error, match="was changed after it was applied"):
            conn.execute(sqlinstall.build_script("public"))
        assert conn.execute("SELECT checksum FROM mrl.migrations WHERE name = '002_dead_letters_truncation.sql'"
                            ).fetchone()[0] == "0" * 64
        assert "002_dead_letters_truncation.sql" in sqlinstall.schema_problem(conn)


def test_checksums_of_old_databases_are_filled_in_and_known_edits_accepted(client):
    conn = client.conn
    conn.execute("UPDATE mrl.migrations SET checksum = NULL")  # as a pgmrl that kept none left them
    old_001 = sqlinstall.HISTORICAL_CHECKSUMS["001_schema.sql"][0]
    conn.execute("UPDATE mrl.migrations SET checksum = %s WHERE name = '001_schema.sql'", (old_001,))
    assert client.install() == []
    recorded = dict(client.conn.execute("SELECT name, checksum FROM mrl.migrations").fetchall())
    expected = {name: sqlinstall.checksum(text) for name, text in sqlinstall.migrations()}
    assert recorded == {**expected, "001_schema.sql": old_001}  # what was applied stays recorded
    assert sqlinstall.schema_problem(client.conn) is None


# -- the schema version check ---------------------------------------------------------------------------------------
def test_schema_problem(client, empty_db):
    conn = client.conn
    assert sqlinstall.schema_problem(conn) is None

    with psycopg.connect(empty_db, autocommit=True) as bare:
        assert "not installed" in sqlinstall.schema_problem(bare) and "pgmrl install" in sqlinstall.schema_problem(bare)

    conn.execute("UPDATE mrl.install_record SET functions_digest = 'x'")
    problem = sqlinstall.schema_problem(conn)
    assert "functions" in problem and "`pgmrl install`" in problem

    conn.execute("DELETE FROM mrl.migrations WHERE name = '006_queue_intake.sql'")
    problem = sqlinstall.schema_problem(conn)
    assert "older" in problem and "006_queue_intake.sql" in problem and "`pgmrl install`" in problem

    conn.execute("INSERT INTO mrl.migrations (name) VALUES ('006_queue_intake.sql'), ('999_from_the_future.sql')")
    problem = sqlinstall.schema_problem(conn)
    assert "newer" in problem and "999_from_the_future.sql" in problem and "upgrade pgmrl" in problem

    conn.execute("DELETE FROM mrl.migrations WHERE name = '999_from_the_future.sql'")
    client.install()  # puts the digest back (and checksums the re-inserted row)
    assert sqlinstall.schema_problem(client.conn) is None


def test_schema_problem_reads_only_what_any_login_may(client):
    """The worker's login checks it: mrl.migrations and mrl.install_record are readable by PUBLIC."""
    conn = client.conn
    conn.execute("CREATE ROLE pgmrl_nobody_upgrade NOLOGIN")
    try:
        with conn.transaction():
            conn.execute("SET LOCAL ROLE pgmrl_nobody_upgrade")
            assert sqlinstall.schema_problem(conn) is None
    finally:
        conn.execute("DROP ROLE pgmrl_nobody_upgrade")
