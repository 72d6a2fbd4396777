"""The sidecar's PostgreSQL-protocol endpoint (`pgmrl serve --pg-port 8766`): query embeddings for SQL on servers
without plpython3u (the embedded default, managed services), through dblink:

    SELECT dblink_connect('pgmrl', 'host=127.0.0.1 port=8766 user=pgmrl password=<token> dbname=pgmrl');
    SELECT embedding::vector FROM dblink('pgmrl',
        $$SELECT embedding FROM embed('all-minilm-l6-v2', 'query', 'web browser')$$) AS t(embedding text);

It speaks protocol 3.0: the startup (SSLRequest answered 'S' with TLS when a certificate is configured, else 'N';
GSSENCRequest 'N'; direct TLS of libpq 17+ when TLS is on; 3.2 and `_pq_.` options declined with
NegotiateProtocolVersion), password authentication, and the simple and extended query protocols
(named and unnamed statements and portals, Describe, Close, Flush, Sync, pipelining). The language is fixed and tiny
(pgwire_sql.py): one row, one text column `embedding` in pgvector's text form `[0.1,0.2,...]` (so `::vector`
casts it), in text or binary result format (binary text is the same UTF-8 bytes). Parameters ($1..$3) are read
as UTF-8 in either format, for text-like parameter types (unknown, text, varchar, name, char).

Who may connect: the password must be one of the sidecar's bearer tokens (the HTTP API's Tokens), checked in
constant time; the user name is free (dblink wants one); loopback included. Failed: ErrorResponse 28P01 and the
connection closes. By default with SCRAM-SHA-256 (pgwire_scram.py: the token never crosses the wire, and libpq
checks that the server knows it too); auth="password" asks for it in clear instead, like HTTP's bearer header, for
clients without SCRAM. A non-loopback bind follows the HTTP rules (runner.check_bind); configure TLS
(--pg-tls-cert) when the database is on another host, or the statements and vectors travel in clear.

One thread per client connection (the model runs in that thread, as HTTP requests run in a thread pool), an accept
thread, and stop() that closes the listener and every client connection. Errors in a statement (unknown config
42704, empty text 22023, unsupported statement 42601) leave the connection usable, with PostgreSQL's transaction
semantics (a failed BEGIN block answers 25P02 until ROLLBACK).

Why hand-written (standard library only) rather than a PyPI library: riffq builds from a Rust
source distribution here (maturin, cargo) and hands results over as pyarrow tables; buenavista (Apache-2.0) offers
MD5 authentication against per-user plaintext passwords only, no TLS, errors without SQLSTATE, drops the
connection on any error, and accepts IPv4 loopback clients only unless an environment variable is set; pygwire
(MIT) is a sans-I/O codec only (the server loop, authentication and TLS would still be ours), needs Python 3.11
while pgmrl supports 3.10, and is a beta whose API may change between minor releases. The subset needed here is
small and fixed, so it is written against the protocol documentation (PostgreSQL, "Frontend/Backend Protocol").
Layout: pgwire_codec.py (framing, messages), pgwire_sql.py (the language), pgwire_scram.py (authentication), this
module (sessions, the server).
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psycopg

from ..db import connect
from ..embedding import EmbeddingConfig, get_embedder
from ..errors import PgmrlError
from ..worker.metrics import Metrics
from .auth import Tokens
from .pgwire_codec import Fatal, error_message
from .pgwire_scram import Verifier
from .pgwire_session import Session
from .pgwire_sql import QueryError
from .state import MAX_TEXT

log = logging.getLogger("pgmrl.sidecar.pgwire")

STARTUP_TIMEOUT = 10.0  # seconds from accept to an authenticated session: one deadline, however slow the bytes
MAX_STARTUP_CONNECTIONS = 64  # connections not yet authenticated, counted apart from max_connections
MAX_CONNECTIONS = 256  # authenticated sessions (the database holds one per backend that embeds)
ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})  # accept() backs off
MAX_CONFIG_NAME = 200  # characters
CONFIG_TTL = 60.0  # seconds a looked-up embedding config is reused (as the HTTP app)


# ---- values and TLS --------------------------------------------------------------------------------------------

def vector_text(vector: np.ndarray) -> str:
    """pgvector's text form, each component the shortest decimal that reads back as the same float32."""
    values = np.asarray(vector, dtype=np.float32)
    if not np.isfinite(values).all():
        raise QueryError("22P02", "the model returned a vector with NaN or infinite components")
    return "[" + ",".join(str(v) for v in values) + "]"


def tls_context(certfile: str | Path, keyfile: str | Path | None = None) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+, ALPN "postgresql" for libpq's direct TLS) from PEM files."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    except (OSError, ssl.SSLError) as exc:
        raise PgmrlError(f"cannot load the TLS certificate {certfile} / key {keyfile or '(in the same file)'}: "
                         f"{exc}") from None
    ctx.set_alpn_protocols(["postgresql"])
    return ctx


def keepalive(sock: socket.socket) -> None:
    """TCP keepalive after a minute idle, six probes 10 s apart: a peer that vanished ends its session."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


# ---- the server -------------------------------------------------------------------------------------------------

class PgWireServer:
    """The endpoint: start() binds and serves in threads, stop() closes the listener and every session.

    `configs` may be the HTTP app's config cache (name -> (time, EmbeddingConfig)), so both see the same configs.

    Limits, so that clients without the token cannot take what the database needs: a connection has
    `startup_timeout` seconds from accept to an authenticated session (one wall-clock deadline for TLS, startup and
    authentication, however slowly the bytes come); at most `max_startup` connections are unauthenticated at a time
    (more are refused at once with 53300), apart from the `max_connections` authenticated sessions, so they cannot
    take those. No per-address limit: the database connects from one address, one connection per backend.
    `idle_timeout` (seconds, None: never) closes an authenticated session that sends nothing for that long with
    57P05, as PostgreSQL's idle_session_timeout; off by default because a dblink connection the server closed fails
    its next query once. TCP keepalive ends sessions whose peer vanished (a host that went away without a FIN)."""

    def __init__(self, dsn: str, tokens: Tokens, metrics: Metrics | None = None, *, host: str = "127.0.0.1",
                 port: int = 8766, tls: ssl.SSLContext | None = None, device: str | None = None,
                 configs: dict[str, tuple[float, EmbeddingConfig]] | None = None,
                 max_connections: int = MAX_CONNECTIONS, auth: str = "scram-sha-256",
                 max_startup: int = MAX_STARTUP_CONNECTIONS, startup_timeout: float = STARTUP_TIMEOUT,
                 idle_timeout: float | None = None):
        if auth not in ("scram-sha-256", "password"):
            raise PgmrlError(f"auth must be 'scram-sha-256' or 'password', not {auth!r}")
        self.dsn, self.tokens, self.metrics = dsn, tokens, metrics or Metrics()
        self.auth, self.scram = auth, Verifier(tokens)
        self.host, self.port, self.tls, self.device = host, port, tls, device
        self.configs = configs if configs is not None else {}
        self.max_connections, self.max_startup = max_connections, max_startup
        self.startup_timeout, self.idle_timeout = startup_timeout, idle_timeout
        self._pending = 0
        self._logged: dict[str, float] = {}  # log_once: key -> when last logged
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sessions: dict[Session, threading.Thread] = {}
        self._admitted = 0
        self._db_lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    def start(self) -> PgWireServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._listener = socket.create_server((self.host, self.port), family=family, backlog=128)
            self._listener.setblocking(False)  # a connection gone between select() and accept() blocks nothing
        except OSError as exc:
            raise PgmrlError(f"the PostgreSQL-protocol endpoint could not listen on {self.host}:{self.port} "
                             f"({exc.strerror or exc}). Choose --pg-port.") from None
        self.port = self._listener.getsockname()[1]
        self._accepting = threading.Thread(target=self._accept_loop, name="pgmrl-pgwire", daemon=True)
        self._accepting.start()
        log.info("PostgreSQL-protocol endpoint on %s:%s%s", self.host, self.port, " (TLS)" if self.tls else "")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._accepting is not None:
            self._accepting.join(timeout)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sessions = dict(self._sessions)
        for session in sessions:
            try:
                socket.socket.shutdown(session.sock, socket.SHUT_RDWR)  # wakes its thread, TLS or not
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for thread in sessions.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._db_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> PgWireServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        """Accepts until stop(), whatever fails: out of descriptors or memory it backs off (up to 1 s) instead of
        spinning on a listener that stays readable; a connection that cannot be set up is closed."""
        assert self._listener is not None
        backoff = 0.0
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stopping.is_set():
                try:
                    if not selector.select(0.2):
                        continue
                    try:
                        sock, address = self._listener.accept()
                    except OSError as exc:
                        if exc.errno not in ACCEPT_ERRNOS:
                            continue  # EAGAIN, ECONNABORTED: that connection is gone
                        if not backoff:  # once an episode, and a flapping limit once in 10 minutes
                            self.log_once(f"accept: {exc.errno}", "pg endpoint: cannot accept connections (%s); "
                                          "backing off", exc.strerror or exc)
                        backoff = min(1.0, backoff * 2 or 0.1)
                        self._stopping.wait(backoff)
                        continue
                    if backoff:
                        log.debug("pg endpoint: accepting connections again")
                        backoff = 0.0
                    self._start_session(sock, f"{address[0]}:{address[1]}")
                except Exception as exc:  # never ends the loop (nothing would accept again)
                    self.log_once(f"accept: {type(exc).__name__}: {exc}", "pg endpoint: the accept loop: %s", exc)
                    self._stopping.wait(0.1)

    def _start_session(self, sock: socket.socket, peer: str) -> None:
        """A thread for a new connection, counted as unauthenticated; refused past max_startup; the socket closed
        if the thread cannot start."""
        session: Session | None = None
        try:
            with self._lock:
                full = self._pending >= self.max_startup
            if full:
                self._refuse(sock)
                return
            sock.settimeout(self.startup_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keepalive(sock)
            session = Session(self, sock, peer)
            session.wire.deadline = time.monotonic() + self.startup_timeout
            thread = threading.Thread(target=self._serve, args=(session,), name="pgmrl-pgwire-session", daemon=True)
            with self._lock:
                self._pending += 1
                session.pending = True
                self._sessions[session] = thread
            thread.start()
        except Exception as exc:
            if session is not None:
                with self._lock:
                    if self._sessions.pop(session, None) is not None and session.pending:
                        self._pending -= 1
                        session.pending = False
            try:
                sock.close()
            except OSError:
                pass
            self.log_once(f"setup: {type(exc).__name__}: {exc}", "pg endpoint: cannot serve the connection from %s "
                          "(%s: %s); it is closed", peer, type(exc).__name__, exc)

    def _refuse(self, sock: socket.socket) -> None:
        """53300 without reading the startup packet (as PostgreSQL's postmaster when it cannot start a backend)."""
        self.log_once("refused", "pg endpoint: %d connections are authenticating; refusing more", self.max_startup)
        try:
            sock.setblocking(False)
            sock.send(error_message(Fatal("53300", "sorry, too many clients already"), "FATAL"))
        except OSError:
            pass
        finally:
            sock.close()

    def _serve(self, session: Session) -> None:
        try:
            session.run()
        finally:
            with self._lock:
                self._sessions.pop(session, None)
                if session.pending:
                    self._pending -= 1
                    session.pending = False
                if session.admitted:
                    self._admitted -= 1
                    session.admitted = False

    def admit(self, session: Session) -> bool:
        """Moves an authenticated session from the unauthenticated count to max_connections; False when full."""
        with self._lock:
            if session.pending:
                self._pending -= 1
                session.pending = False
            if self._admitted >= self.max_connections:
                return False
            self._admitted += 1
            session.admitted = True
            return True

    def log_once(self, key: str, msg: str, *args: object) -> None:
        """Logs a warning once per distinct key and then at most every 10 minutes (errors a client can repeat
        must not fill the log); the first of a kind with its traceback when there is one."""
        now = time.monotonic()
        with self._lock:
            last = self._logged.get(key[:300])
            if last is not None and now - last < 600:
                return
            if len(self._logged) >= 256:  # many distinct messages: one line a minute for all of them
                key, last = "(more)", self._logged.get("(more)")
                if last is not None and now - last < 60:
                    return
            first = last is None
            self._logged[key[:300]] = now
        log.warning(msg, *args, exc_info=first and sys.exc_info()[0] is not None)

    # -- the one real statement

    def embed(self, config: str | None, kind: str | None, text: str | None) -> str:
        if config is None or kind is None or text is None:
            raise QueryError("22004", "the arguments of embed() may not be NULL")
        if len(config) > MAX_CONFIG_NAME:
            raise QueryError("22023", f"the config name is longer than {MAX_CONFIG_NAME} characters")
        if "\0" in config:
            raise QueryError("22021", 'invalid byte sequence for encoding "UTF8": 0x00')
        if kind not in ("query", "document"):
            raise QueryError("22023", f"kind must be 'query' or 'document', not {kind[:50]!r}")
        if not text:
            raise QueryError("22023", "the text to embed is empty")
        if len(text) > MAX_TEXT:
            raise QueryError("54000", f"the text to embed is longer than {MAX_TEXT} characters")
        try:
            vector = get_embedder(self._config(config), device=self.device).encode([text], kind)[0]
        except psycopg.Error as exc:
            raise QueryError(exc.sqlstate or "58000", exc.diag.message_primary or str(exc),
                             exc.diag.message_hint) from None
        except PgmrlError as exc:
            raise QueryError("58000", str(exc)) from None
        except QueryError:
            raise
        except Exception as exc:  # once per distinct error, not a traceback per request
            self.log_once(f"embed: {type(exc).__name__}: {exc}", "pg endpoint: embedding with config %r failed: %s: %s",
                          config[:MAX_CONFIG_NAME], type(exc).__name__, exc)
            raise QueryError("XX000", f"embedding failed: {type(exc).__name__}: {str(exc)[:500]}") from None
        self.metrics.embed_request()
        return vector_text(vector)

    def _config(self, name: str) -> EmbeddingConfig:
        hit = self.configs.get(name)
        if hit and time.monotonic() - hit[0] < CONFIG_TTL:
            return hit[1]
        with self._db_lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(self.dsn, autocommit=True, application_name="pgmrl pgwire")
            config = EmbeddingConfig.load(self._conn, name)
        self.configs[name] = (time.monotonic(), config)
        return config
