"""What every route shares: the app's database connections (one per thread and role), the role a request acts
as, the embedding configs (cached a minute), and how database errors map to HTTP statuses."""

from __future__ import annotations

import threading
import time
from typing import Annotated

import psycopg
from fastapi import Request
from pydantic import StringConstraints

from ..db import connect
from ..embedding import EmbeddingConfig

MAX_TEXT = 100_000
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Db:
    """One autocommit connection per server thread and database role, reopened when it breaks. A connection is
    opened as the sidecar's login and switched to its role once (SET ROLE): roles never share a connection."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.local = threading.local()
        self.lock = threading.Lock()
        self.opened: list[psycopg.Connection] = []

    def conn(self, role: str | None = None) -> psycopg.Connection:
        conns = self.local.__dict__.setdefault("conns", {})
        c = conns.get(role)
        if c is None or c.closed or c.broken:
            c = conns[role] = connect(self.dsn, autocommit=True, application_name="pgmrl http", role=role)
            with self.lock:
                self.opened = [o for o in self.opened if not o.closed] + [c]
        return c

    def close_all(self) -> None:
        with self.lock:
            for c in self.opened:
                c.close()
            self.opened = []


def role_of(request: Request) -> str | None:
    """The database role of the request's token (set by auth.Guard); None: the sidecar's own login."""
    return request.scope.get("state", {}).get("role")


def conn(request: Request) -> psycopg.Connection:
    """The request's connection, acting as its token's role."""
    return request.app.state.db.conn(role_of(request))


def config(request: Request, name: str) -> EmbeddingConfig:
    """An embedding config by name or alias (the registry is readable by every role), cached for a minute."""
    cache: dict[str, tuple[float, EmbeddingConfig]] = request.app.state.configs
    hit = cache.get(name)
    if hit and time.monotonic() - hit[0] < 60:
        return hit[1]
    cfg = EmbeddingConfig.load(request.app.state.db.conn(), name)
    cache[name] = (time.monotonic(), cfg)
    return cfg


def status_of(exc: psycopg.Error) -> int:
    state = exc.sqlstate or ""
    if not state and isinstance(exc, psycopg.DataError):
        return 422  # refused by the driver before reaching the server (e.g. a NUL character)
    if state == "42704":
        return 404
    if state == "42501":
        return 403  # the token's role may not do this
    if state in ("42710", "23505"):
        return 409
    if state[:2] in ("22", "42", "23", "0A"):
        return 422
    if state == "55000":
        return 409  # object not in prerequisite state, e.g. a strategy whose index does not exist
    if state[:2] in ("08", "57") or isinstance(exc, psycopg.OperationalError):
        return 503
    return 500
