"""Open endpoints: liveness, readiness and Prometheus metrics (no token, no database role)."""

from __future__ import annotations

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..worker.metrics import Metrics

router = APIRouter(tags=["health"])

_QUEUE_GAUGES = (("pgmrl_queue_depth", "Queued items per set", 1),
                 ("pgmrl_queue_dead_items", "Dead-lettered items per set", 2),
                 ("pgmrl_queue_oldest_age_seconds", "Age of the oldest queued item", 3))


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready"}})
def readyz(request: Request) -> Response:
    state = request.app.state
    problems = []
    try:
        if state.db.conn().execute("SELECT to_regclass('mrl.migrations')").fetchone()[0] is None:
            problems.append("the mrl schema is not installed (pgmrl install)")
    except psycopg.Error as exc:
        problems.append(f"database unreachable: {exc.__class__.__name__}")
    if not getattr(state, "model_ready", False):
        problems.append(f"model {state.default_config} not loaded yet")
    body = {"status": "ready" if not problems else "not ready", "problems": problems}
    return JSONResponse(body, status_code=200 if not problems else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus(request: Request) -> str:
    lines = []
    rows = request.app.state.db.conn().execute("SELECT slug, queued, failed, extract(epoch FROM oldest_queued_age) "
                                               "FROM mrl.queue_status ORDER BY slug").fetchall()
    for name, help_, idx in _QUEUE_GAUGES:
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{set="{r[0]}"}} {float(r[idx] or 0)}' for r in rows]
    m: Metrics = request.app.state.metrics
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
