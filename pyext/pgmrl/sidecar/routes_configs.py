"""The model registry over REST: list and read embedding configs, and the guide's recommendation."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Request
from pydantic import StringConstraints

from ..db import one
from ..embedding import EmbeddingConfig, resolve_local_model
from ..errors import PgmrlError
from .state import conn

router = APIRouter(tags=["configs"])


def _as_json(row: dict) -> dict:
    out = dict(row)
    out["params_millions"] = float(out["params_millions"]) if out["params_millions"] is not None else None
    out.pop("created_at", None)
    try:
        resolve_local_model(EmbeddingConfig(row["name"], row["model"], row["provider"], row["dims"]))
        out["available_offline"] = True
    except PgmrlError:
        out["available_offline"] = False
    return out


def _rows(request: Request, where: str = "", params: tuple = ()) -> list[dict]:
    cur = conn(request).cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute("SELECT * FROM mrl.embedding_configs " + where + " ORDER BY name", params).fetchall()


@router.get("/api/v1/embedding-configs")
def list_configs(request: Request) -> list[dict]:
    return [_as_json(r) for r in _rows(request)]


@router.get("/api/v1/embedding-configs/recommend")  # before /{name}
def recommend(request: Request, llm_rerank: bool = False, storage: bool = False, domain: bool = False,
              multilingual: bool = False, code: bool = False, speed: bool = False) -> dict:
    """The model selection guide's decision tree (mrl.recommend_config)."""
    cur = conn(request).cursor(row_factory=psycopg.rows.dict_row)
    return one(cur.execute("SELECT * FROM mrl.recommend_config(%s, %s, %s, %s, %s, %s)",  # its last rule always applies
                           (llm_rerank, storage, domain, multilingual, code, speed)))


@router.get("/api/v1/embedding-configs/{name}", responses={404: {}})
def get_config(name: Annotated[str, StringConstraints(max_length=200)], request: Request) -> dict:
    rows = _rows(request, "WHERE name = (mrl_internal._config(%s)).name", (name,))
    return _as_json(rows[0])
