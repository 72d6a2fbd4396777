"""The PostgreSQL protocol 3.0 as the endpoint (pgwire.py) needs it: whole messages read from and written to one
client's socket (Wire), the fields of a frontend message (Payload), and the backend messages it sends. Standard
library only; written from PostgreSQL's "Frontend/Backend Protocol" documentation."""

from __future__ import annotations

import socket
import struct
import time

from .pgwire_sql import INT4_OID, QueryError
from .state import MAX_TEXT

MAX_STARTUP = 10_000  # bytes, as PostgreSQL
MAX_MESSAGE = 4 * MAX_TEXT + 65_536  # bytes: a text of MAX_TEXT characters in UTF-8, and the rest of the query


class Fatal(QueryError):
    """An error after which the connection closes (authentication, protocol violations)."""


class Closed(Exception):
    """The client went away."""


# ---- messages ---------------------------------------------------------------------------------------------------

def message(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return kind + struct.pack("!i", len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def error_message(err: QueryError, severity: str = "ERROR", kind: bytes = b"E") -> bytes:
    fields = [b"S" + cstr(severity), b"V" + cstr(severity), b"C" + cstr(err.sqlstate), b"M" + cstr(err.message)]
    if err.hint:
        fields.append(b"H" + cstr(err.hint))
    return message(kind, *fields, b"\0")


def row_description(columns: tuple[tuple[str, int], ...], formats: list[int]) -> bytes:
    parts = [struct.pack("!h", len(columns))]
    for (name, oid), fmt in zip(columns, formats):
        parts.append(cstr(name) + struct.pack("!ihihih", 0, 0, oid, 4 if oid == INT4_OID else -1, -1, fmt))
    return message(b"T", *parts)


def data_row(values: tuple[str, ...], columns: tuple[tuple[str, int], ...], formats: list[int]) -> bytes:
    parts = [struct.pack("!h", len(values))]
    for value, (_, oid), fmt in zip(values, columns, formats):
        data = struct.pack("!i", int(value)) if fmt == 1 and oid == INT4_OID else value.encode()
        parts += [struct.pack("!i", len(data)), data]
    return message(b"D", *parts)


def ready(status: str) -> bytes:
    return message(b"Z", status.encode())


class Payload:
    """Reads the fields of one message; a malformed message is a protocol violation (08P01)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Fatal("08P01", "invalid message format")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def int16(self) -> int:
        return int(struct.unpack("!h", self.take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack("!i", self.take(4))[0])

    def cstr(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise Fatal("08P01", "invalid message format: unterminated string")
        raw, self.pos = self.data[self.pos:end], end + 1
        return utf8(raw)


def utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise QueryError("22021", 'invalid byte sequence for encoding "UTF8"') from None


# ---- the byte stream of one client -----------------------------------------------------------------------------

class Wire:
    """Buffered reads of whole messages and buffered writes, flushed before waiting for the client."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.out = bytearray()
        self.deadline: float | None = None  # time.monotonic() by which every read and write must be done (None: none)

    def arm(self) -> None:
        """Sets the socket's timeout to what is left before the deadline: a wall-clock limit however slowly the
        client trickles bytes (a per-recv timeout alone would let one byte every few seconds hold the connection).
        TimeoutError (an OSError) once it has passed."""
        if self.deadline is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the connection's deadline passed")
        self.sock.settimeout(left)

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            self.flush()
            self.arm()
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed
            self.buf += chunk

    def _take(self, n: int) -> bytes:
        self._fill(n)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def startup_packet(self) -> bytes:
        length = struct.unpack("!i", self._take(4))[0]
        if not 8 <= length <= MAX_STARTUP:
            raise Fatal("08P01", "invalid length of startup packet")
        return self._take(length - 4)

    def message(self, limit: int = MAX_MESSAGE) -> tuple[bytes, bytes]:
        head = self._take(5)
        length = struct.unpack("!i", head[1:])[0]
        if not 4 <= length <= limit:
            raise Fatal("08P01", f"invalid message length {length} (at most {limit} bytes)")
        return head[:1], self._take(length - 4)

    def send(self, data: bytes) -> None:
        self.out += data

    def flush(self) -> None:
        if self.out:
            data, self.out = bytes(self.out), bytearray()
            self.arm()
            self.sock.sendall(data)
