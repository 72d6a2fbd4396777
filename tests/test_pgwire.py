"""The sidecar's PostgreSQL-protocol endpoint (pgmrl.sidecar.pgwire) on the real embedded server and the real
model: psql (simple protocol), psycopg (extended protocol, text and binary), dblink from inside PostgreSQL,
authentication, errors, concurrency, SSL negotiation, TLS, and stop."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import psycopg
import pytest

from conftest import TEMPLATE, free_port, with_db
from helpers import cosine
from pgmrl.embedded.server import bin_dir
from pgmrl.sidecar.auth import Tokens
from pgmrl.sidecar.pgwire import PgWireServer, tls_context, vector_text
from pgmrl.sidecar.pgwire_sql import SUPPORTED, QueryError, classify, split
from pgmrl.worker import Metrics

TOKEN = "pgwire-test-token-0123456789abcdef"
CONFIG = "all-minilm-l6-v2"
EMBED = "SELECT embedding FROM embed('all-minilm-l6-v2', 'query', 'web browser')"


def conninfo(port: int, password: str = TOKEN, **extra: str) -> str:
    params = {"host": "127.0.0.1", "port": str(port), "user": "pgmrl", "password": password, "dbname": "pgmrl",
              "connect_timeout": "10", **extra}
    return " ".join(f"{k}={v}" for k, v in params.items())


def parse_vector(text: str) -> np.ndarray:
    assert text.startswith("[") and text.endswith("]"), text[:40]
    return np.array([float(x) for x in text[1:-1].split(",")], dtype=np.float32)


def psql(port: int, sql: str, password: str = TOKEN, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run([str(bin_dir() / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d",
                           conninfo(port, password, **extra), "-c", sql],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def pg_dsn(server_dsn, template_dsn):
    """A database of this module's own (pgmrl installed), for the endpoint's config lookups."""
    name = f"pgwire_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield with_db(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def endpoint(pg_dsn, embedder):
    """One endpoint (no TLS) on a free port, shared by the module's tests."""
    server = PgWireServer(pg_dsn, Tokens({TOKEN: None}), Metrics(), port=0).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cleartext(pg_dsn, embedder):
    """An endpoint asking for the password in clear (auth="password"), for raw-protocol tests."""
    server = PgWireServer(pg_dsn, Tokens({TOKEN: None, "another-token-0123456789": None}), port=0,
                          auth="password").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def expected(embedder):
    return embedder.encode(["web browser"], "query")[0]


def test_language():
    assert classify(split(EMBED)[0]).args == (CONFIG, "query", "web browser")
    st = classify(split("select EMBEDDING from EMBED($1, 'document', 'it''s')  -- comment")[0])
    assert st.kind == "embed" and st.args == (1, "document", "it's") and st.nparams == 1
    assert [classify(s).kind for s in split("SET a = 1; BEGIN; COMMIT;; DISCARD ALL; SELECT 1")] == \
           ["command", "begin", "commit", "discard", "rows"]
    assert split(" ; -- nothing\n") == []
    for bad in ("SELECT * FROM pg_class", "SELECT embedding FROM embed('a', 'b')", "DROP TABLE x",
                "SELECT embedding FROM embed('a', 'b', 'c') WHERE true"):
        with pytest.raises(QueryError) as err:
            classify(split(bad)[0])
        assert err.value.sqlstate in ("42601", "42883")
    with pytest.raises(QueryError, match="unterminated"):
        split("SELECT 'abc")
    assert vector_text(np.array([0.1, -2.5e-6, 1.0], dtype=np.float32)) == "[0.1,-2.5e-06,1.0]"


def test_string_literals():
    """Standard strings take a backslash literally (standard_conforming_strings is on); E'...' has the escapes."""
    def args(sql: str) -> tuple:
        return classify(split(f"SELECT embedding FROM embed({sql})")[0]).args

    assert args(r"'C:\Users\bob', 'query', 'a\\b\'") == ("C:\\Users\\bob", "query", "a\\\\b\\")
    assert args(r"'it''s', 'query', '\n'") == ("it's", "query", "\\n")
    assert args(r"E'C:\\Users\\bob', e'query', E'it\'s ''x''\n\t\\'") == ("C:\\Users\\bob", "query", "it's 'x'\n\t\\")
    assert args(r"E'\x41\101\u00e9\U0001F600\ud83d\ude00\xc3\xa9\q\b\f\r', 'query', 'x'")[0] == "AAé😀😀éq\b\f\r"
    for bad, sqlstate in ((r"E'abc\', 'query', 'x'", "42601"), (r"E'\x00', 'query', 'x'", "22021"),
                          (r"E'\xff', 'query', 'x'", "22021"), (r"E'\ud800', 'query', 'x'", "22P02"),
                          ("E'x', 'query', 'x", "42601")):
        with pytest.raises(QueryError) as err:
            args(bad)
        assert err.value.sqlstate == sqlstate, bad


def test_string_literals_end_to_end(endpoint, embedder, expected):
    out = psql(endpoint.port, r"SELECT embedding FROM embed('all-minilm-l6-v2', 'query', 'C:\Users\bob')")
    assert out.returncode == 0, out.stderr
    assert cosine(parse_vector(out.stdout.strip()), embedder.encode(["C:\\Users\\bob"], "query")[0]) >= 0.999
    out = psql(endpoint.port, r"SELECT embedding FROM embed(E'all-minilm-l6-v2', E'query', E'web\x20browser')")
    assert out.returncode == 0, out.stderr
    assert cosine(parse_vector(out.stdout.strip()), expected) >= 0.999


def test_psql_simple_protocol(endpoint, expected, pg_dsn):
    out = psql(endpoint.port, EMBED)
    assert out.returncode == 0, out.stderr
    vector = parse_vector(out.stdout.strip())
    assert vector.shape == (384,) and cosine(vector, expected) >= 0.999
    with psycopg.connect(pg_dsn) as conn:  # pgvector reads it back
        cast = conn.execute("SELECT (%s::text)::vector::text", (out.stdout.strip(),)).fetchone()[0]
    assert cosine(parse_vector(cast), expected) >= 0.999
    # what clients send on their own, several statements in one query string, and an empty query
    out = psql(endpoint.port, "SET application_name = 'x'; SELECT 1; SELECT version(); SHOW server_encoding; "
                              "DISCARD ALL; BEGIN; COMMIT")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] + lines[3:] == ["SET", "1", "UTF8", "DISCARD ALL", "BEGIN", "COMMIT"], lines
    assert lines[2].startswith("PostgreSQL 16.0 (pgmrl")
    assert psql(endpoint.port, ";").returncode == 0


def test_psycopg_extended_protocol(endpoint, expected, embedder):
    before = endpoint.metrics.http_embeds
    with psycopg.connect(conninfo(endpoint.port), autocommit=True) as conn:
        sql = "SELECT embedding FROM embed(%s, %s, %s)"
        text = conn.execute(sql, (CONFIG, "query", "web browser")).fetchone()[0]
        assert cosine(parse_vector(text), expected) >= 0.999
        with conn.cursor(binary=True) as cur:  # binary results; parameters sent in binary (%b) as well
            cur.execute("SELECT embedding FROM embed(%b, %b, %b)", (CONFIG, "query", "web browser"))
            assert cur.description[0].name == "embedding" and cur.description[0].type_code == 25
            assert parse_vector(cur.fetchone()[0]).tolist() == parse_vector(text).tolist()
        # a named, prepared statement used repeatedly, with a document and a literal mixed with parameters
        doc = embedder.encode(["a fast web browser"], "document")[0]
        for _ in range(3):
            row = conn.execute("SELECT embedding FROM embed('all-minilm-l6-v2', %s, %s)",
                               ("document", "a fast web browser"), prepare=True).fetchone()
            assert cosine(parse_vector(row[0]), doc) >= 0.999
        with conn.pipeline():  # several Parse/Bind/Execute before one Sync
            curs = [conn.execute(sql, (CONFIG, "query", t)) for t in ("web browser", "text editor")]
        assert [c.fetchone()[0][:1] for c in curs] == ["[", "["]
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    assert endpoint.metrics.http_embeds - before == 7


def test_errors_leave_the_connection_usable(endpoint):
    with psycopg.connect(conninfo(endpoint.port), autocommit=True) as conn:
        sql = "SELECT embedding FROM embed(%s, %s, %s)"
        with pytest.raises(psycopg.errors.UndefinedObject) as err:
            conn.execute(sql, ("no-such-config", "query", "x"))
        assert "no-such-config" in str(err.value) and "Known configs" in (err.value.diag.message_hint or "")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="empty"):
            conn.execute(sql, (CONFIG, "query", ""))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="'query' or 'document'"):
            conn.execute(sql, (CONFIG, "question", "x"))
        with pytest.raises(psycopg.errors.SyntaxError) as err:
            conn.execute("SELECT * FROM pg_class")
        assert SUPPORTED in str(err.value)
        assert conn.execute(sql, (CONFIG, "query", "still works")).fetchone()[0].startswith("[")
    with psycopg.connect(conninfo(endpoint.port)) as conn:  # in a transaction block: 25P02 until ROLLBACK
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.execute("DELETE FROM everything")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    out = psql(endpoint.port, "SELECT * FROM pg_class")
    assert out.returncode != 0 and "answers only SELECT embedding FROM embed" in out.stderr


def test_password_is_a_token(endpoint, cleartext):
    for server in (endpoint, cleartext):
        for password in ("wrong", TOKEN[:-1], TOKEN + "x"):
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                psycopg.connect(conninfo(server.port, password))
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(conninfo(server.port, "''"))
        out = psql(server.port, "SELECT 1", password="wrong")
        assert out.returncode == 2 and 'password authentication failed for user "pgmrl"' in out.stderr
    # SCRAM by default: the token never crosses the wire, and libpq can insist on it
    with psycopg.connect(conninfo(endpoint.port, require_auth="scram-sha-256"), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    with pytest.raises(psycopg.OperationalError, match="server requested a cleartext password"):
        psycopg.connect(conninfo(cleartext.port, require_auth="scram-sha-256"))
    for password in (TOKEN, "another-token-0123456789"):  # any of the tokens
        with psycopg.connect(conninfo(cleartext.port, password), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
    # the raw protocol: ErrorResponse with SQLSTATE 28P01 after the password message, then the connection closes
    with socket.create_connection(("127.0.0.1", cleartext.port), timeout=10) as s:
        body = b"user\0anyone\0database\0x\0\0"
        s.sendall(struct.pack("!ii", len(body) + 8, 3 << 16) + body)
        assert s.recv(9) == b"R" + struct.pack("!ii", 8, 3)  # AuthenticationCleartextPassword
        s.sendall(b"p" + struct.pack("!i", 4 + 6) + b"wrong\0")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply[:1] == b"E" and b"C28P01\0" in reply and b"SFATAL\0" in reply


def raw_session(port: int) -> socket.socket:
    """A socket past startup and authentication, the ReadyForQuery read."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    body = b"user\0raw\0\0"
    s.sendall(struct.pack("!ii", len(body) + 8, 3 << 16) + body)
    s.recv(9)
    s.sendall(b"p" + struct.pack("!i", 4 + len(TOKEN) + 1) + TOKEN.encode() + b"\0")
    assert read_until_ready(s)[0] == b"R"
    return s


def read_until_ready(s: socket.socket) -> list[bytes]:
    """The types of the messages up to and including ReadyForQuery."""
    kinds, buf = [], b""
    while not kinds or kinds[-1] != b"Z":
        while len(buf) < 5 or len(buf) < 1 + struct.unpack("!i", buf[1:5])[0]:
            chunk = s.recv(65536)
            assert chunk, "the endpoint closed the connection"
            buf += chunk
        n = 1 + struct.unpack("!i", buf[1:5])[0]
        kinds.append(buf[:1])
        buf = buf[n:]
    return kinds


def msg(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def test_extended_protocol_messages(cleartext):
    """What psycopg does not send by itself: Describe of a statement, an error that skips to Sync, FunctionCall."""
    with raw_session(cleartext.port) as s:
        s.sendall(msg(b"P", b"s\0SELECT embedding FROM embed($1, $2, $3)\0\0\0") + msg(b"D", b"Ss\0") + msg(b"S"))
        assert read_until_ready(s) == [b"1", b"t", b"T", b"Z"]  # ParseComplete, ParameterDescription, RowDescription
        bind = b"\0s\0\0\0\0\x03" + b"".join(struct.pack("!i", len(v)) + v for v in (b"nope", b"query", b"x"))
        s.sendall(msg(b"B", bind + b"\0\0") + msg(b"E", b"\0\0\0\0\0") + msg(b"B", bind + b"\0\0") + msg(b"S"))
        assert read_until_ready(s) == [b"2", b"E", b"Z"]  # the error skips the second Bind
        s.sendall(msg(b"F", struct.pack("!ih", 1598, 0) + struct.pack("!hh", 0, 0)))
        assert read_until_ready(s) == [b"E", b"Z"]
        s.sendall(msg(b"Q", b"SELECT 1\0"))
        assert read_until_ready(s) == [b"T", b"D", b"C", b"Z"]
        s.sendall(msg(b"X"))


def test_concurrent_clients(endpoint, embedder):
    texts = ["web browser", "text editor", "image viewer", "mail client"]
    wanted = embedder.encode(texts, "query")
    barrier, results, errors = threading.Barrier(4), {}, []

    def client(i: int) -> None:
        try:
            with psycopg.connect(conninfo(endpoint.port), autocommit=True) as conn:
                barrier.wait(30)  # four connections open at once
                for _ in range(3):
                    row = conn.execute("SELECT embedding FROM embed(%s, 'query', %s)", (CONFIG, texts[i])).fetchone()
                    results.setdefault(i, []).append(parse_vector(row[0]))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i in range(4):
        assert len(results[i]) == 3 and all(cosine(v, wanted[i]) >= 0.999 for v in results[i])


def test_ssl_request_without_tls(endpoint):
    """Without TLS an SSLRequest is answered 'N': sslmode=prefer goes on in the clear, require stops clearly.
    (The embedded psql is built without SSL and never asks; psycopg's libpq does.)"""
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as s:
        s.sendall(struct.pack("!ii", 8, 80877103))
        assert s.recv(1) == b"N"
    with psycopg.connect(conninfo(endpoint.port, sslmode="prefer"), autocommit=True) as conn:
        assert not conn.pgconn.ssl_in_use and conn.execute("SELECT 1").fetchone()[0] == 1
    with pytest.raises(psycopg.OperationalError, match="server does not support SSL, but SSL was required"):
        psycopg.connect(conninfo(endpoint.port, sslmode="require"))
    assert psql(endpoint.port, "SELECT 1", sslmode="prefer").stdout.strip() == "1"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls(pg_dsn, embedder, expected, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with PgWireServer(pg_dsn, Tokens({TOKEN: None}), port=0, tls=tls_context(cert, key)) as server:
        for extra in ({"sslmode": "require"}, {"sslmode": "verify-full", "sslrootcert": str(cert)},
                      {"sslmode": "require", "sslnegotiation": "direct"}):  # direct: libpq 17+
            with psycopg.connect(conninfo(server.port, **extra), autocommit=True) as conn:
                assert conn.pgconn.ssl_in_use, extra
                assert cosine(parse_vector(conn.execute(EMBED).fetchone()[0]), expected) >= 0.999
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(conninfo(server.port, "wrong", sslmode="require"))
        assert psql(server.port, "SELECT 1", sslmode="disable").stdout.strip() == "1"  # TLS stays optional


def test_stop_closes_connections(pg_dsn, embedder):
    server = PgWireServer(pg_dsn, Tokens({TOKEN: None}), port=0).start()
    conn = psycopg.connect(conninfo(server.port), autocommit=True)
    assert conn.execute("SELECT 1").fetchone()[0] == 1
    server.stop(timeout=10)
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(conninfo(server.port, connect_timeout="3"))


def test_dblink_through_serve(sidecar, dsn, expected):
    """`pgmrl serve --pg-port`: SQL in PostgreSQL gets the query vector through dblink, as a non-superuser to whom
    the DBA granted dblink (pgmrl's own dblink, in mrl_dblink, is closed to PUBLIC)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'dblink'").fetchone() is None:
            pytest.skip("this server has no dblink extension")
        conn.execute("CREATE EXTENSION IF NOT EXISTS dblink")
        schema = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension "
                              "WHERE extname = 'dblink'").fetchone()[0]
    port = free_port()
    sidecar(token=TOKEN, pg_port=port)
    role = f"pgwire_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        conn.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {role}")
        try:
            conn.execute(f"SET ROLE {role}")  # dblink lets a non-superuser connect only with a password asked for
            conn.execute(f"SELECT {schema}.dblink_connect('s', %s)", (conninfo(port),))
            row = conn.execute("SELECT embedding::vector, vector_dims(embedding::vector) "
                               f"FROM {schema}.dblink('s', $$" + EMBED + "$$) AS t(embedding text)").fetchone()
            assert row[1] == 384 and cosine(parse_vector(row[0]), expected) >= 0.999
            with pytest.raises(psycopg.errors.SyntaxError, match="answers only"):
                conn.execute(f"SELECT * FROM {schema}.dblink('s', 'SELECT 2 + 2') AS t(x int)")
            assert conn.execute(f"SELECT {schema}.dblink_disconnect('s')").fetchone()[0] == "OK"
        finally:
            conn.execute("RESET ROLE")
            conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {role}")
            conn.execute(f"REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} FROM {role}")
            conn.execute(f"DROP ROLE {role}")


def stalled(port: int) -> socket.socket:
    """A connection that starts SCRAM and then stops in the middle of its SASLInitialResponse (8000 bytes promised)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = b"user\0x\0database\0x\0\0"
    s.sendall(struct.pack("!ii", len(body) + 8, 3 << 16) + body)
    assert s.recv(1) == b"R"  # AuthenticationSASL
    s.sendall(b"p" + struct.pack("!i", 8000))
    return s


def closed(s: socket.socket) -> bool:
    """Whether the endpoint closed the connection (anything it still had to say is read and dropped)."""
    s.settimeout(0.05)
    try:
        while s.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_startup_deadline_and_limits(pg_dsn, embedder):
    """Unauthenticated connections have one deadline however slowly they trickle bytes, and a cap of their own:
    they never take the authenticated sessions' slots (max_connections)."""
    with PgWireServer(pg_dsn, Tokens({TOKEN: None}), port=0, startup_timeout=1.0, max_startup=6,
                      max_connections=2) as server:
        start = time.monotonic()
        socks = [stalled(server.port) for _ in range(4)]
        socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))  # says nothing at all
        with psycopg.connect(conninfo(server.port), autocommit=True) as a, \
                psycopg.connect(conninfo(server.port), autocommit=True) as b:
            assert a.execute("SELECT 1").fetchone()[0] == b.execute("SELECT 1").fetchone()[0] == 1
            with pytest.raises(psycopg.OperationalError, match="too many clients"):  # max_connections=2
                psycopg.connect(conninfo(server.port))
            socks.append(stalled(server.port))  # the 6th unauthenticated one: the cap is reached
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as extra:
                reply = extra.recv(4096)
            assert reply[:1] == b"E" and b"C53300\0" in reply
        closed_at: dict[int, float] = {}
        while len(closed_at) < len(socks) and time.monotonic() - start < 10:
            for i, s in enumerate(socks):
                if i not in closed_at:
                    try:
                        s.sendall(b"S")  # one byte at a time: a per-recv timeout would never fire
                    except OSError:
                        pass
                    if closed(s):
                        closed_at[i] = time.monotonic() - start
            time.sleep(0.1)
        assert len(closed_at) == len(socks), closed_at
        assert min(closed_at.values()) >= 0.9 and max(closed_at.values()) < 4, closed_at
        for s in socks:
            s.close()
        with psycopg.connect(conninfo(server.port), autocommit=True) as conn:  # nothing left counted
            assert conn.execute("SELECT 1").fetchone()[0] == 1
        assert server._pending == 0 and server._admitted == 1


def test_accept_survives_failures(pg_dsn, embedder, monkeypatch, caplog):
    """A thread that cannot start closes that connection only; EMFILE from accept() backs off instead of spinning;
    the accept loop goes on."""
    with PgWireServer(pg_dsn, Tokens({TOKEN: None}), port=0) as server:
        real_start, failed = threading.Thread.start, []

        def start(self: threading.Thread) -> None:
            if self.name == "pgmrl-pgwire-session" and not failed:
                failed.append(self)
                raise RuntimeError("can't start new thread")
            real_start(self)

        monkeypatch.setattr(threading.Thread, "start", start)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            assert s.recv(100) == b""  # closed
        assert failed
        with psycopg.connect(conninfo(server.port), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1

        class Flaky:  # the listener, out of descriptors three times
            def __init__(self, real: socket.socket):
                self.real, self.calls = real, 0

            def accept(self):
                self.calls += 1
                if self.calls <= 3:
                    raise OSError(errno.EMFILE, "Too many open files")
                return self.real.accept()

            def __getattr__(self, name: str):
                return getattr(self.real, name)

        flaky = Flaky(server._listener)
        server._listener = flaky
        with caplog.at_level(logging.WARNING, logger="pgmrl.sidecar.pgwire"), \
                psycopg.connect(conninfo(server.port), autocommit=True) as conn:  # waits out the back-off
            assert conn.execute("SELECT 1").fetchone()[0] == 1
        assert flaky.calls == 4  # 0.1 + 0.2 + 0.4 s of back-off, not a busy loop
        assert sum("cannot accept" in r.getMessage() for r in caplog.records) == 1
        assert server._accepting.is_alive() and server._pending == 0


def test_bad_config_and_internal_errors_are_not_log_spam(endpoint, monkeypatch, caplog):
    with psycopg.connect(conninfo(endpoint.port), autocommit=True) as conn:
        sql = "SELECT embedding FROM embed(%s, %s, %s)"
        with caplog.at_level(logging.INFO, logger="pgmrl.sidecar.pgwire"):
            for _ in range(3):
                with pytest.raises(psycopg.errors.InvalidParameterValue, match="longer than 200"):
                    conn.execute(sql, ("c" * 201, "query", "x"))
                with pytest.raises(psycopg.errors.InvalidParameterValue, match="'query' or 'document'"):
                    conn.execute(sql, (CONFIG, "q" * 10_000, "x"))
            assert not caplog.records
            marker = uuid.uuid4().hex

            def broken(*args, **kwargs):
                raise ValueError(f"model exploded {marker}")

            monkeypatch.setattr("pgmrl.sidecar.pgwire.get_embedder", broken)
            for _ in range(5):
                with pytest.raises(psycopg.errors.InternalError_, match=f"model exploded {marker}"):
                    conn.execute(sql, (CONFIG, "query", "x"))
        assert len([r for r in caplog.records if marker in r.getMessage()]) == 1  # once, not per request
        monkeypatch.undo()
        assert conn.execute(sql, (CONFIG, "query", "works")).fetchone()[0].startswith("[")


def test_idle_timeout(pg_dsn, embedder):
    with PgWireServer(pg_dsn, Tokens({TOKEN: None}), port=0, auth="password", idle_timeout=0.5) as server:
        with raw_session(server.port) as s:
            s.sendall(msg(b"Q", b"SELECT 1\0"))
            assert read_until_ready(s) == [b"T", b"D", b"C", b"Z"]
            s.settimeout(5)
            reply = b""
            while chunk := s.recv(4096):  # within the idle timeout the endpoint says why and closes
                reply += chunk
        assert reply[:1] == b"E" and b"C57P05\0" in reply
        deadline = time.monotonic() + 5  # the session thread gives its slot back just after closing
        while server._admitted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server._admitted == 0


def test_serve_options_follow_http_rules(dsn):
    from pgmrl import PgmrlError
    from pgmrl.sidecar import run_sidecar

    with pytest.raises(PgmrlError, match="refusing to listen on 0.0.0.0 without a token"):
        run_sidecar(dsn, pg_port=free_port(), pg_host="0.0.0.0")
    with pytest.raises(PgmrlError, match="16-character token|at least 16"):
        run_sidecar(dsn, pg_port=free_port(), pg_host="0.0.0.0", token="short-token")
    with pytest.raises(PgmrlError, match="beside the HTTP server"):
        run_sidecar(dsn, pg_port=free_port(), http=False)


def test_serve_help_names_the_options():
    out = subprocess.run([sys.executable, "-m", "pgmrl.cli", "serve", "--help"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for option in ("--pg-port", "PGMRL_PG_PORT", "--pg-host", "PGMRL_PG_HOST", "--pg-tls-cert", "--pg-tls-key"):
        assert option in out
