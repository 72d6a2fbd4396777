#!/usr/bin/env python3
"""Ingest benchmark, pgmrl against its baselines in one run:

1. End to end: rows/s from one INSERT of N real Debian documents to all N searchable (statement trigger ->
   queue -> the sidecar's worker, LISTEN-woken, embedding and writing back), against SentenceTransformer.encode()
   on the same texts with the same loaded model (its defaults, and the model batch the worker uses).
2. Bulk writes: INSERT ... SELECT and COPY of M rows into a table with pgmrl's change-capture triggers against the
   same table without them (median of --repeats runs each, alternated).

    python scripts/bench_ingest.py                      # N = 2000 documents, M = 50,000 rows
    python scripts/bench_ingest.py --docs 500 --rows 10000 --repeats 3
"""

import argparse
import statistics
import threading
import time

from corpus import DATA, database
from corpus import records as load_records
from pgmrl import Client
from pgmrl.db import connect
from pgmrl.embedding import EmbeddingConfig, get_embedder
from pgmrl.worker import Worker


def end_to_end(c: Client, dsn: str, texts: list[str], truncate_dim: int, batch_size: int) -> float:
    conn = c.conn
    conn.execute("DROP TABLE IF EXISTS ingest_docs CASCADE")
    if c.set_exists("ingest"):
        c.drop_set("ingest")
    conn.execute("CREATE TABLE ingest_docs (id bigint PRIMARY KEY, body text)")
    c.create_set("Ingest", "ingest", "ingest_docs", "body", truncate_dim=truncate_dim)
    stop = threading.Event()
    worker = Worker(dsn, stop_event=stop, poll_interval=0.2, batch_size=batch_size)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    time.sleep(1.0)  # the worker is connected and listening
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO ingest_docs SELECT i, t FROM unnest(%s::text[]) WITH ORDINALITY u(t, i)", (texts,))
    while conn.execute("SELECT count(*) FROM mrl_data.ingest").fetchone()[0] < len(texts):
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join(60)
    return elapsed


def bulk(conn, rows: int, repeats: int) -> dict[str, list[float]]:
    conn.execute("DROP TABLE IF EXISTS bulk_src, bulk_plain, bulk_mrl CASCADE")
    conn.execute("CREATE TABLE bulk_src AS SELECT i AS id, 'row ' || i || ' ' || repeat(md5(i::text), 8) AS body "
                 "FROM generate_series(1, %s) i", (rows,))
    for t in ("bulk_plain", "bulk_mrl"):
        conn.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, body text)")
    conn.execute("SELECT mrl.create_embedding_set('Bulk', 'bulk', 'bulk_mrl', 'body')")
    data = conn.execute("SELECT id, body FROM bulk_src ORDER BY id").fetchall()
    out = {k: [] for k in ("insert_plain", "insert_mrl", "copy_plain", "copy_mrl")}
    for _ in range(repeats):
        for table, key in (("bulk_plain", "plain"), ("bulk_mrl", "mrl")):
            conn.execute(f"TRUNCATE {table} CASCADE")
            conn.execute("DELETE FROM mrl.queue")
            conn.execute("DELETE FROM mrl.queue_intake")
            conn.execute("CHECKPOINT")
            t = time.perf_counter()
            conn.execute(f"INSERT INTO {table} SELECT id, body FROM bulk_src")
            out["insert_" + key].append(time.perf_counter() - t)
            conn.execute(f"TRUNCATE {table} CASCADE")
            conn.execute("DELETE FROM mrl.queue")
            conn.execute("DELETE FROM mrl.queue_intake")
            conn.execute("CHECKPOINT")
            t = time.perf_counter()
            with conn.cursor().copy(f"COPY {table} (id, body) FROM STDIN") as cp:
                for row in data:
                    cp.write_row(row)
            out["copy_" + key].append(time.perf_counter() - t)
    queued = conn.execute("SELECT queued FROM mrl.queue_status WHERE slug = 'bulk'").fetchone()[0]
    assert queued == rows, f"the triggers queued {queued} of {rows} rows"
    conn.execute("SELECT mrl.drop_embedding_set('bulk')")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="server to use (default: a temporary embedded server)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--docs", type=int, default=2000, help="documents for the end-to-end run")
    ap.add_argument("--offset", type=int, default=20000, help="first corpus record used")
    ap.add_argument("--rows", type=int, default=50000, help="rows for the bulk-write comparison")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--truncate-dim", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=256, help="the worker's batch (pgmrl serve --batch-size)")
    args = ap.parse_args()

    texts = [r["doc"] for r in load_records(args.offset + args.docs, args.data)[args.offset:]]
    with database(args.dsn, "pgmrl-ingest-") as dsn:
        c = Client(dsn)
        c.install()
        emb = get_embedder(EmbeddingConfig.load(c.conn, "all-minilm-l6-v2"))
        model = emb.model
        model.encode(texts[:32])  # warm-up
        t = time.perf_counter()
        model.encode(texts)  # SentenceTransformer defaults (batch_size 32)
        raw_default = time.perf_counter() - t
        t = time.perf_counter()
        model.encode(texts, batch_size=emb.batch_size)
        raw_worker_batch = time.perf_counter() - t
        e2e = end_to_end(c, dsn, texts, args.truncate_dim, args.batch_size)
        n = len(texts)
        print(f"end to end, {n} documents (records {args.offset}..{args.offset + n - 1}):")
        print(f"  SentenceTransformer.encode(), defaults (batch 32):  {n / raw_default:7.1f} docs/s")
        print(f"  SentenceTransformer.encode(), batch {emb.batch_size}:           {n / raw_worker_batch:7.1f} docs/s")
        print(f"  INSERT -> trigger -> queue -> worker -> searchable: {n / e2e:7.1f} docs/s (worker batch {args.batch_size})")
        print(f"  ratio pgmrl / raw encode: {raw_default / e2e:.2f} (defaults), {raw_worker_batch / e2e:.2f} (batch {emb.batch_size})")

        with connect(dsn, autocommit=True) as conn:
            b = bulk(conn, args.rows, args.repeats)
        med = {k: statistics.median(v) for k, v in b.items()}
        print(f"bulk writes, {args.rows} rows, median of {args.repeats}:")
        print(f"  INSERT ... SELECT: {med['insert_plain']:.3f} s without triggers, {med['insert_mrl']:.3f} s with "
              f"(ratio {med['insert_mrl'] / med['insert_plain']:.2f})")
        print(f"  COPY:              {med['copy_plain']:.3f} s without triggers, {med['copy_mrl']:.3f} s with "
              f"(ratio {med['copy_mrl'] / med['copy_plain']:.2f})")
        c.close()


if __name__ == "__main__":
    main()
