"""One client session of the sidecar's PostgreSQL-protocol endpoint (pgwire.py holds the server): the startup
(TLS, protocol version), SCRAM or password authentication, and the simple and extended query protocols, with
PostgreSQL's transaction-block and error-until-Sync semantics. The embedding itself is the server's."""

from __future__ import annotations

import logging
import secrets
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .pgwire_codec import Closed, Fatal, Payload, Wire, cstr, data_row, error_message, message, ready, row_description, utf8
from .pgwire_scram import MECHANISM, Exchange
from .pgwire_sql import PARAMETERS, TEXT_LIKE_OIDS, TEXT_OID, QueryError, Statement, classify, split

if TYPE_CHECKING:
    from .pgwire import PgWireServer

log = logging.getLogger("pgmrl.sidecar.pgwire")

SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
PROTOCOL_3_0 = 3 << 16


@dataclass
class Prepared:
    statement: Statement
    param_types: list[int]

    @property
    def nparams(self) -> int:
        return max(len(self.param_types), self.statement.nparams)


@dataclass
class Portal:
    prepared: Prepared
    values: list[str | None]
    formats: list[int]
    done: bool = False


Result = tuple[tuple[tuple[str, int], ...], tuple[tuple[str, ...], ...], str]  # columns, rows, command tag


@dataclass(eq=False)  # a session is its own identity (the server keeps a set of them)
class Session:
    server: PgWireServer
    sock: socket.socket
    peer: str
    wire: Wire = field(init=False)
    pending: bool = False  # counted against the server's max_startup (not yet authenticated)
    admitted: bool = False  # counted against the server's max_connections
    tx: str = "I"  # I idle, T in a transaction block, E in a failed one
    skipping: bool = False  # after an error in the extended protocol: discard messages until Sync
    statements: dict[str, Prepared] = field(default_factory=dict)
    portals: dict[str, Portal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.wire = Wire(self.sock)

    def run(self) -> None:
        try:
            params = self._startup()
            if params is not None:
                self._authenticate(params)
                self._loop()
        except QueryError as exc:  # an error that ends the connection (startup, authentication, protocol)
            self._send_fatal(exc)
        except TimeoutError:  # the wire's deadline (socket.timeout is TimeoutError)
            if self.admitted:
                self._send_fatal(Fatal("57P05", "terminating connection due to idle-session timeout"))
            else:
                log.debug("pg endpoint: %s did not authenticate within %s s", self.peer, self.server.startup_timeout)
        except (Closed, OSError, EOFError):
            pass  # the client (or stop()) closed the connection; TLS errors are OSErrors
        except Exception as exc:
            self.server.log_once(f"session: {type(exc).__name__}: {exc}", "pg endpoint: session with %s failed: %s",
                                 self.peer, f"{type(exc).__name__}: {exc}")
            self._send_fatal(Fatal("XX000", "internal error in the pgmrl endpoint (see the sidecar's log)"))
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def _send_fatal(self, exc: QueryError) -> None:
        self.wire.deadline = time.monotonic() + 1.0  # a client that reads nothing does not keep the thread
        try:
            self.wire.send(error_message(exc, "FATAL"))
            self.wire.flush()
        except OSError:
            pass

    # -- startup and authentication

    def _startup(self) -> dict[str, str] | None:
        """The startup packet's parameters after any TLS/GSS negotiation; None for a CancelRequest."""
        self._direct_tls()
        negotiations = 0
        while True:
            packet = Payload(self.wire.startup_packet())
            code = packet.int32()
            if code in (SSL_REQUEST, GSSENC_REQUEST) and negotiations < 2:  # libpq: GSS first, then SSL
                negotiations += 1
                self._negotiate_tls(code)
                continue
            if code == CANCEL_REQUEST:
                return None  # statements are short and not interruptible: nothing to cancel
            if code >> 16 != 3:
                raise Fatal("0A000", f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: this endpoint "
                                     f"speaks 3.0")
            params = self._startup_params(packet)
            unknown = [k for k in params if k.startswith("_pq_.")]
            if code != PROTOCOL_3_0 or unknown:
                self.wire.send(message(b"v", struct.pack("!ii", PROTOCOL_3_0, len(unknown)),
                                       *(cstr(k) for k in unknown)))
            return params

    def _direct_tls(self) -> None:
        """libpq 17+ with sslnegotiation=direct starts TLS at once (first byte 0x16, a TLS handshake record)."""
        if self.server.tls is None:
            return
        self.wire.arm()
        if self.sock.recv(1, socket.MSG_PEEK) != b"\x16":
            return
        self.wire.arm()  # the handshake runs under what is left of the deadline
        tls_sock = self.server.tls.wrap_socket(self.sock, server_side=True)
        self.sock = self.wire.sock = tls_sock
        if tls_sock.selected_alpn_protocol() != "postgresql":
            raise Closed  # PostgreSQL requires the ALPN of direct TLS; nothing can be said in the clear

    def _negotiate_tls(self, code: int) -> None:
        self.wire.arm()
        if code == GSSENC_REQUEST or self.server.tls is None or isinstance(self.sock, ssl.SSLSocket):
            self.wire.sock.sendall(b"N")
            return
        if self.wire.buf:
            raise Fatal("08P01", "received unencrypted data after SSL request")
        self.wire.sock.sendall(b"S")
        self.sock = self.wire.sock = self.server.tls.wrap_socket(self.sock, server_side=True)

    @staticmethod
    def _startup_params(packet: Payload) -> dict[str, str]:
        params: dict[str, str] = {}
        while packet.pos < len(packet.data):
            key = packet.cstr()
            if not key:
                break
            params[key] = packet.cstr()
        if "user" not in params:
            raise Fatal("28000", "no PostgreSQL user name specified in startup packet")
        return params

    def _authenticate(self, params: dict[str, str]) -> None:
        user = params["user"]
        if not (self._scram() if self.server.auth == "scram-sha-256" else self._cleartext()):
            log.info("pg endpoint: password authentication failed for user %r from %s", user, self.peer)
            raise Fatal("28P01", f'password authentication failed for user "{user}"')
        if not self.server.admit(self):  # only authenticated sessions take one of max_connections
            raise Fatal("53300", "sorry, too many clients already")
        self.wire.deadline = None
        self.sock.settimeout(None)
        self.wire.send(message(b"R", struct.pack("!i", 0)))  # AuthenticationOk
        reported = {**PARAMETERS, "application_name": params.get("application_name", ""),
                    "session_authorization": user}
        for name, value in reported.items():
            self.wire.send(message(b"S", cstr(name), cstr(value)))
        self.wire.send(message(b"K", struct.pack("!ii", secrets.randbits(31), secrets.randbits(31))))
        self.wire.send(ready(self.tx))

    def _password_message(self) -> bytes:
        kind, payload = self.wire.message(limit=8192)
        if kind != b"p":
            raise Fatal("08P01", f"expected a password message, got {kind!r}")
        return payload

    def _cleartext(self) -> bool:
        self.wire.send(message(b"R", struct.pack("!i", 3)))  # AuthenticationCleartextPassword
        payload = self._password_message()
        password = payload[:-1] if payload.endswith(b"\0") else payload
        return self.server.tokens.role_of(password.decode("utf-8", "replace"))[0]

    def _scram(self) -> bool:
        self.wire.send(message(b"R", struct.pack("!i", 10), cstr(MECHANISM), b"\0"))  # AuthenticationSASL
        initial = Payload(self._password_message())
        if initial.cstr() != MECHANISM:
            raise Fatal("28000", f"the endpoint authenticates with {MECHANISM} only")
        exchange = Exchange(self.server.scram)
        server_first = exchange.first(initial.take(initial.int32()).decode("utf-8", "replace"))
        self.wire.send(message(b"R", struct.pack("!i", 11), server_first.encode()))  # AuthenticationSASLContinue
        server_final = exchange.final(self._password_message().decode("utf-8", "replace"))
        if server_final is None:
            return False
        self.wire.send(message(b"R", struct.pack("!i", 12), server_final.encode()))  # AuthenticationSASLFinal
        return True

    # -- the query loop

    def _loop(self) -> None:
        handlers = {b"Q": self._simple, b"P": self._parse, b"B": self._bind, b"D": self._describe,
                    b"E": self._execute, b"C": self._close, b"H": self._flush, b"S": self._sync,
                    b"F": self._function_call}
        idle = self.server.idle_timeout
        while True:
            self.wire.deadline = time.monotonic() + idle if idle else None  # the next message, whole, by then
            kind, data = self.wire.message()
            if kind == b"X":
                return
            if kind in (b"d", b"c", b"f"):
                continue  # copy messages outside COPY are ignored, as PostgreSQL does
            handler = handlers.get(kind)
            if handler is None:
                raise Fatal("08P01", f"invalid frontend message type {kind[0]}")
            if self.skipping and kind != b"S":
                continue
            try:
                handler(Payload(data))
            except Fatal:
                raise
            except QueryError as exc:
                self._error(exc)
                self.skipping = True

    def _error(self, exc: QueryError) -> None:
        self.wire.send(error_message(exc))
        if self.tx == "T":
            self.tx = "E"

    def _simple(self, payload: Payload) -> None:
        try:
            statements = split(payload.cstr())
            if not statements:
                self.wire.send(message(b"I"))
            for tokens in statements:
                statement = classify(tokens)
                if statement.nparams:
                    raise QueryError("42P02", f"there is no parameter ${statement.nparams}")
                columns, rows, tag = self._run(statement, [])
                formats = [0] * len(columns)
                if columns:
                    self.wire.send(row_description(columns, formats))
                self._send_rows(columns, rows, tag, formats)
        except Fatal:
            raise
        except QueryError as exc:
            self._error(exc)
        self.wire.send(ready(self.tx))

    def _send_rows(self, columns: tuple[tuple[str, int], ...], rows: tuple[tuple[str, ...], ...], tag: str,
                   formats: list[int]) -> None:
        if tag == "EMPTY":
            self.wire.send(message(b"I"))
            return
        for row in rows:
            self.wire.send(data_row(row, columns, formats))
        self.wire.send(message(b"C", cstr(tag)))

    def _run(self, st: Statement, values: list[str | None]) -> Result:
        """Runs a statement: (columns, rows, command tag); tag EMPTY for an empty statement."""
        if self.tx == "E" and st.kind not in ("commit", "rollback"):
            raise QueryError("25P02", "current transaction is aborted, commands ignored until end of transaction "
                                      "block")
        if st.kind == "embed":
            config, kind, text = (values[a - 1] if isinstance(a, int) else a for a in st.args)
            return st.columns, ((self.server.embed(config, kind, text),),), "SELECT 1"
        if st.kind == "empty":
            return (), (), "EMPTY"
        if st.kind == "begin":
            self.tx = "T"
        elif st.kind in ("commit", "rollback"):
            tag = "ROLLBACK" if self.tx == "E" else st.tag
            self.tx = "I"
            self.portals.clear()  # portals end with their transaction
            return (), (), tag
        elif st.kind == "discard":
            if self.tx != "I":
                raise QueryError("25001", "DISCARD ALL cannot run inside a transaction block")
            if st.tag == "DISCARD ALL":
                self.statements.clear()
                self.portals.clear()
        elif st.kind == "deallocate":
            self._deallocate(st.name)
        return st.columns, st.rows, st.tag

    def _deallocate(self, name: str | None) -> None:
        if name is None:
            self.statements = {k: v for k, v in self.statements.items() if not k}
        elif self.statements.pop(name, None) is None:
            raise QueryError("26000", f'prepared statement "{name}" does not exist')

    # -- the extended protocol

    def _parse(self, payload: Payload) -> None:
        name, sql = payload.cstr(), payload.cstr()
        types = [payload.int32() for _ in range(payload.int16())]
        statements = split(sql)
        if len(statements) > 1:
            raise QueryError("42601", "cannot insert multiple commands into a prepared statement")
        statement = classify(statements[0] if statements else [])
        for n, oid in enumerate(types, 1):
            if oid not in TEXT_LIKE_OIDS:
                raise QueryError("42804", f"parameter ${n} must be text (type {oid} was given)")
        if name and name in self.statements:
            raise QueryError("42P05", f'prepared statement "{name}" already exists')
        self.statements[name] = Prepared(statement, types)
        self.wire.send(message(b"1"))

    def _statement(self, name: str) -> Prepared:
        prepared = self.statements.get(name)
        if prepared is None:
            raise QueryError("26000", f'prepared statement "{name}" does not exist' if name else
                             "unnamed prepared statement does not exist")
        return prepared

    def _bind(self, payload: Payload) -> None:
        portal, prepared = payload.cstr(), self._statement(payload.cstr())
        param_formats = [payload.int16() for _ in range(payload.int16())]
        raw = []
        for _ in range(payload.int16()):
            length = payload.int32()
            raw.append(None if length == -1 else payload.take(length))
        result_formats = [payload.int16() for _ in range(payload.int16())]
        if len(raw) != prepared.nparams:
            raise QueryError("08P01", f"bind message supplies {len(raw)} parameters, but prepared statement "
                                      f"requires {prepared.nparams}")
        formats(param_formats, len(raw))  # validates them: text and binary text are the same bytes
        if portal and portal in self.portals:
            raise QueryError("42P03", f'portal "{portal}" already exists')
        values = [None if r is None else utf8(r) for r in raw]
        self.portals[portal] = Portal(prepared, values, formats(result_formats, len(prepared.statement.columns)))
        self.wire.send(message(b"2"))

    def _describe(self, payload: Payload) -> None:
        what, name = payload.take(1), payload.cstr()
        if what == b"S":
            prepared = self._statement(name)
            oids = prepared.param_types + [0] * (prepared.nparams - len(prepared.param_types))
            self.wire.send(message(b"t", struct.pack("!h", len(oids)),
                                   *(struct.pack("!i", oid or TEXT_OID) for oid in oids)))
            columns, fmts = prepared.statement.columns, [0] * len(prepared.statement.columns)
        elif what == b"P":
            portal = self._portal(name)
            columns, fmts = portal.prepared.statement.columns, portal.formats
        else:
            raise Fatal("08P01", f"invalid DESCRIBE message subtype {what!r}")
        self.wire.send(row_description(columns, fmts) if columns else message(b"n"))

    def _portal(self, name: str) -> Portal:
        portal = self.portals.get(name)
        if portal is None:
            raise QueryError("34000", f'portal "{name}" does not exist')
        return portal

    def _execute(self, payload: Payload) -> None:
        portal = self._portal(payload.cstr())
        payload.int32()  # row limit: every result here is one row at most
        if portal.done and portal.prepared.statement.columns:
            self.wire.send(message(b"C", cstr("SELECT 0")))
            return
        columns, rows, tag = self._run(portal.prepared.statement, portal.values)
        portal.done = True
        self._send_rows(columns, rows, tag, portal.formats)

    def _close(self, payload: Payload) -> None:
        what, name = payload.take(1), payload.cstr()
        if what not in (b"S", b"P"):
            raise Fatal("08P01", f"invalid CLOSE message subtype {what!r}")
        (self.statements if what == b"S" else self.portals).pop(name, None)
        self.wire.send(message(b"3"))

    def _flush(self, payload: Payload) -> None:
        self.wire.flush()

    def _sync(self, payload: Payload) -> None:
        self.skipping = False
        if self.tx == "I":
            self.portals.clear()
        self.wire.send(ready(self.tx))

    def _function_call(self, payload: Payload) -> None:
        """Not supported; like a simple query it ends with ReadyForQuery (it is no part of the extended protocol)."""
        self._error(QueryError("0A000", "the function call protocol is not supported by this endpoint"))
        self.wire.send(ready(self.tx))


def formats(codes: list[int], n: int) -> list[int]:
    """Per-column (or per-parameter) format codes from a Bind message's list: none, one for all, or one each."""
    if any(c not in (0, 1) for c in codes):
        raise QueryError("22023", f"unsupported format code: {next(c for c in codes if c not in (0, 1))}")
    if not codes:
        return [0] * n
    if len(codes) == 1:
        return codes * n
    if len(codes) != n:
        raise QueryError("08P01", f"bind message has {len(codes)} format codes for {n} values")
    return codes
