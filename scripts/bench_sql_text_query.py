#!/usr/bin/env python3
"""Text-query latency from SQL against its parts, in one run on one server.

  whole:  SELECT * FROM mrl.two_stage_search('bench', 'query text', k => 10)   (SQL -> sidecar -> search)
  parts:  the sidecar's encode, through the same transport SQL uses  +  mrl.two_stage_search('bench', vector, k => 10)

The transport is what `pgmrl install` chose for the server: plpython3u (the sidecar's HTTP API; parts: POST
/v1/embed) or dblink (the sidecar's PostgreSQL-protocol endpoint; parts: the same `SELECT embedding FROM embed(...)`
from a client). Starts `pgmrl serve --pg-port` as a subprocess, loads N real Debian documents with their
precomputed MiniLM vectors, and uses the corpus' real queries.

    python scripts/bench_sql_text_query.py --docs 10000 --queries 300          # embedded server: dblink
    python scripts/bench_sql_text_query.py --dsn "$(cat /etc/pgmrl/system-dsn)" --docs 10000 --queries 300
"""

import argparse
import os
import secrets
import subprocess
import sys
import time

import httpx
import numpy as np
import psycopg

from corpus import DATA, database, vectors
from corpus import records as load_records
from pgmrl import Client


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="server to use (default: a temporary embedded server, which embeds through dblink)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--port", type=int, default=8799)
    ap.add_argument("--pg-port", type=int, default=8798)
    args = ap.parse_args()
    with database(args.dsn, "pgmrl-bench-sqltext-") as dsn:
        run(args, dsn)


def run(args, dsn: str) -> None:

    records = load_records(args.docs, args.data)
    docs = vectors("docs", args.docs, args.data)
    queries = [r["query"] for r in records[:args.queries]]

    c = Client(dsn)
    c.install()
    if not c.conn.execute("SELECT mrl.sql_embedding_available()").fetchone()[0]:
        sys.exit("SQL cannot embed text on this server (neither plpython3u nor dblink)")
    transport = c.conn.execute("SELECT mrl_internal._embed_transport()").fetchone()[0]
    c.conn.execute("DROP TABLE IF EXISTS bench_docs CASCADE")
    if c.set_exists("bench"):
        c.drop_set("bench")
    c.conn.execute("CREATE TABLE bench_docs (id bigint PRIMARY KEY, body text)")
    with c.conn.cursor().copy("COPY bench_docs FROM STDIN") as cp:
        for i, r in enumerate(records):
            cp.write_row((i + 1, r["doc"]))
    c.create_set("Bench", "bench", "bench_docs", "body", truncate_dim=128)
    c.load_vectors("bench", list(range(1, len(records) + 1)), docs)
    c.refit("bench")

    token = secrets.token_hex(24)
    env = {**os.environ, "PGMRL_DSN": dsn, "PGMRL_TOKEN": token}
    proc = subprocess.Popen([sys.executable, "-m", "pgmrl.cli", "serve", "--port", str(args.port),
                             "--pg-port", str(args.pg_port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            sys.exit("sidecar did not become ready")
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        endpoint = psycopg.connect(host="127.0.0.1", port=args.pg_port, user="bench", password=token, dbname="pgmrl",
                                   autocommit=True)

        def embed_once(q: str) -> np.ndarray:
            if transport == "dblink":  # what dblink asks the endpoint, from a client
                text = endpoint.execute("SELECT embedding FROM embed('all-minilm-l6-v2', 'query', %s)", (q,)).fetchone()[0]
                return np.array(text.strip("[]").split(","), dtype=np.float32)
            return np.frombuffer(http.post("/v1/embed", json={"texts": [q], "format": "f32"}).content, "<f4")

        conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=None)
        from pgvector.psycopg import register_vector

        register_vector(conn)
        for q in queries[:20]:  # warm up both paths (connections, plans, model)
            conn.execute("SELECT * FROM mrl.two_stage_search('bench', %s::text, k => 10)", (q,)).fetchall()
            embed_once(q)

        whole, encode, search, same = [], [], [], 0
        for q in queries:  # interleaved, so drift on this shared machine hits both alike
            t = time.perf_counter()
            ids_text = [r[0] for r in conn.execute(
                "SELECT id FROM mrl.two_stage_search('bench', %s::text, k => 10)", (q,))]
            whole.append(time.perf_counter() - t)
            t = time.perf_counter()
            vec = embed_once(q)
            encode.append(time.perf_counter() - t)
            t = time.perf_counter()
            ids_vec = [row[0] for row in conn.execute(
                "SELECT id FROM mrl.two_stage_search('bench', %s, k => 10)", (vec,))]
            search.append(time.perf_counter() - t)
            same += ids_text == ids_vec
        p = lambda xs, q: float(np.percentile(xs, q)) * 1000  # noqa: E731
        parts = [e + s for e, s in zip(encode, search)]
        print(f"{len(queries)} queries over {len(records)} documents (two-stage, 128-d rotation, coarse_k 100); "
              f"SQL reaches the sidecar through {transport}")
        print(f"{'':28s} {'p50 ms':>8s} {'p95 ms':>8s}")
        for name, xs in (("SQL two_stage_search(text)", whole), ("  parts: sidecar encode", encode),
                         ("  parts: vector search", search), ("  parts: encode + search", parts)):
            print(f"{name:28s} {p(xs, 50):8.2f} {p(xs, 95):8.2f}")
        print(f"ratio whole / parts at p50: {p(whole, 50) / p(parts, 50):.2f} (target <= 1.3); "
              f"same ids for text and vector overloads: {same}/{len(queries)}")
        conn.close()
        endpoint.close()
    finally:
        proc.terminate()
        proc.wait(30)
        c.close()


if __name__ == "__main__":
    main()
