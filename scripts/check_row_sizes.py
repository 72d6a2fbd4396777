#!/usr/bin/env python3
"""Bytes a row of a set's vectors table, per full_type, on real Debian descriptions (so that the full-text words
are real-sized too): heap, heap + TOAST, and the words table (table + GIN index + TOAST).

    python scripts/check_row_sizes.py                 # 10,000 documents, temporary embedded server
    python scripts/check_row_sizes.py --docs 54615
"""

import argparse

from corpus import DATA, database, records, vectors
from pgmrl import Client


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="server to use (default: a temporary embedded server)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--truncate-dim", type=int, default=128)
    args = ap.parse_args()

    n = args.docs
    recs = records(n, args.data)
    docs = vectors("docs", n, args.data)
    with database(args.dsn, "pgmrl-sizes-") as dsn:
        c = Client(dsn)
        c.install()
        c.conn.execute("DROP TABLE IF EXISTS size_docs")
        c.conn.execute("CREATE TABLE size_docs (id int PRIMARY KEY, body text)")
        with c.conn.cursor() as cur:
            cur.executemany("INSERT INTO size_docs VALUES (%s, %s)", [(i + 1, r["doc"]) for i, r in enumerate(recs)])
        print(f"{n:,} Debian descriptions, {args.truncate_dim}-d rotation; bytes per row")
        print(f"{'full_type':10s} {'heap':>6s} {'heap+toast':>11s} {'words (all)':>12s}")
        for full_type in ("halfvec", "vector"):
            slug = f"size_{full_type}"
            c.create_set(slug, slug, "size_docs", "body", truncate_dim=args.truncate_dim, full_type=full_type)
            c.load_vectors(slug, list(range(1, n + 1)), docs)
            c.refit(slug)
            heap, table, words = c.conn.execute(
                "SELECT pg_relation_size(mrl.vectors_table(%s)), pg_table_size(mrl.vectors_table(%s)), "
                "pg_total_relation_size(mrl.words_table(%s))", (slug, slug, slug)).fetchone()
            print(f"{full_type:10s} {heap / n:6.0f} {table / n:11.0f} {words / n:12.0f}")


if __name__ == "__main__":
    main()
