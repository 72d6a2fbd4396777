"""The sidecar's HTTP face: embeddings for SQL (mrl.embed via plpython3u) and apps, the REST API, health, metrics.

Same process as the worker (`pgmrl serve`). Every endpoint that reads or writes the database needs a bearer token,
loopback included; each token maps to a database role, and its requests run as that role (SET ROLE), so the API can
never do more than that role can in SQL. Open: /healthz, /readyz, /metrics, the API docs, and /v1/embed when the
server is bound to loopback. The token is checked and the body size capped (auth.Guard) before the body is read.
One router module per area: routes_health, routes_embed, routes_configs, routes_sets, routes_finetune.
"""

from __future__ import annotations

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .._version import __version__
from ..errors import PgmrlError
from ..worker.metrics import Metrics
from . import routes_configs, routes_embed, routes_finetune, routes_health, routes_sets
from .auth import Guard, Tokens
from .state import Db, status_of


async def _pg_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, psycopg.Error)
    diag = exc.diag
    return JSONResponse({"detail": diag.message_primary or str(exc), "hint": diag.message_hint,
                         "sqlstate": exc.sqlstate}, status_code=status_of(exc))


async def _pgmrl_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # never echo the input back: a 422 for a huge body would otherwise repeat it
    errors = [{"loc": e.get("loc"), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()[:20]]
    return JSONResponse({"detail": errors}, status_code=422)


def create_app(dsn: str, tokens: Tokens | dict[str, str | None] | None = None, metrics: Metrics | None = None,
               default_config: str = "all-minilm-l6-v2", open_embed: bool = False, *,
               token: str | None = None) -> FastAPI:
    """`tokens`: bearer token -> database role (None: the sidecar's own login); `token`: one token for the login.
    Without tokens only the open endpoints answer. `open_embed`: /v1/embed needs no token (a loopback bind)."""
    if not isinstance(tokens, Tokens):
        tokens = Tokens({**(tokens or {}), **({token: None} if token is not None else {})})
    app = FastAPI(title="pgmrl sidecar", version=__version__,
                  description="Embeddings for PostgreSQL (mrl.embed) and apps; embedding configs, sets and search. "
                              "Send `Authorization: Bearer <token>`: requests run as the token's database role.")
    app.add_middleware(Guard, tokens=tokens, open_embed=open_embed)
    app.state.dsn = dsn
    app.state.db = Db(dsn)
    app.state.metrics = metrics or Metrics()
    app.state.default_config = default_config
    app.state.configs = {}
    app.add_exception_handler(psycopg.Error, _pg_error)
    app.add_exception_handler(PgmrlError, _pgmrl_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    for module in (routes_health, routes_embed, routes_configs, routes_finetune, routes_sets):
        app.include_router(module.router)
    return app
