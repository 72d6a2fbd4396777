#!/usr/bin/env python3
"""What the shared-database checks cost, against their baselines in one run:

1. Search: mrl.search's check of the vectors table (mrl_internal._read_unsafe: policies, inheriting tables, index
   and statistics expressions), per call, against
   an empty function call; and a whole two-stage search (real Debian vectors and queries) for scale.
2. Batches: the worker's check of a set's tables (mrl_internal._tables_problem) against the same empty call, and
   against the time of a worker batch of 256 rows (embedding excluded: _fetch_texts + _apply_batch).
3. Text expressions: the validation of a set's text expression (mrl_internal._text_expr), once per set creation.

    python scripts/bench_security_overhead.py            # 20,000 documents, 500 queries
    python scripts/bench_security_overhead.py --docs 5000 --queries 200
"""

import argparse
import statistics
import time

import psycopg

from corpus import DATA, database, records, vectors
from pgmrl import Client
from pgmrl.db import VectorList


def timed(conn, sql: str, params, repeat: int) -> float:
    """Median ms of one statement."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        conn.execute(sql, params).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def in_server(conn, expr: str, params, n: int) -> float:
    """µs per evaluation of expr, measured inside the server (n evaluations in one statement)."""
    t0 = time.perf_counter()
    conn.execute(f"SELECT count(x) FROM generate_series(1, {n}) g, LATERAL (SELECT {expr} AS x WHERE g IS NOT NULL OFFSET 0) s", params)
    return (time.perf_counter() - t0) * 1e6 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="server to use (default: a temporary embedded server)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=500)
    args = ap.parse_args()

    recs = records(args.docs, args.data)
    docs, queries = vectors("docs", args.docs, args.data), vectors("queries", args.queries, args.data)
    with database(args.dsn, "pgmrl-bench-sec-") as dsn:
        c = Client(dsn)
        c.install()
        conn = c.conn
        conn.execute("DROP TABLE IF EXISTS sec_docs CASCADE")
        if c.set_exists("sec"):
            c.drop_set("sec")
        conn.execute("CREATE TABLE sec_docs (id bigint PRIMARY KEY, body text)")
        conn.execute("INSERT INTO sec_docs SELECT i, t FROM unnest(%s::text[]) WITH ORDINALITY u(t, i)",
                     ([r["doc"] for r in recs],))
        c.create_set("Sec", "sec", "sec_docs", "body", truncate_dim=128)
        c.load_vectors("sec", list(range(1, args.docs + 1)), docs)
        c.refit("sec")
        vt = conn.execute("SELECT mrl.vectors_table('sec')").fetchone()[0]
        set_row = "(SELECT e FROM mrl.embedding_sets e WHERE e.slug = 'sec')"

        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as k:
            from pgvector.psycopg import register_vector

            register_vector(k)
            k.execute("CREATE OR REPLACE FUNCTION pg_temp.noop(regclass) RETURNS bool LANGUAGE sql STABLE "
                      "SET search_path = pg_catalog, pg_temp AS 'SELECT $1 IS NULL'")
            n = 2000
            noop = in_server(k, "pg_temp.noop(%s::regclass)", (vt,), n)
            policies = in_server(k, "mrl_internal._read_unsafe(%s::regclass)", (vt,), n)
            tables = in_server(k, f"mrl_internal._tables_problem({set_row}) IS NULL", None, 500)
            search = statistics.median(
                timed(k, "SELECT * FROM mrl.search('sec', %s, 10)", (q,), 1) for q in queries)
            ids = [str(i) for i in range(1, 257)]
            hashes = [r[0] for r in k.execute("SELECT md5(body) FROM sec_docs WHERE id <= 256 ORDER BY id")]
            set_id = k.execute("SELECT id FROM mrl.embedding_sets WHERE slug = 'sec'").fetchone()[0]

            def one_batch() -> float:  # the SQL of a worker batch, rolled back so that every run does the same
                t0 = time.perf_counter()
                with k.transaction(force_rollback=True):
                    k.execute("SELECT count(*) FROM mrl_internal._fetch_texts(%s, %s)", (set_id, ids)).fetchall()
                    k.execute("SELECT mrl_internal._apply_batch(%s, '{}', %s, %s, %s)",
                              (set_id, ids, hashes, VectorList(docs[:256] * 0.999))).fetchall()
                return (time.perf_counter() - t0) * 1000
            batch = statistics.median(one_batch() for _ in range(20))
            expr = timed(k, "SELECT * FROM mrl_internal._text_expr('sec_docs', "
                            "'coalesce(body, '''') || '' '' || lower(body)')", None, 50)

    print(f"{args.docs} documents, {args.queries} real queries, two-stage (128-d rotation, coarse_k 100)")
    print(f"search guard   {policies - noop:7.1f} µs/call over an empty call ({policies:.1f} vs {noop:.1f} µs); "
          f"search p50 {search:.3f} ms -> {100 * (policies - noop) / 1000 / search:.1f} % of a search")
    print(f"worker guard   {tables - noop:7.1f} µs/batch ({tables:.1f} vs {noop:.1f} µs); batch of 256 without "
          f"embedding {batch:.1f} ms -> {100 * (tables - noop) / 1000 / batch:.2f} % of a batch's SQL")
    print(f"text expression validation {expr:.2f} ms per set creation")


if __name__ == "__main__":
    main()
