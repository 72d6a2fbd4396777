"""POST /v1/embed: vectors for SQL's mrl.embed() (plpython3u) and for apps, as JSON or raw little-endian float32."""

from __future__ import annotations

from typing import Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ..db import one
from ..embedding import get_embedder
from ..matryoshka import truncate
from .state import Name, Text, config, conn

router = APIRouter(tags=["embeddings"])


class EmbedRequest(BaseModel):
    texts: list[Text] = Field(min_length=1, max_length=1024)
    config: Name = "all-minilm-l6-v2"
    kind: Literal["query", "document"] = "query"
    truncate_dim: int | None = Field(default=None, ge=1, le=16000)
    format: Literal["json", "f32"] = "json"


@router.post("/v1/embed", responses={200: {"content": {"application/octet-stream": {}}}, 404: {}, 422: {}})
def embed(req: EmbedRequest, request: Request) -> Response:
    cfg = config(request, req.config)
    if req.truncate_dim is not None:
        row = one(conn(request).execute("SELECT supports_mrl, matryoshka_dims FROM mrl_internal._config(%s)",
                                        (req.config,)))
        if not row[0] or req.truncate_dim not in row[1]:
            raise HTTPException(422, f"truncate_dim {req.truncate_dim} is not a Matryoshka dimension of {cfg.name}"
                                     f" (valid: {row[1] or 'none, not an MRL model'})")
    vectors = get_embedder(cfg).encode(req.texts, kind=req.kind)
    if req.truncate_dim is not None:
        vectors = truncate(vectors, req.truncate_dim)
    request.app.state.metrics.embed_request()
    if req.format == "f32":
        return Response(np.ascontiguousarray(vectors, dtype="<f4").tobytes(), media_type="application/octet-stream",
                        headers={"X-Dims": str(vectors.shape[1]), "X-Count": str(vectors.shape[0])})
    return JSONResponse({"config": cfg.name, "kind": req.kind, "dims": int(vectors.shape[1]),
                         "vectors": vectors.tolist()})
