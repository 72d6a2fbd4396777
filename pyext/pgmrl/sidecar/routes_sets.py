"""Embedding sets and search over REST. Each request runs as its token's database role."""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, StringConstraints

from ..db import one, scalar
from ..embedding import get_embedder
from ..strategies import Strategy
from .state import MAX_TEXT, Name, config, conn, role_of

router = APIRouter()


class AutoEmbedRules(BaseModel):
    on_create: bool = True
    on_update: bool = True


class CreateSetRequest(BaseModel):
    name: Name
    slug: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    set_type: Literal["full"] = "full"
    embedding_config_id: Name = "all-minilm-l6-v2"
    truncate_dim: int | None = Field(default=None, ge=1, le=16000)
    auto_embed_rules: AutoEmbedRules = AutoEmbedRules()
    source_table: Name
    text_column: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    mode: Literal["async", "sync"] = "async"
    chunking: dict | Literal["none", "tokens", "paragraphs", "sections"] | None = None
    text_search_config: Name = "english"
    full_type: Literal["halfvec", "vector"] = "halfvec"


@router.post("/api/v1/embedding-sets", tags=["sets"], status_code=201, responses={404: {}, 409: {}, 422: {}})
def create_set(req: CreateSetRequest, request: Request) -> dict:
    from ..client import Client

    with Client(request.app.state.dsn, role=role_of(request)) as client:
        client.create_set(req.name, req.slug, req.source_table, req.text_column, config=req.embedding_config_id,
                          truncate_dim=req.truncate_dim, on_create=req.auto_embed_rules.on_create,
                          on_update=req.auto_embed_rules.on_update, mode=req.mode,
                          chunking=None if req.chunking == "none" else req.chunking,
                          text_search_config=req.text_search_config, full_type=req.full_type)
        return client.status(req.slug)[0] | {"name": req.name, "set_type": req.set_type}


@router.get("/api/v1/embedding-sets/{slug}", tags=["sets"], responses={404: {}})
def get_set(slug: Annotated[str, StringConstraints(max_length=200)], request: Request) -> dict:
    cur = conn(request).cursor(row_factory=psycopg.rows.dict_row)
    # one row: its _set() raises for a set the role may not see (the same row-level rule as mrl.queue_status)
    return one(cur.execute("SELECT * FROM mrl.set_status(%s)", (slug,)))


def _filter(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        flt = json.loads(text)
    except ValueError:
        raise HTTPException(422, "filter is not JSON") from None
    if not isinstance(flt, dict):
        raise HTTPException(422, 'filter must be a JSON object, e.g. {"section": "web"}')
    return flt


@router.get("/api/v1/search", tags=["search"], responses={404: {}, 422: {}})
def search(request: Request, q: Annotated[str, Query(min_length=1, max_length=MAX_TEXT)],
           set: Annotated[str, Query(min_length=1, max_length=200)],
           strategy: Strategy | None = None,
           k: Annotated[int, Query(ge=1, le=10000)] = 10,
           coarse_k: Annotated[int | None, Query(ge=1, le=100000)] = None,
           coarse_dim: Annotated[int | None, Query(ge=1, le=16000)] = None,
           filter: Annotated[str | None, Query(max_length=10000, description='JSON object, e.g. {"section": "web"}')] = None,
           mode: Literal["dense", "text", "hybrid"] = "dense",
           dense_weight: Annotated[float, Query(ge=0)] = 1.0,
           text_weight: Annotated[float, Query(ge=0)] = 1.0,
           rrf_k: Annotated[int, Query(ge=0, le=100000)] = 60,
           ) -> dict:
    """mode: dense (cosine distances), text (the full-text words alone: scores) or hybrid (both fused by reciprocal
    rank fusion: fused scores, with each row's dense and text ranks)."""
    flt = _filter(filter)
    t0 = time.perf_counter()
    c = conn(request)
    name = scalar(c.execute("SELECT (mrl_internal._set(%s)).config", (set,)))
    vec = None
    if mode == "dense" or (mode == "hybrid" and dense_weight > 0):
        vec = get_embedder(config(request, name)).encode([q], kind="query")[0]
    t1 = time.perf_counter()
    jflt = None if flt is None else Jsonb(flt)
    if mode == "hybrid":
        cur = c.cursor(row_factory=psycopg.rows.dict_row)
        results = cur.execute("SELECT id, score, dense_rank, text_rank, distance FROM mrl.hybrid_search(%s, %s, "
                              "%s::vector, %s, %s, %s, %s, NULL, %s, %s)",
                              (set, q, vec, k, dense_weight, text_weight, rrf_k, jflt, strategy)).fetchall()
    elif mode == "text":
        results = [{"id": r[0], "score": r[1]} for r in c.execute(
            "SELECT id, score FROM mrl.text_search(%s, %s, %s, %s)", (set, q, k, jflt))]
    else:
        results = [{"id": r[0], "distance": r[1]} for r in c.execute(
            "SELECT id, distance FROM mrl.search(%s, %s, %s, %s, %s, %s, %s)",
            (set, vec, k, strategy, coarse_k, coarse_dim, jflt))]
    t2 = time.perf_counter()
    out = {"set": set, "mode": mode, "strategy": strategy, "k": k, "ids": [r["id"] for r in results],
           "results": results,
           "timings_ms": {"embed": (t1 - t0) * 1000, "search": (t2 - t1) * 1000, "total": (t2 - t0) * 1000}}
    if mode == "dense":
        out["distances"] = [r["distance"] for r in results]
    return out
