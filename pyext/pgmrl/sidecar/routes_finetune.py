"""POST /api/v1/fine-tuning/generate: query-document pairs from a set's documents, stored in the database."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, StringConstraints

from .state import conn, role_of

router = APIRouter(tags=["fine-tuning"])


class FineTuneSource(BaseModel):
    type: Literal["embedding_set"] = "embedding_set"
    slug: Annotated[str, StringConstraints(min_length=1, max_length=40)]


class FineTuneConfig(BaseModel):
    queries_per_doc: int = Field(default=4, ge=1, le=20)
    validation_share: float = Field(default=0.2, gt=0, lt=1)
    query_column: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = None
    query_expr: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = None
    max_docs_per_query: int = Field(default=1, ge=1, le=1000)


class FineTuneGenerateRequest(BaseModel):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
    source: FineTuneSource
    config: FineTuneConfig = FineTuneConfig()


@router.post("/api/v1/fine-tuning/generate", status_code=201, responses={404: {}, 409: {}, 422: {}})
def finetune_generate(req: FineTuneGenerateRequest, request: Request) -> dict:
    """Query-document pairs from a set's documents, stored with a validation split by document: real pairs when
    `config.query_column` or `config.query_expr` names the rows' own query (a title, subject, summary), else
    synthetic queries (cut from the documents; an OpenAI-compatible chat model when PGMRL_LLM_URL is set)."""
    from ..finetune.run import generate

    cfg = req.config
    if cfg.query_column and cfg.query_expr:
        raise HTTPException(422, "give either config.query_column or config.query_expr, not both")
    llm = None
    if os.environ.get("PGMRL_LLM_URL") and not (cfg.query_column or cfg.query_expr):
        llm = {"url": os.environ["PGMRL_LLM_URL"], "model": os.environ.get("PGMRL_LLM_MODEL", "gpt-4o-mini"),
               "api_key": os.environ.get("PGMRL_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY")}
    c = conn(request)
    c.execute("SELECT mrl_internal._set(%s)", (req.source.slug,))  # 404 for an unknown (or invisible) set
    if c.execute("SELECT 1 FROM mrl.finetune_datasets WHERE name = %s", (req.name,)).fetchone():
        raise HTTPException(409, f"dataset {req.name!r} exists")
    return generate(request.app.state.dsn, req.source.slug, req.name, cfg.queries_per_doc, cfg.validation_share, llm,
                    role=role_of(request), query_column=cfg.query_column, query_expr=cfg.query_expr,
                    max_docs_per_query=cfg.max_docs_per_query)
