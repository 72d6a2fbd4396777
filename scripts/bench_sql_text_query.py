#!/usr/bin/env python3
"""Text-query latency from SQL against its parts, in one run on one server.

  whole:  SELECT * FROM mrl.two_stage_search('bench', 'query text', k => 10)    (plpython3u -> sidecar -> search)
  parts:  POST /v1/embed to the sidecar (encode)  +  mrl.two_stage_search('bench', vector, k => 10)

Needs a server with plpython3u (scripts/setup-system-postgres.sh). Starts `pgmrl serve` as a subprocess, loads N
real Debian documents with their precomputed MiniLM vectors, and uses the corpus' real queries.

    python scripts/bench_sql_text_query.py --dsn "$(cat /etc/pgmrl/system-dsn)" --docs 10000 --queries 300
"""

import argparse
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import psycopg

from corpus import DATA, vectors
from corpus import records as load_records
from pgmrl import Client


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--port", type=int, default=8799)
    args = ap.parse_args()

    records = load_records(args.docs, args.data)
    docs = vectors("docs", args.docs, args.data)
    queries = [r["query"] for r in records[:args.queries]]

    c = Client(args.dsn)
    c.install()
    if not c.conn.execute("SELECT mrl.sql_embedding_available()").fetchone()[0]:
        sys.exit("this server has no plpython3u: run scripts/setup-system-postgres.sh and use its DSN")
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

    env = {**os.environ, "PGMRL_DSN": args.dsn}
    proc = subprocess.Popen([sys.executable, "-m", "pgmrl.cli", "serve", "--port", str(args.port)], env=env,
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
        http = httpx.Client(base_url=url)
        conn = psycopg.connect(args.dsn, autocommit=True, prepare_threshold=None)
        from pgvector.psycopg import register_vector

        register_vector(conn)
        for q in queries[:20]:  # warm up both paths (connections, plans, model)
            conn.execute("SELECT * FROM mrl.two_stage_search('bench', %s::text, k => 10)", (q,)).fetchall()
            http.post("/v1/embed", json={"texts": [q], "format": "f32"})

        whole, encode, search, same = [], [], [], 0
        for q in queries:  # interleaved, so drift on this shared machine hits both alike
            t = time.perf_counter()
            ids_text = [r[0] for r in conn.execute(
                "SELECT id FROM mrl.two_stage_search('bench', %s::text, k => 10)", (q,))]
            whole.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = http.post("/v1/embed", json={"texts": [q], "format": "f32"})
            vec = np.frombuffer(r.content, "<f4")
            encode.append(time.perf_counter() - t)
            t = time.perf_counter()
            ids_vec = [row[0] for row in conn.execute(
                "SELECT id FROM mrl.two_stage_search('bench', %s, k => 10)", (vec,))]
            search.append(time.perf_counter() - t)
            same += ids_text == ids_vec
        p = lambda xs, q: float(np.percentile(xs, q)) * 1000  # noqa: E731
        parts = [e + s for e, s in zip(encode, search)]
        print(f"{len(queries)} queries over {len(records)} documents (two-stage, 128-d rotation, coarse_k 100)")
        print(f"{'':28s} {'p50 ms':>8s} {'p95 ms':>8s}")
        for name, xs in (("SQL two_stage_search(text)", whole), ("  parts: sidecar encode", encode),
                         ("  parts: vector search", search), ("  parts: encode + search", parts)):
            print(f"{name:28s} {p(xs, 50):8.2f} {p(xs, 95):8.2f}")
        print(f"ratio whole / parts at p50: {p(whole, 50) / p(parts, 50):.2f} (target <= 1.3); "
              f"same ids for text and vector overloads: {same}/{len(queries)}")
        conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
        c.close()


if __name__ == "__main__":
    main()
