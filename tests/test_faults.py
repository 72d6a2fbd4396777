"""Fault injection with real processes: kill -9 the worker, restart PostgreSQL, run without a worker, concurrent
writers with two workers, and a provider that fails on some inputs. After each: the sync invariant holds."""

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from helpers import check_invariant, pending
from pgmrl.client import Client
from pgmrl.embedded.server import EmbeddedServer
from pgmrl.worker import Worker

pytestmark = pytest.mark.slow
TEXT = "left(body, 300)"  # short texts keep the model fast; the machinery is what is under test


def start_worker(dsn, *extra):
    return subprocess.Popen([sys.executable, "-m", "pgmrl.cli", "serve", "--dsn", dsn, "--no-http",
                             "--batch-size", "16", "--poll-interval", "0.5", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout):
    """Waits for a worker process; returns (exit code, stderr) and closes its pipe."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def count(conn, sql, *args):
    return conn.execute(sql, args).fetchone()[0]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def make_table(conn, corpus, n):
    conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text)")
    with conn.cursor().copy("COPY docs FROM STDIN") as cp:
        for i, r in enumerate(corpus[:n]):
            cp.write_row((i + 1, r["id"], r["doc"]))


def test_kill_9_mid_batch_during_backfill(client, dsn, corpus):
    conn = client.conn
    make_table(conn, corpus, 2500)
    client.create_set("Docs", "docs", "docs", TEXT)
    kills = 0
    for _ in range(5):
        before = count(conn, "SELECT count(*) FROM mrl_data.docs")
        proc = start_worker(dsn)
        wait_for(lambda before=before, proc=proc: count(conn, "SELECT count(*) FROM mrl_data.docs") > before
                 or proc.poll() is not None,
                 120, "the worker to make progress")
        time.sleep(random.uniform(0.2, 1.0))  # somewhere inside a batch
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        finish(proc, 30)
    assert kills >= 4
    assert count(conn, "SELECT count(*) FROM mrl.queue") > 0, "the backfill should not have finished yet"
    rc, err = finish(start_worker(dsn, "--once"), 600)
    assert rc == 0, err
    check_invariant(conn, "docs", TEXT)
    print(f"kill -9 injected {kills} times; invariant holds over 2500 rows")


def test_postgres_restart_while_worker_runs(corpus):
    tmp = tempfile.mkdtemp(prefix="pgmrl-restart-")
    os.chmod(tmp, 0o755)
    server = EmbeddedServer(Path(tmp) / "pgdata")
    dsn = server.start()
    proc = None
    try:
        c = Client(dsn)
        c.install()
        make_table(c.conn, corpus, 1500)
        c.create_set("Docs", "docs", "docs", TEXT)
        c.close()
        proc = start_worker(dsn)
        with psycopg.connect(dsn) as conn:
            wait_for(lambda: count(conn, "SELECT count(*) FROM mrl_data.docs") > 50, 120, "progress")
        restarts = 0
        for _ in range(2):
            server.stop()  # fast shutdown: every connection is cut
            time.sleep(1.5)
            server.start()
            restarts += 1
            time.sleep(3)
        assert proc.poll() is None, "the worker died instead of reconnecting: " + finish(proc, 10)[1]
        with psycopg.connect(dsn) as conn:
            conn.execute("INSERT INTO docs VALUES (9999, 'after', 'written after the restarts')")
            conn.commit()
            wait_for(lambda: pending(conn) == 0, 300, "the queue to drain")
            check_invariant(conn, "docs", TEXT)
        proc.send_signal(signal.SIGTERM)
        rc, err = finish(proc, 60)
        assert rc == 0, err
        print(f"PostgreSQL restarted {restarts} times under a running worker; invariant holds")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            finish(proc, 30)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_no_sidecar_during_5000_changes(client, dsn, corpus):
    conn = client.conn
    make_table(conn, corpus, 3000)
    client.create_set("Docs", "docs", "docs", TEXT)
    Worker(dsn).run(once=True)
    # the sidecar is down from here on: every write is accepted and queued
    with conn.cursor().copy("COPY docs FROM STDIN") as cp:
        for i, r in enumerate(corpus[3000:5000]):
            cp.write_row((3001 + i, r["id"], r["doc"]))
    conn.execute("UPDATE docs SET body = title || ': ' || body WHERE id % 3 = 0")     # 1,666 text changes
    conn.execute("UPDATE docs SET title = upper(title) WHERE id % 3 = 1")             # no text change
    conn.execute("UPDATE docs SET body = NULL WHERE id % 50 = 7")                     # text removed
    conn.execute("DELETE FROM docs WHERE id % 10 = 5")                                # 500 deletes
    queued = pending(conn)
    assert queued >= 3600
    rc, err = finish(start_worker(dsn, "--once"), 900)
    assert rc == 0, err
    check_invariant(conn, "docs", TEXT)
    print(f"{queued} queue items accumulated without a sidecar; all drained; invariant holds")


def test_concurrent_writers_and_two_workers(client, dsn, corpus):
    conn = client.conn
    make_table(conn, corpus, 300)
    client.create_set("Docs", "docs", "docs", TEXT)
    workers = [start_worker(dsn), start_worker(dsn)]
    errors, ops = [], [0]
    stop = threading.Event()

    def writer(seed):
        rng = random.Random(seed)
        with psycopg.connect(dsn, autocommit=True) as w:
            while not stop.is_set():
                key = rng.randint(1, 400)
                doc = corpus[rng.randint(0, 5000)]["doc"]
                op = rng.random()
                try:
                    if op < 0.35:
                        w.execute("INSERT INTO docs VALUES (%s, 't', %s) ON CONFLICT (id) DO UPDATE SET body = "
                                  "EXCLUDED.body", (key, doc))
                    elif op < 0.7:
                        w.execute("UPDATE docs SET body = %s WHERE id = %s", (doc, key))
                    elif op < 0.85:
                        w.execute("DELETE FROM docs WHERE id = %s", (key,))
                    else:
                        w.execute("UPDATE docs SET title = %s WHERE id = %s", (str(rng.random()), key))
                    ops[0] += 1
                except psycopg.Error as exc:  # any error a writer sees is a failure of pgmrl
                    errors.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    time.sleep(25)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
    wait_for(lambda: pending(conn) == 0, 300, "the queue to drain")
    check_invariant(conn, "docs", TEXT)
    for w in workers:
        w.send_signal(signal.SIGTERM)
        rc, err = finish(w, 60)
        assert rc == 0 and "Traceback" not in err, err
    print(f"4 writers ran {ops[0]} statements with 2 workers; no writer errors; invariant holds")


def test_provider_failing_on_some_inputs(client, dsn, corpus, embedder):
    conn = client.conn
    make_table(conn, corpus, 60)
    poison = [3, 17, 42]
    conn.execute("UPDATE docs SET body = 'POISON ' || body WHERE id = ANY(%s)", (poison,))
    client.create_set("Docs", "docs", "docs", "body")

    class Flaky:  # the real model, failing on the inputs a provider would reject
        config = embedder.config

        def encode(self, texts, kind="document"):
            if any(t.startswith("POISON") for t in texts):
                raise RuntimeError("provider rejected the input (HTTP 400)")
            return embedder.encode(texts, kind)

        def truncated(self, texts, kind="document"):
            return embedder.truncated(texts, kind)

    w = Worker(dsn, batch_size=16, max_attempts=2, embedder_for=lambda cfg: Flaky())
    w.run(once=True)
    assert count(conn, "SELECT count(*) FROM mrl_data.docs") == 57  # the rest of each batch landed
    # the three poisoned items failed (once; twice when the pass outlasted the first backoff on a busy machine)
    assert count(conn, "SELECT count(*) FROM mrl.queue WHERE attempts >= 1") == 3
    time.sleep(4.2)  # the first backoff (2^2 s) is over
    Worker(dsn, max_attempts=2, embedder_for=lambda cfg: Flaky()).run(once=True)
    failed = client.failed_items("docs")
    assert sorted(int(f["id"]) for f in failed) == poison
    assert all("HTTP 400" in f["last_error"] and f["attempts"] == 2 for f in failed)
    # fix the texts, retry: everything lands
    conn.execute("UPDATE docs SET body = substr(body, 8) WHERE id = ANY(%s)", (poison,))
    assert client.retry_failed("docs") == 3
    Worker(dsn).run(once=True)
    check_invariant(conn, "docs", "body")
    assert client.failed_items("docs") == []
