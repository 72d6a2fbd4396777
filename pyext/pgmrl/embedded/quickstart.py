"""`pgmrl quickstart`: the whole loop on the embedded server, with real sample data.

Idempotent: the table is filled with ON CONFLICT DO NOTHING, the set is created once, and only queued rows are
embedded, so a second run goes straight to the searches.
"""

from __future__ import annotations

import gzip
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from importlib import resources
from typing import TypeVar

import numpy as np

from ..client import Client
from ..db import scalar
from ..matryoshka import agreement
from .server import SIDECAR_ROLE, EmbeddedServer

SLUG = "debian"
TABLE = "public.debian_packages"
TRUNCATE_DIM = 128
SAMPLE_QUERIES = ["web browser", "tool to compress files", "python library for scientific computing",
                  "play music from the command line", "monitor network traffic"]


def sample_corpus(rows: int) -> list[dict]:
    path = resources.files("pgmrl.embedded") / "data" / "debian-sample.jsonl.gz"
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
        out = []
        for line in f:
            out.append(json.loads(line))
            if len(out) >= rows:
                break
    return out


_T = TypeVar("_T")


def _timed(fn: Callable[[], _T], repeat: int = 5) -> tuple[_T, float]:
    """fn's last result and its median time (ms) over `repeat` (>= 1) calls."""
    times: list[float] = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, statistics.median(times) * 1000


def run_quickstart(server: EmbeddedServer, rows: int = 2000, batch_size: int = 256, echo=print) -> dict:
    """The five steps, each idempotent; returns the agreement, recall and latency measured at the end."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    echo(f"1/5 starting the embedded PostgreSQL + pgvector server ({server.data_dir})")
    dsn = server.start()
    client = Client(dsn)
    echo("2/5 installing the mrl schema")
    client.install()
    worker_dsn = server.ensure_sidecar_login()  # the worker runs with least privilege, not as the superuser
    corpus = sample_corpus(rows)
    echo(f"3/5 loading {len(corpus)} real Debian package descriptions into {TABLE}")
    _load(client, corpus, echo)
    st = _embed(client, worker_dsn, batch_size, echo)
    echo("5/5 searching: two-stage (128-d HNSW, then exact 384-d re-rank of 100 candidates) vs exact 384-d scan")
    _sample_searches(client, echo)
    result = _measure(client, corpus)
    echo(f"  over {result['queries']} queries (each package's own summary): agreement@10 with exact "
         f"{result['agreement_at_10']:.3f}, Recall@10 of the described package {result['recall_at_10']:.3f}; median "
         f"latency two-stage {result['two_stage_ms_p50']:.2f} ms, exact {result['exact_ms_p50']:.2f} ms "
         f"(at {st['embedded']} rows exact is still cheap; two-stage pays off as the table grows)")
    _sql_text_search(server, client, echo)
    echo("")
    echo("Next: `pgmrl serve --pg-port 8766` (keeps new rows embedded; SQL reaches it for text searches), then")
    echo("`pgmrl psql` and for example")
    echo("  SELECT * FROM mrl.set_status('debian');")
    echo("  INSERT INTO debian_packages VALUES (100001, 'my-tool', 'my tool', 'A tool that does things.');")
    echo("  SELECT (r.item).package, r.distance FROM mrl.search_rows(NULL::debian_packages, 'debian', 'does things') r;")
    echo("The server keeps running: `pgmrl down` stops it.")
    client.close()
    return result


def _load(client: Client, corpus: list[dict], echo) -> None:
    """The sample table (rows already there are kept) and the set over it (created once)."""
    conn = client.conn
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, package text UNIQUE NOT NULL, "
                 "summary text, description text)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {TABLE} (id, package, summary, description) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT DO NOTHING",
                        [(i + 1, r["package"], r["summary"], r["description"]) for i, r in enumerate(corpus)])
    if not client.set_exists(SLUG):
        client.create_set("Debian package descriptions", SLUG, TABLE, "description", truncate_dim=TRUNCATE_DIM)
        echo(f"    created embedding set '{SLUG}': all-MiniLM-L6-v2 (384-d) + a {TRUNCATE_DIM}-d coarse vector from "
             f"a fitted PCA rotation (MiniLM is not Matryoshka-trained, so raw truncation is refused)")


def _embed(client: Client, worker_dsn: str, batch_size: int, echo) -> dict:
    """Runs the worker over what is queued (with a progress bar), fits the rotation; returns the set's status."""
    from tqdm import tqdm

    from ..worker import Worker

    queued = client.status(SLUG)[0]["queued"]
    echo(f"4/5 embedding {queued} queued rows with the sidecar worker (about 50 documents/s on 2 CPU cores), "
         f"as the login {SIDECAR_ROLE} (member of pgmrl_worker)")
    with tqdm(total=queued, unit="row", disable=queued == 0) as bar:
        Worker(worker_dsn, batch_size=batch_size, on_progress=bar.update).run(once=True)
    if client.status(SLUG)[0]["rotation_fitted_at"] is None:
        client.refit(SLUG)
    st = client.status(SLUG)[0]
    echo(f"    {st['embedded']}/{st['rows']} rows embedded, {st['queued']} queued, {st['failed']} failed")
    return st


def _sample_searches(client: Client, echo) -> None:
    names: dict[str, str] = dict(client.conn.execute(f"SELECT id::text, package FROM {TABLE}").fetchall())
    for text in SAMPLE_QUERIES:
        q = client.embed([text])[0]
        two, t_two = _timed(partial(client.search, SLUG, q, 10))
        exact, t_exact = _timed(partial(client.search, SLUG, q, 10, "exact"))
        top = ", ".join(names[i] for i, _ in two[:3])
        echo(f"  '{text}': {top}  | agreement@10 {agreement([i for i, _ in two], [i for i, _ in exact], 10):.2f}, "
             f"{t_two:.2f} ms vs {t_exact:.2f} ms exact")


def _measure(client: Client, corpus: list[dict]) -> dict:
    """Agreement, Recall@10 and median latency over the corpus' own one-line summaries as queries."""
    n_q = min(200, len(corpus))
    queries = client.embed([r["summary"] for r in corpus[:n_q]])
    agree: list[float] = []
    t2: list[float] = []
    te: list[float] = []
    hits = 0
    for i, q in enumerate(queries):
        t = time.perf_counter()
        two_ids = [r[0] for r in client.search(SLUG, q, 10)]
        t2.append(time.perf_counter() - t)
        t = time.perf_counter()
        exact_ids = [r[0] for r in client.search(SLUG, q, 10, "exact")]
        te.append(time.perf_counter() - t)
        agree.append(agreement(two_ids, exact_ids, 10))
        hits += str(i + 1) in two_ids
    return {"queries": n_q, "agreement_at_10": float(np.mean(agree)), "recall_at_10": hits / n_q,
            "two_stage_ms_p50": statistics.median(t2) * 1000, "exact_ms_p50": statistics.median(te) * 1000}


SQL_QUERY = ("SELECT (r.item).package, round(r.distance::numeric, 3) AS distance "
             "FROM mrl.search_rows(NULL::debian_packages, 'debian', 'tool to compress files', k => 3) r")


def _sql_text_search(server: EmbeddedServer, client: Client, echo) -> None:
    """A text search typed in `pgmrl psql`: SQL embeds the words through the sidecar's PostgreSQL-protocol endpoint
    (dblink), run here for the moment on a free port; afterwards the database expects `pgmrl serve --pg-port 8766`."""
    import secrets
    import socket
    import subprocess

    from ..sidecar.auth import Tokens
    from ..sidecar.pgwire import PgWireServer

    if not scalar(client.conn.execute("SELECT mrl.sql_embedding_available()")):
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_urlsafe(24)
    endpoint = PgWireServer(server.dsn(), Tokens({token: None}), port=port).start()
    try:
        client.conn.execute("SELECT mrl.configure_sidecar('http://127.0.0.1:8765', %s), "
                            "mrl.configure_sidecar_pg('127.0.0.1', %s)", (token, port))
        echo(f"  in SQL (`pgmrl psql`), words are embedded by the sidecar through dblink:\n    {SQL_QUERY};")
        out = subprocess.run([*server.psql_command(), "-X", "-c", SQL_QUERY], capture_output=True, text=True,
                             timeout=120)
        echo("\n".join("    " + line for line in (out.stdout or out.stderr).rstrip().splitlines()))
    finally:
        endpoint.stop()
        client.conn.execute("SELECT mrl.configure_sidecar_pg('127.0.0.1', 8766)")  # where `pgmrl serve` will be
