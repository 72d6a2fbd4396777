"""`pgmrl serve` behind a real pgbouncer in transaction mode (the Debian package): no server-side prepared
statements on pooled connections, LISTEN on a direct connection, and a sidecar that never exits."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import free_port
from helpers import make_docs_table

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@pytest.fixture
def pooler(dsn):
    """pgbouncer in transaction mode in front of the test database; yields the pooled DSN."""
    if not os.path.exists(PGBOUNCER):
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed (apt-get install pgbouncer)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    params = conninfo_to_dict(dsn)
    tmp = Path(tempfile.mkdtemp(prefix="pgmrl-pgbouncer-"))
    port = free_port()
    target = " ".join(f"{k}={params[k]}" for k in ("host", "port", "user", "password", "dbname") if params.get(k))
    (tmp / "pgbouncer.ini").write_text(f"""[databases]
pooled = {target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
logfile = {tmp}/pgbouncer.log
pidfile = {tmp}/pgbouncer.pid
""")
    cmd = [PGBOUNCER, str(tmp / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        user = pwd.getpwnam("pgmrl") if _has_user("pgmrl") else pwd.getpwnam("nobody")
        shutil.chown(tmp, user.pw_uid, user.pw_gid)
        cmd = [PGBOUNCER, "-u", user.pw_name, str(tmp / "pgbouncer.ini")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pooled = make_conninfo(host="127.0.0.1", port=port, dbname="pooled", user=params.get("user") or "postgres")
    deadline = time.monotonic() + 15
    while True:
        try:
            psycopg.connect(pooled, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                log = (tmp / "pgbouncer.log").read_text() if (tmp / "pgbouncer.log").exists() else ""
                proc.kill()
                raise RuntimeError(f"pgbouncer did not start: {log[-2000:]}") from None
            time.sleep(0.2)
    yield pooled
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(tmp, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.mark.slow
def test_sidecar_behind_pgbouncer_in_transaction_mode(client, dsn, pooler, sidecar, embedder, corpus):
    conn = client.conn
    make_docs_table(conn, corpus[:20])
    client.create_set("Docs", "docs", "docs", "body")
    url = sidecar(dsn=pooler, listen_dsn=dsn, poll_interval=30.0)  # polling alone would take 30 s: LISTEN must work
    stop = threading.Event()
    errors: list[Exception] = []

    def other_client():  # prepared statements through the same pool, as an application would use it
        try:
            with psycopg.connect(pooler, autocommit=True, prepare_threshold=0) as c:
                while not stop.is_set():
                    c.execute("SELECT count(*) FROM docs WHERE id > %s", (1,)).fetchone()
                    time.sleep(0.01)
        except psycopg.Error as exc:  # pgbouncer 1.18 cannot carry them: the app sees it, pgmrl must not
            errors.append(exc)

    others = [threading.Thread(target=other_client, daemon=True) for _ in range(3)]
    for t in others:
        t.start()
    lags = []
    started = time.monotonic()
    next_id = 1000
    with psycopg.connect(pooler, autocommit=True, prepare_threshold=None) as writer:  # the app writes unprepared
        while time.monotonic() - started < 62:
            writer.execute("INSERT INTO docs (id, body) VALUES (%s, %s)", (next_id, corpus[next_id]["doc"]))
            committed = time.monotonic()
            while not conn.execute("SELECT 1 FROM mrl_data.docs WHERE id = %s", (next_id,)).fetchone():
                assert time.monotonic() - committed < 10, f"row {next_id} not embedded after 10 s"
                time.sleep(0.02)
            lags.append(time.monotonic() - committed)
            next_id += 1
            time.sleep(1.0)
        # no session state leaked into the pool: a pooled connection is still the login it connected as
        assert writer.execute("SELECT current_user = session_user").fetchone()[0]
    stop.set()
    assert max(lags) < 2.0, f"embedding lags {sorted(lags)[-5:]}"
    assert len(lags) >= 30
    # the sidecar is still up and serving
    import httpx

    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    assert conn.execute("SELECT count(*) FROM mrl.queue WHERE NOT dead").fetchone()[0] == 0


def test_listen_through_a_transaction_pooler_is_detected(client, dsn, pooler, caplog):
    """Without --listen-dsn, the worker's self-sent notification never comes back through the pooler: it says so
    (and still works by polling); with a direct LISTEN connection it does not."""
    import logging

    from pgmrl.worker import Worker

    with caplog.at_level(logging.WARNING, logger="pgmrl.worker"):
        Worker(pooler).run(once=True)
    assert "notifications do not reach this worker's LISTEN connection" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pgmrl.worker"):
        Worker(pooler, listen_dsn=dsn).run(once=True)
    assert "notifications do not reach" not in caplog.text
