#!/usr/bin/env python3
"""Two-stage vs exact agreement@10 on N real Debian documents, with the quickstart's settings
(all-MiniLM-L6-v2, 128-d PCA-rotation coarse vector, coarse_k 100).

Loads the precomputed MiniLM vectors from ../shared/data (no re-embedding), fits the rotation, then runs the
corpus' real queries through mrl.two_stage_search and strategy => 'exact' in the same database.

    python scripts/check_agreement.py --docs 10000 --queries 500            # temporary embedded server
    python scripts/check_agreement.py --dsn postgresql://... --docs 10000    # any server with pgvector
"""

import argparse
import statistics
import time

import numpy as np

from corpus import DATA, database, vectors
from corpus import records as load_records
from pgmrl import Client
from pgmrl import matryoshka as mrl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="server to use (default: a temporary embedded server)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--truncate-dim", type=int, default=128)
    ap.add_argument("--coarse-k", type=int, default=100)
    args = ap.parse_args()

    records = load_records(args.docs, args.data)
    docs = vectors("docs", args.docs, args.data)
    queries = vectors("queries", args.queries, args.data)

    with database(args.dsn, "pgmrl-agree-") as dsn:
        c = Client(dsn)
        c.install()
        c.conn.execute("DROP TABLE IF EXISTS agreement_docs CASCADE")
        if c.set_exists("agreement"):
            c.drop_set("agreement")
        c.conn.execute("CREATE TABLE agreement_docs (id bigint PRIMARY KEY, package text, body text)")
        with c.conn.cursor().copy("COPY agreement_docs FROM STDIN") as cp:
            for i, r in enumerate(records):
                cp.write_row((i + 1, r["id"], r["doc"]))
        c.create_set("Agreement check", "agreement", "agreement_docs", "body", truncate_dim=args.truncate_dim)
        t = time.perf_counter()
        c.load_vectors("agreement", list(range(1, len(records) + 1)), docs)
        c.refit("agreement")
        print(f"loaded {len(records)} documents and fitted the rotation in {time.perf_counter() - t:.1f} s")

        agree, t_two, t_exact = [], [], []
        for q in queries:
            t = time.perf_counter()
            two = [r[0] for r in c.search("agreement", q, 10, "two_stage", args.coarse_k)]
            t_two.append(time.perf_counter() - t)
            t = time.perf_counter()
            exact = [r[0] for r in c.search("agreement", q, 10, "exact")]
            t_exact.append(time.perf_counter() - t)
            agree.append(mrl.agreement(two, exact, 10))
        p50_two, p50_exact = statistics.median(t_two) * 1000, statistics.median(t_exact) * 1000
        print(f"{len(records)} docs, {len(queries)} queries, coarse {args.truncate_dim}-d rotation, "
              f"coarse_k {args.coarse_k}: agreement@10 two_stage vs exact = {np.mean(agree):.4f}")
        print(f"median latency through psycopg: two_stage {p50_two:.2f} ms, exact {p50_exact:.2f} ms "
              f"(ratio exact/two_stage {p50_exact / p50_two:.1f}x)")
        c.close()


if __name__ == "__main__":
    main()
