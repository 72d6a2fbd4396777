#!/usr/bin/env python3
"""Search benchmark: pgmrl's strategies against plain pgvector, same server, same queries, same run.

Loads the precomputed all-MiniLM-L6-v2 vectors of the Debian corpus (../shared/data, 54,615 documents) into
embedding sets without re-embedding (Client.load_vectors, the same path as `pgmrl load-vectors`), then measures:

  exact                 mrl.search(strategy => 'exact'): a scan of every full vector
  pgvector hnsw ef=N    plain SQL on a full-dimension HNSW index (m 16, ef_construction 64): the baseline
  two_stage rot-D       PCA-rotation coarse vector of D dims, HNSW + exact re-rank, at several coarse_k
  two_stage raw-D       the raw prefix of D dims (no rotation), same
  two_stage rot-128 tuned   coarse_k / ef_search chosen by mrl.tune(target 0.99) on perturbed stored vectors
  binary_two_stage      HNSW on binary_quantize(embedding) (hamming) + exact re-rank

For each: agreement@10 with exact, task Recall@10 (query i is the short description of document i), p50/p95
latency through psycopg, QPS with --clients concurrent clients, index size, table size, index build time.

    python scripts/bench_search.py                          # all 54,615 documents, 1,000 queries
    python scripts/bench_search.py --docs 20000 --queries 300 --json out.json --plot curves.png
"""

import argparse
import json
import statistics
import threading
import time

import numpy as np
import psycopg

from corpus import DATA, database, vectors
from corpus import records as load_records
from pgmrl import Client
from pgmrl.db import connect


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def create_set(c: Client, slug: str, config: str, dim: int, n: int, docs: np.ndarray, log) -> dict:
    c.create_set(slug, slug, "bench_docs", "body", config=config, truncate_dim=dim)
    c.conn.execute(f"DROP INDEX mrl_data.{slug}_coarse_hnsw")  # built once after the load (timed below)
    _, t_load = timed(lambda: c.load_vectors(slug, list(range(1, n + 1)), docs))
    if c.status(slug)[0]["coarse_method"] == "rotation":
        c.refit(slug)
    _, t_build = timed(lambda: c.conn.execute("SELECT mrl.add_coarse_index(%s, NULL)", (slug,)))
    log(f"  set {slug}: {n} vectors loaded in {t_load:.1f} s, coarse index rebuilt in {t_build:.1f} s")
    return {"coarse_hnsw": t_build}


def latency_run(conn, fn, queries) -> tuple[list[list[str]], list[float]]:
    ids, lat = [], []
    for q in queries:
        t = time.perf_counter()
        ids.append(fn(conn, q))
        lat.append((time.perf_counter() - t) * 1000)
    return ids, lat


def qps(dsn: str, setup: str | None, fn, queries, clients: int, seconds: float) -> float:
    counts = [0] * clients
    stop = threading.Event()

    def client(i):
        with connect(dsn, autocommit=True) as conn:
            if setup:
                conn.execute(setup)
            j = i
            while not stop.is_set():
                fn(conn, queries[j % len(queries)])
                counts[i] += 1
                j += clients

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def mrl_search(slug, strategy, coarse_k=None, coarse_dim=None):
    def fn(conn, q):
        return [r[0] for r in conn.execute("SELECT id FROM mrl.search(%s, %s, 10, %s, %s, %s)",
                                           (slug, q, strategy, coarse_k, coarse_dim))]
    return fn


def plain_hnsw(table):
    sql = f"SELECT id::text FROM {table} ORDER BY embedding <=> %s LIMIT 10"

    def fn(conn, q):
        return [r[0] for r in conn.execute(sql, (q,))]
    return fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="server to use (default: a temporary embedded server)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--docs", type=int, default=54615)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=2, help="concurrent clients for the QPS column")
    ap.add_argument("--qps-seconds", type=float, default=3.0)
    ap.add_argument("--coarse-k", default="50,100,200,400", help="coarse_k values swept for two_stage")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--plot", help="draw recall-vs-latency curves to this PNG (needs matplotlib)")
    args = ap.parse_args()
    log = print

    records = load_records(args.docs, args.data)
    n = len(records)
    docs = vectors("docs", n, args.data)
    rng = np.random.default_rng(0)
    qidx = np.sort(rng.choice(n, size=min(args.queries, n), replace=False))
    all_q = vectors("queries", n, args.data)
    queries = [all_q[i] for i in qidx]
    relevant = [str(i + 1) for i in qidx]
    sweep = [int(x) for x in args.coarse_k.split(",")]

    with database(args.dsn, "pgmrl-bench-") as dsn:
        c = Client(dsn)
        c.install()
        conn = c.conn
        conn.execute("SET maintenance_work_mem = '1GB'")
        for slug in ("rot128", "rot256", "raw256"):
            if c.set_exists(slug):
                c.drop_set(slug)
        conn.execute("DROP TABLE IF EXISTS bench_docs CASCADE")
        conn.execute("CREATE TABLE bench_docs (id bigint PRIMARY KEY, package text, body text)")
        with conn.cursor().copy("COPY bench_docs FROM STDIN") as cp:
            for i, r in enumerate(records):
                cp.write_row((i + 1, r["id"], r["doc"]))
        # raw prefixes of MiniLM are refused by create_embedding_set (not an MRL model): a benchmark-only config
        # that declares it MRL measures what that refusal protects against
        conn.execute("INSERT INTO mrl.embedding_configs (name, model, dims, supports_mrl, matryoshka_dims, "
                     "default_truncate_dim, best_for) SELECT 'bench-minilm-raw-prefix', model, dims, true, "
                     "'{384,256,128,64,32}', 256, 'benchmark only: raw truncation of a non-MRL model' "
                     "FROM mrl.embedding_configs WHERE name = 'all-minilm-l6-v2' ON CONFLICT (name) DO NOTHING")
        log(f"{n} documents, {len(queries)} queries (the corpus' short descriptions)")
        build = {}
        build["rot128"] = create_set(c, "rot128", "all-minilm-l6-v2", 128, n, docs, log)
        build["rot256"] = create_set(c, "rot256", "all-minilm-l6-v2", 256, n, docs, log)
        build["raw256"] = create_set(c, "raw256", "bench-minilm-raw-prefix", 256, n, docs, log)
        for slug, dim in (("rot128", 64), ("raw256", 128), ("raw256", 64)):
            _, build[slug][f"coarse{dim}_hnsw"] = timed(lambda slug=slug, dim=dim: conn.execute("SELECT mrl.add_coarse_index(%s, %s)", (slug, dim)))
        _, build["rot128"]["full_hnsw"] = timed(lambda: conn.execute("SELECT mrl.create_full_index('rot128')"))
        _, build["rot128"]["binary_hnsw"] = timed(lambda: conn.execute("SELECT mrl.add_binary_index('rot128')"))
        log(f"  full-dimension HNSW built in {build['rot128']['full_hnsw']:.1f} s, binary in {build['rot128']['binary_hnsw']:.1f} s")
        tune, t_tune = timed(lambda: conn.execute("SELECT * FROM mrl.tune('rot128', 0.99)").fetchall())
        tuned = next(t for t in tune if t[4])
        # the sweeps below must not inherit the tuned ef_search floor: the tuned row sets the same values itself
        conn.execute("UPDATE mrl.embedding_sets SET default_ef_search = NULL, default_coarse_k = 100")
        log(f"  mrl.tune('rot128', 0.99): coarse_k {tuned[0]}, ef_search {tuned[1]} "
            f"(self-measured agreement {tuned[2]:.4f}) in {t_tune:.1f} s")
        sizes = {}
        for slug in ("rot128", "rot256", "raw256"):
            for name, _kind, _dim, _m, _efc, size in conn.execute("SELECT * FROM mrl.search_indexes(%s)", (slug,)):
                sizes[name] = size
            sizes[slug + "_table"] = conn.execute("SELECT pg_table_size(mrl.vectors_table(%s))", (slug,)).fetchone()[0]

        # (label, fn, session setup, index name, build key, family, main row?)
        cases = [("exact", mrl_search("rot128", "exact"), None, None, None, "exact", True)]
        for ef in (40, 100, 200, 400):
            cases.append((f"pgvector hnsw ef_search={ef}", plain_hnsw("mrl_data.rot128"), f"SET hnsw.ef_search = {ef}",
                          "rot128_full_hnsw", ("rot128", "full_hnsw"), "pgvector hnsw", True))
        cases.append((f"two_stage rot-128 tuned (coarse_k {tuned[0]}, ef {tuned[1]})",
                      mrl_search("rot128", "two_stage", tuned[0]), f"SET hnsw.ef_search = {tuned[1]}",
                      "rot128_coarse_hnsw", ("rot128", "coarse_hnsw"), "tuned", True))
        for label, slug, dim, iname in (("rot-256", "rot256", None, "rot256_coarse_hnsw"),
                                        ("rot-128", "rot128", None, "rot128_coarse_hnsw"),
                                        ("rot-64", "rot128", 64, "rot128_coarse64_hnsw"),
                                        ("raw-256", "raw256", None, "raw256_coarse_hnsw"),
                                        ("raw-128", "raw256", 128, "raw256_coarse128_hnsw"),
                                        ("raw-64", "raw256", 64, "raw256_coarse64_hnsw")):
            for ck in sweep:
                bkey = (slug, "coarse_hnsw" if dim is None else f"coarse{dim}_hnsw")
                cases.append((f"two_stage {label} coarse_k={ck}", mrl_search(slug, "two_stage", ck, dim), None, iname,
                              bkey, f"two_stage {label}", ck == 100))
        for ck in (100, 200, 400, 800):
            cases.append((f"binary_two_stage coarse_k={ck}", mrl_search("rot128", "binary_two_stage", ck), None,
                          "rot128_binary_hnsw", ("rot128", "binary_hnsw"), "binary_two_stage", ck == 400))

        exact_ids = None
        results = []
        for label, fn, setup, iname, bkey, family, main in cases:
            with connect(dsn, autocommit=True) as qc:
                if setup:
                    qc.execute(setup)
                fn(qc, queries[0])  # warm-up
                ids, lat = latency_run(qc, fn, queries)
            if exact_ids is None:
                exact_ids = ids
            agree = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)]))
            recall = float(np.mean([rel in a for a, rel in zip(ids, relevant)]))
            row = {"strategy": label, "family": family, "agreement@10": agree, "recall@10": recall,
                   "p50_ms": statistics.median(lat), "p95_ms": float(np.percentile(lat, 95)),
                   "index_mb": sizes[iname] / 2**20 if iname else 0.0,
                   "build_s": build[bkey[0]][bkey[1]] if bkey else 0.0, "main": main}
            if main:
                row["qps"] = qps(dsn, setup, fn, queries, args.clients, args.qps_seconds)
            results.append(row)
            log(f"  {label:45s} agreement {agree:.4f}  recall {recall:.3f}  p50 {row['p50_ms']:.2f} ms")

        # the tuned two-stage with a sparser coarse graph (m = 8): smaller index, re-tuned
        _, t8 = timed(lambda: conn.execute("SELECT mrl.add_coarse_index('rot128', 128, m => 8)"))
        tune8 = next(t for t in conn.execute("SELECT * FROM mrl.tune('rot128', 0.99)").fetchall() if t[4])
        fn = mrl_search("rot128", "two_stage")  # the stored defaults, as two_stage_search uses them
        with connect(dsn, autocommit=True) as qc:
            fn(qc, queries[0])
            ids, lat = latency_run(qc, fn, queries)
        size8 = conn.execute("SELECT size_bytes FROM mrl.search_indexes('rot128') WHERE index_name = 'rot128_coarse_hnsw'").fetchone()[0]
        results.append({"strategy": f"two_stage rot-128 m=8 tuned (coarse_k {tune8[0]}, ef {tune8[1]})", "family": "tuned m=8",
                        "agreement@10": float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)])),
                        "recall@10": float(np.mean([rel in a for a, rel in zip(ids, relevant)])),
                        "p50_ms": statistics.median(lat), "p95_ms": float(np.percentile(lat, 95)),
                        "index_mb": size8 / 2**20, "build_s": t8, "main": True,
                        "qps": qps(dsn, None, fn, queries, args.clients, args.qps_seconds)})
        c.close()

    report(results, sizes, n, len(queries), args)


def report(results, sizes, n, nq, args) -> None:
    base = {r["strategy"]: r for r in results}
    exact = base["exact"]
    full_mb = sizes["rot128_full_hnsw"] / 2**20
    print(f"\n{n} documents, {nq} queries, {args.clients} clients for QPS; table sizes: "
          f"rot-128 set {sizes['rot128_table'] / 2**20:.1f} MiB (vector(384) + halfvec(128)), "
          f"rot-256 {sizes['rot256_table'] / 2**20:.1f} MiB")
    cols = f"{'strategy':46s} {'agree@10':>8s} {'R@10':>6s} {'p50 ms':>7s} {'p95 ms':>7s} {'QPS':>6s} {'index MiB':>9s} {'build s':>7s} {'vs exact':>8s}"
    print(cols)
    print("-" * len(cols))
    for r in results:
        if not r["main"]:
            continue
        print(f"{r['strategy']:46s} {r['agreement@10']:8.4f} {r['recall@10']:6.3f} {r['p50_ms']:7.2f} {r['p95_ms']:7.2f} "
              f"{r.get('qps', 0):6.0f} {r['index_mb']:9.1f} {r['build_s']:7.1f} {exact['p50_ms'] / r['p50_ms']:7.1f}x")
    print("\nRatios (same run):")
    for r in results:
        if r["family"] not in ("tuned", "tuned m=8"):
            continue
        # the cheapest full-dimension HNSW setting that reaches the two-stage agreement
        hnsw = [h for h in results if h["family"] == "pgvector hnsw" and h["agreement@10"] >= r["agreement@10"]]
        ref = min(hnsw, key=lambda h: h["p50_ms"]) if hnsw else max(
            (h for h in results if h["family"] == "pgvector hnsw"), key=lambda h: h["agreement@10"])
        print(f"  {r['strategy']}: agreement {r['agreement@10']:.4f}; p50 {r['p50_ms'] / ref['p50_ms']:.2f}x of "
              f"{ref['strategy']} (agreement {ref['agreement@10']:.4f}); {exact['p50_ms'] / r['p50_ms']:.1f}x faster "
              f"than exact; index {r['index_mb'] / full_mb:.2f}x the full-dimension HNSW ({r['index_mb']:.1f} vs {full_mb:.1f} MiB)")
    print("\nSweeps (agreement@10 / p50 ms):")
    fams = {}
    for r in results:
        fams.setdefault(r["family"], []).append(r)
    for fam, rows in fams.items():
        if len(rows) > 1:
            print(f"  {fam:22s} " + "  ".join(f"{r['agreement@10']:.3f}/{r['p50_ms']:.2f}" for r in rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"documents": n, "queries": nq, "clients": args.clients, "results": results, "sizes": sizes}, f, indent=2)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(fams, args.plot)
        print(f"wrote {args.plot}")


def plot(fams, path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'pgmrl[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    singles = iter("sD^vP*X")
    for fam, rows in fams.items():
        style = "o-" if len(rows) > 1 else next(singles, "s")
        ax.plot([r["p50_ms"] for r in rows], [r["agreement@10"] for r in rows], style, label=fam, markersize=7)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency (ms, log scale)")
    ax.set_ylabel("agreement@10 with exact")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    try:
        main()
    except psycopg.Error as exc:
        raise SystemExit(f"database error: {exc}") from None
