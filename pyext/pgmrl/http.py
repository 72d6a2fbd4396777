"""The sidecar's HTTP face: embeddings for SQL (mrl.embed via plpython3u) and apps, the REST API, health, metrics.

Same process as the worker (`pgmrl serve`). Every endpoint that reads or writes the database needs a bearer token,
loopback included; each token maps to a database role, and its requests run as that role (SET ROLE), so the API can
never do more than that role can in SQL. Open: /healthz, /readyz, /metrics, the API docs, and /v1/embed when the
server is bound to loopback. The token is checked and the body size capped before the body is read.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Annotated, Literal

import numpy as np
import psycopg
from psycopg.types.json import Jsonb
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field, StringConstraints

from . import __version__
from .auth import Guard, Tokens
from .db import connect
from .embedders import EmbeddingConfig, get_embedder, resolve_local_model
from .errors import PgmrlError
from .mrl import truncate

MAX_TEXT = 100_000
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]


class Metrics:
    """Counters shared by the worker and the HTTP server, rendered in Prometheus text format."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows_embedded = 0
        self.batches = 0
        self.batch_seconds = 0.0
        self.errors = 0
        self.http_embeds = 0

    def batch(self, rows: int, seconds: float) -> None:
        with self.lock:
            self.rows_embedded += rows
            self.batches += 1
            self.batch_seconds += seconds

    def error(self, n: int = 1) -> None:
        with self.lock:
            self.errors += n


class _Db:
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


class EmbedRequest(BaseModel):
    texts: list[Text] = Field(min_length=1, max_length=1024)
    config: Annotated[str, StringConstraints(min_length=1, max_length=200)] = "all-minilm-l6-v2"
    kind: Literal["query", "document"] = "query"
    truncate_dim: int | None = Field(None, ge=1, le=16000)
    format: Literal["json", "f32"] = "json"


class AutoEmbedRules(BaseModel):
    on_create: bool = True
    on_update: bool = True


class CreateSetRequest(BaseModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    slug: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    set_type: Literal["full"] = "full"
    embedding_config_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] = "all-minilm-l6-v2"
    truncate_dim: int | None = Field(None, ge=1, le=16000)
    auto_embed_rules: AutoEmbedRules = AutoEmbedRules()
    source_table: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    text_column: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    mode: Literal["async", "sync"] = "async"


class FineTuneSource(BaseModel):
    type: Literal["embedding_set"] = "embedding_set"
    slug: Annotated[str, StringConstraints(min_length=1, max_length=40)]


class FineTuneConfig(BaseModel):
    queries_per_doc: int = Field(4, ge=1, le=20)
    validation_share: float = Field(0.2, gt=0, lt=1)


class FineTuneGenerateRequest(BaseModel):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
    source: FineTuneSource
    config: FineTuneConfig = FineTuneConfig()


def _status_of(exc: psycopg.Error) -> int:
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


def create_app(dsn: str, tokens: Tokens | dict[str, str | None] | None = None, metrics: Metrics | None = None,
               default_config: str = "all-minilm-l6-v2", open_embed: bool = False, *,
               token: str | None = None) -> FastAPI:
    """`tokens`: bearer token -> database role (None: the sidecar's own login); `token`: one token for the login.
    Without tokens only the open endpoints answer. `open_embed`: /v1/embed needs no token (a loopback bind)."""
    db = _Db(dsn)
    metrics = metrics or Metrics()
    configs: dict[str, tuple[float, EmbeddingConfig]] = {}
    if not isinstance(tokens, Tokens):
        tokens = Tokens({**(tokens or {}), **({token: None} if token is not None else {})})

    def role_of(request: Request) -> str | None:
        return request.scope.get("state", {}).get("role")

    def conn(request: Request) -> psycopg.Connection:
        return db.conn(role_of(request))

    app = FastAPI(title="pgmrl sidecar", version=__version__,
                  description="Embeddings for PostgreSQL (mrl.embed) and apps; embedding configs, sets and search. "
                              "Send `Authorization: Bearer <token>`: requests run as the token's database role.")
    app.add_middleware(Guard, tokens=tokens, open_embed=open_embed)
    app.state.metrics = metrics
    app.state.db = db
    app.state.default_config = default_config
    auth: list = []  # the token is checked by auth.Guard, before the body is read

    @app.exception_handler(psycopg.Error)
    async def _pg_error(request, exc: psycopg.Error):
        diag = exc.diag
        return JSONResponse({"detail": diag.message_primary or str(exc), "hint": diag.message_hint,
                             "sqlstate": exc.sqlstate}, status_code=_status_of(exc))

    @app.exception_handler(PgmrlError)
    async def _pgmrl_error(request, exc: PgmrlError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        # never echo the input back: a 422 for a huge body would otherwise repeat it
        errors = [{"loc": e.get("loc"), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()[:20]]
        return JSONResponse({"detail": errors}, status_code=422)

    def config(name: str) -> EmbeddingConfig:
        hit = configs.get(name)
        if hit and time.monotonic() - hit[0] < 60:
            return hit[1]
        cfg = EmbeddingConfig.load(db.conn(), name)  # the registry is readable by every role
        configs[name] = (time.monotonic(), cfg)
        return cfg

    def config_json(row: dict) -> dict:
        out = dict(row)
        out["params_millions"] = float(out["params_millions"]) if out["params_millions"] is not None else None
        out.pop("created_at", None)
        try:
            resolve_local_model(EmbeddingConfig(row["name"], row["model"], row["provider"], row["dims"]))
            out["available_offline"] = True
        except PgmrlError:
            out["available_offline"] = False
        return out

    def config_rows(request: Request, where: str = "", params: tuple = ()) -> list[dict]:
        cur = conn(request).cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute("SELECT * FROM mrl.embedding_configs " + where + " ORDER BY name", params).fetchall()

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    def readyz() -> Response:
        problems = []
        try:
            if db.conn().execute("SELECT to_regclass('mrl.migrations')").fetchone()[0] is None:
                problems.append("the mrl schema is not installed (pgmrl install)")
        except psycopg.Error as exc:
            problems.append(f"database unreachable: {exc.__class__.__name__}")
        if not getattr(app.state, "model_ready", False):
            problems.append(f"model {default_config} not loaded yet")
        body = {"status": "ready" if not problems else "not ready", "problems": problems}
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["health"])
    def prometheus() -> str:
        lines = []
        rows = db.conn().execute("SELECT slug, queued, failed, extract(epoch FROM oldest_queued_age) "
                                 "FROM mrl.queue_status ORDER BY slug").fetchall()
        for name, help_, idx in (("pgmrl_queue_depth", "Queued items per set", 1),
                                 ("pgmrl_queue_dead_items", "Dead-lettered items per set", 2),
                                 ("pgmrl_queue_oldest_age_seconds", "Age of the oldest queued item", 3)):
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
            lines += [f'{name}{{set="{r[0]}"}} {float(r[idx] or 0)}' for r in rows]
        m = metrics
        with m.lock:
            lines += ["# HELP pgmrl_rows_embedded_total Rows embedded by this process's worker",
                      "# TYPE pgmrl_rows_embedded_total counter", f"pgmrl_rows_embedded_total {m.rows_embedded}",
                      "# HELP pgmrl_embed_batch_seconds Worker batch latency (embed + write)",
                      "# TYPE pgmrl_embed_batch_seconds summary",
                      f"pgmrl_embed_batch_seconds_sum {m.batch_seconds}", f"pgmrl_embed_batch_seconds_count {m.batches}",
                      "# HELP pgmrl_errors_total Failed embedding attempts", "# TYPE pgmrl_errors_total counter",
                      f"pgmrl_errors_total {m.errors}",
                      "# HELP pgmrl_http_embed_requests_total Requests to /v1/embed",
                      "# TYPE pgmrl_http_embed_requests_total counter", f"pgmrl_http_embed_requests_total {m.http_embeds}"]
        return "\n".join(lines) + "\n"

    @app.post("/v1/embed", tags=["embeddings"], dependencies=auth,
              responses={200: {"content": {"application/octet-stream": {}}}, 404: {}, 422: {}})
    def embed(req: EmbedRequest, request: Request) -> Response:
        cfg = config(req.config)
        if req.truncate_dim is not None:
            row = conn(request).execute("SELECT supports_mrl, matryoshka_dims FROM mrl_internal._config(%s)", (req.config,)).fetchone()
            if not row[0] or req.truncate_dim not in row[1]:
                raise HTTPException(422, f"truncate_dim {req.truncate_dim} is not a Matryoshka dimension of {cfg.name}"
                                         f" (valid: {row[1] or 'none, not an MRL model'})")
        vectors = get_embedder(cfg).encode(req.texts, kind=req.kind)
        if req.truncate_dim is not None:
            vectors = truncate(vectors, req.truncate_dim)
        with metrics.lock:
            metrics.http_embeds += 1
        if req.format == "f32":
            return Response(np.ascontiguousarray(vectors, dtype="<f4").tobytes(), media_type="application/octet-stream",
                            headers={"X-Dims": str(vectors.shape[1]), "X-Count": str(vectors.shape[0])})
        return JSONResponse({"config": cfg.name, "kind": req.kind, "dims": int(vectors.shape[1]),
                             "vectors": vectors.tolist()})

    @app.get("/api/v1/embedding-configs", tags=["configs"], dependencies=auth)
    def list_configs(request: Request) -> list[dict]:
        return [config_json(r) for r in config_rows(request)]

    @app.get("/api/v1/embedding-configs/recommend", tags=["configs"], dependencies=auth)
    def recommend(request: Request, llm_rerank: bool = False, storage: bool = False, domain: bool = False,
                  multilingual: bool = False, code: bool = False, speed: bool = False) -> dict:
        """The model selection guide's decision tree (mrl.recommend_config)."""
        cur = conn(request).cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute("SELECT * FROM mrl.recommend_config(%s, %s, %s, %s, %s, %s)",
                           (llm_rerank, storage, domain, multilingual, code, speed)).fetchone()

    @app.post("/api/v1/fine-tuning/generate", tags=["fine-tuning"], status_code=201, dependencies=auth,
              responses={404: {}, 409: {}, 422: {}})
    def finetune_generate(req: FineTuneGenerateRequest, request: Request) -> dict:
        """Synthetic query-document pairs from a set's documents, stored with a validation split by document
        (queries cut from the documents; an OpenAI-compatible chat model when PGMRL_LLM_URL is set)."""
        import os

        from .finetune_run import generate

        llm = None
        if os.environ.get("PGMRL_LLM_URL"):
            llm = {"url": os.environ["PGMRL_LLM_URL"], "model": os.environ.get("PGMRL_LLM_MODEL", "gpt-4o-mini"),
                   "api_key": os.environ.get("PGMRL_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY")}
        c = conn(request)
        c.execute("SELECT mrl_internal._set(%s)", (req.source.slug,))  # 404 for an unknown (or invisible) set
        if c.execute("SELECT 1 FROM mrl.finetune_datasets WHERE name = %s", (req.name,)).fetchone():
            raise HTTPException(409, f"dataset {req.name!r} exists")
        return generate(dsn, req.source.slug, req.name, req.config.queries_per_doc, req.config.validation_share, llm,
                        role=role_of(request))

    @app.get("/api/v1/embedding-configs/{name}", tags=["configs"], dependencies=auth, responses={404: {}})
    def get_config(name: Annotated[str, StringConstraints(max_length=200)], request: Request) -> dict:
        rows = config_rows(request, "WHERE name = (mrl_internal._config(%s)).name", (name,))
        return config_json(rows[0])

    @app.post("/api/v1/embedding-sets", tags=["sets"], status_code=201, dependencies=auth,
              responses={404: {}, 409: {}, 422: {}})
    def create_set(req: CreateSetRequest, request: Request) -> dict:
        from .client import Client

        with Client(dsn, role=role_of(request)) as client:
            client.create_set(req.name, req.slug, req.source_table, req.text_column, config=req.embedding_config_id,
                              truncate_dim=req.truncate_dim, on_create=req.auto_embed_rules.on_create,
                              on_update=req.auto_embed_rules.on_update, mode=req.mode)
            return client.status(req.slug)[0] | {"name": req.name, "set_type": req.set_type}

    @app.get("/api/v1/embedding-sets/{slug}", tags=["sets"], dependencies=auth, responses={404: {}})
    def get_set(slug: Annotated[str, StringConstraints(max_length=200)], request: Request) -> dict:
        cur = conn(request).cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute("SELECT * FROM mrl.set_status(%s)", (slug,)).fetchone()

    @app.get("/api/v1/search", tags=["search"], dependencies=auth, responses={404: {}, 422: {}})
    def search(request: Request, q: Annotated[str, Query(min_length=1, max_length=MAX_TEXT)],
               set: Annotated[str, Query(min_length=1, max_length=200)],
               strategy: Literal["two_stage", "binary_two_stage", "hnsw", "coarse", "exact"] | None = None,
               k: Annotated[int, Query(ge=1, le=10000)] = 10,
               coarse_k: Annotated[int | None, Query(ge=1, le=100000)] = None,
               coarse_dim: Annotated[int | None, Query(ge=1, le=16000)] = None,
               filter: Annotated[str | None, Query(max_length=10000, description='JSON object, e.g. {"section": "web"}')] = None
               ) -> dict:
        flt = None
        if filter is not None:
            try:
                flt = json.loads(filter)
            except ValueError:
                raise HTTPException(422, "filter is not JSON") from None
            if not isinstance(flt, dict):
                raise HTTPException(422, 'filter must be a JSON object, e.g. {"section": "web"}')
        t0 = time.perf_counter()
        c = conn(request)
        name = c.execute("SELECT (mrl_internal._set(%s)).config", (set,)).fetchone()[0]
        vec = get_embedder(config(name)).encode([q], kind="query")[0]
        t1 = time.perf_counter()
        rows = c.execute("SELECT id, distance FROM mrl.search(%s, %s, %s, %s, %s, %s, %s)",
                            (set, vec, k, strategy, coarse_k, coarse_dim, None if flt is None else Jsonb(flt))).fetchall()
        t2 = time.perf_counter()
        return {"set": set, "strategy": strategy, "k": k, "ids": [r[0] for r in rows],
                "distances": [r[1] for r in rows], "results": [{"id": r[0], "distance": r[1]} for r in rows],
                "timings_ms": {"embed": (t1 - t0) * 1000, "search": (t2 - t1) * 1000, "total": (t2 - t0) * 1000}}

    return app
