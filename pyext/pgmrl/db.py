"""Connections. This module owns how vectors cross the wire: pgvector's psycopg adapters, registered on
every connection pgmrl opens, so numpy arrays go in as `vector` and come back as numpy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import psycopg.sql
from pgvector.psycopg import register_vector
from psycopg.adapt import Dumper
from psycopg.rows import Row, TupleRow

from .errors import DatabaseUnavailable


class _VectorListDumper(Dumper):
    """Dumps a list of float32 numpy vectors as a `vector[]` text literal (used for whole batches)."""

    def dump(self, obj):
        parts = ['"[' + ",".join(np.char.mod("%.9g", np.asarray(v, dtype=np.float32))) + ']"' for v in obj]
        return ("{" + ",".join(parts) + "}").encode()


class VectorList(list):
    """Marks a list of vectors to be sent as one `vector[]` parameter."""


def connect(dsn: str, *, autocommit: bool = False, application_name: str = "pgmrl", role: str | None = None,
            **kwargs) -> psycopg.Connection:
    """Opens a connection with pgvector's adapters; `role`: SET ROLE to it for the whole session (the HTTP API acts
    as the role its token maps to, never as the sidecar's own login). No server-side prepared statements: behind a
    pooler in transaction mode (pgbouncer) a statement prepared on one server connection is missing, or already
    there, on the next ("prepared statement _pg3_0 already exists")."""
    kwargs.setdefault("prepare_threshold", None)
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, application_name=application_name, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL ({exc}). Check --dsn / PGMRL_DSN, or start the "
                         f"embedded server with `pgmrl up`.") from exc
    if role:
        try:
            conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(role)))
        except psycopg.Error:
            conn.close()
            raise
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        pass  # pgvector not created in this database yet (before `pgmrl install`)
    else:
        info = psycopg.types.TypeInfo.fetch(conn, "vector")
        if info is None:  # register_vector just found the type, so this cannot happen
            raise psycopg.ProgrammingError("vector type not found")
        dumper = type("VectorArrayDumper", (_VectorListDumper,), {"oid": info.array_oid})
        conn.adapters.register_dumper(VectorList, dumper)
    if not autocommit:
        conn.rollback()  # type look-ups opened a transaction; start clean
    return conn


def one(cur: psycopg.Cursor[Row]) -> Row:
    """The row a query that always returns one (an aggregate, a scalar function call) returned; raises
    psycopg.ProgrammingError if it returned none (an internal error, not a user's)."""
    row = cur.fetchone()
    if row is None:
        raise psycopg.ProgrammingError("the query returned no row where one was expected")
    return row


def scalar(cur: psycopg.Cursor[TupleRow]) -> Any:
    """The first column of the row a query that always returns one returned (see `one`)."""
    return one(cur)[0]


def to_numpy(value) -> np.ndarray:
    """A vector value read from the database as a float32 numpy array."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)
