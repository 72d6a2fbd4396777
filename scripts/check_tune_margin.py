#!/usr/bin/env python3
"""Does mrl.tune's choice hold on fresh queries? Tunes a set to a target agreement, then reads the agreement of the
stored settings on fresh samples (mrl.measure_recall: stored vectors perturbed by noise, never the tuning sample).

Compares, in the same run and database, two rules for choosing coarse_k:
  before   the smallest trial whose mean on a 200-query sample reaches the target (mrl.tune until the margin)
  margin   the smallest trial whose one-sided 95% lower bound (agreement_low) on --sample queries reaches it (what
           mrl.tune stores now)
and prints, for each, the fresh agreements (min / mean / max over --fresh samples of --fresh-sample queries; their
mean estimates the true agreement of the chosen settings) and how many read below the target.

    python scripts/check_tune_margin.py                       # 20,000 Debian vectors, target 0.99, 8 fresh samples
    python scripts/check_tune_margin.py --docs 54615 --fresh 12 --json out.json
"""

import argparse
import json
import statistics
import time

from corpus import DATA, database, vectors
from pgmrl import Client


def fresh_reads(conn, slug: str, n: int, sample: int) -> list[float]:
    return [conn.execute("SELECT agreement FROM mrl.measure_recall(%s, %s)", (slug, sample)).fetchone()[0]
            for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="server to use (default: a temporary embedded server)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--sample", type=int, default=500, help="tuning sample (mrl.tune's default)")
    ap.add_argument("--fresh", type=int, default=8, help="fresh samples read per rule")
    ap.add_argument("--fresh-sample", type=int, default=300, help="queries per fresh sample")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    t0 = time.perf_counter()
    docs = vectors("docs", args.docs, args.data)
    with database(args.dsn, "pgmrl-tune-") as dsn:
        c = Client(dsn)
        c.install()
        conn = c.conn
        conn.execute("DROP TABLE IF EXISTS tune_docs")
        conn.execute("CREATE TABLE tune_docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO tune_docs SELECT i, 'doc ' || i FROM generate_series(1, %s) i", (args.docs,))
        c.create_set("tune", "tune", "tune_docs", "body", truncate_dim=128)
        c.load_vectors("tune", list(range(1, args.docs + 1)), docs)
        c.refit("tune")
        print(f"{args.docs} vectors loaded and rotation fitted in {time.perf_counter() - t0:.0f} s", flush=True)

        old_trials = conn.execute("SELECT * FROM mrl.tune('tune', %s, 200)", (args.target,)).fetchall()
        by_mean = next(((ck, ef) for ck, ef, agree, *_ in old_trials if agree >= args.target), None)
        trials = conn.execute("SELECT * FROM mrl.tune('tune', %s, %s)", (args.target, args.sample)).fetchall()
        print("coarse_k  ef_search  agreement  lower_95%")
        for ck, ef, agree, _p50, chosen, low in trials:
            print(f"{ck:8d}  {ef:9d}  {agree:9.4f}  {low:9.4f}{'  <- stored' if chosen else ''}")
        by_margin = next(((ck, ef) for ck, ef, _a, _p, chosen, _l in trials if chosen), None)
        results = {}
        for rule, choice in (("before", by_mean), ("margin", by_margin)):
            if choice is None:
                print(f"{rule}: no trial reached the target")
                continue
            conn.execute("SELECT * FROM mrl.configure_search('tune', NULL, %s, %s)", choice)
            reads = fresh_reads(conn, "tune", args.fresh, args.fresh_sample)
            results[rule] = {"coarse_k": choice[0], "ef_search": choice[1], "fresh": reads}
            print(f"{rule:6s} coarse_k {choice[0]:4d} ef {choice[1]:4d}: fresh agreement min {min(reads):.4f} "
                  f"mean {statistics.mean(reads):.4f} max {max(reads):.4f}; "
                  f"{sum(r < args.target for r in reads)}/{len(reads)} below {args.target}", flush=True)
        print(f"total {time.perf_counter() - t0:.0f} s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "trials": trials, "trials_before": old_trials, "results": results}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
