"""One node against a 3-node Citus cluster, in one run, on the same machine: load, sync and search of an embedding
set over the same real Debian descriptions.

    python scripts/bench_citus.py                       # 20,000 rows; starts scripts/setup-citus.sh's cluster
    python scripts/bench_citus.py --rows 54615 --citus-dsn postgresql://postgres@127.0.0.1:55432/pgmrl

Both targets get the same steps: COPY of the rows into the source (distributed by its key on the cluster), the set
(128-d rotation), `load_vectors` of the precomputed MiniLM vectors (../shared/data), `refit`, then the same mix of
writes through the (coordinator's) SQL: a multi-row INSERT, UPDATEs of text and of another column, a multi-shard
DELETE, an UPDATE to empty text, a COPY; then one `pgmrl serve --once`, which embeds the changed rows with the real
model. The sync invariant is checked on both (every row with text has exactly one vector with its text's hash,
nothing else, nothing queued), then the searches: two-stage at each --coarse-k and exact, on real queries, with
agreement@10 against exact on the same target and the overlap of the cluster's and the single node's top 10.

SAME MACHINE: the three Citus nodes share the 2 cores (and the disk) of the one server they are compared with, so
this measures the cost of distribution (coordinator planning, a round trip per shard group), not its gain.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the invariant check the tests use

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bundled model; nothing is downloaded

from helpers import check_invariant  # noqa: E402
from pgmrl.client import Client  # noqa: E402
from pgmrl.embedded.server import EmbeddedServer  # noqa: E402
from pgmrl.worker import Worker  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", flush=True)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def load_corpus(data: Path, n: int, extra: int):
    records = []
    with open(data / "debian-packages.jsonl", encoding="utf-8") as f:
        for line in f:
            records.append(json.loads(line))
            if len(records) >= n + extra:
                break
    docs = np.load(data / "debian-packages.minilm-docs.f16.npy", mmap_mode="r")[:n].astype(np.float32)
    queries = np.load(data / "debian-packages.minilm-queries.f16.npy", mmap_mode="r")
    return records, docs, queries


def run_target(label: str, dsn: str, distributed: bool, table: str, records, docs, queries, args) -> dict:
    n = args.rows
    out: dict = {"label": label}
    with Client(dsn) as c:
        conn = c.conn
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, package text, body text)")
        if distributed:
            conn.execute("SELECT create_distributed_table(%s, 'id', shard_count => %s)", (table, args.shard_count))
        def copy_rows():
            with conn.cursor().copy(f"COPY {table} (id, package, body) FROM STDIN") as cp:
                for i, r in enumerate(records[:n]):
                    cp.write_row((i + 1, r["id"], r["doc"]))
        _, out["copy_s"] = timed(copy_rows)
        _, out["create_set_s"] = timed(lambda: c.create_set(table, table, table, "body", truncate_dim=128))
        written, out["load_vectors_s"] = timed(lambda: c.load_vectors(table, list(range(1, n + 1)), docs))
        assert written == n, written
        _, out["refit_s"] = timed(lambda: c.refit(table))
        log(f"  {label}: COPY {out['copy_s']:.1f} s, load_vectors {out['load_vectors_s']:.1f} s "
            f"({n / out['load_vectors_s']:,.0f} rows/s), refit {out['refit_s']:.1f} s")

        # the same writes on both targets
        new = records[n:n + args.changes]
        t = time.perf_counter()
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} (id, package, body) VALUES (%s, %s, %s)",
                            [(n + 1 + i, r["id"], r["doc"]) for i, r in enumerate(new[: len(new) // 2])])
        conn.execute(f"UPDATE {table} SET body = body || ' (revised)' WHERE id %% %s = 0", (max(1, n // args.changes),))
        conn.execute(f"UPDATE {table} SET package = package || '-x' WHERE id % 101 = 0")
        conn.execute(f"DELETE FROM {table} WHERE id %% %s = 3", (max(1, n // args.changes),))
        conn.execute(f"UPDATE {table} SET body = '' WHERE id IN (11, 12, 13)")
        with conn.cursor().copy(f"COPY {table} (id, package, body) FROM STDIN") as cp:
            for i, r in enumerate(new[len(new) // 2:]):
                cp.write_row((n + 1 + len(new) // 2 + i, r["id"], r["doc"]))
        out["writes_s"] = time.perf_counter() - t
        w = Worker(dsn, batch_size=64)
        _, out["sync_s"] = timed(lambda: w.run(once=True))
        out["synced_keys"] = w.processed
        counts = check_invariant(conn, table, "body", table=table)
        out["vectors"] = counts["vectors"]
        log(f"  {label}: writes {out['writes_s']:.1f} s; serve --once embedded {w.processed} queued keys in "
            f"{out['sync_s']:.1f} s ({w.processed / out['sync_s']:.1f}/s); invariant holds over {counts['vectors']:,} vectors")

        results: dict = {}
        for strategy, ck in [("exact", None)] + [("two_stage", k) for k in args.coarse_k]:
            key = strategy if ck is None else f"two_stage ck {ck}"
            lat, ids = [], []
            for q in queries[:5]:  # warm-up
                c.search(table, q, 10, strategy=strategy, coarse_k=ck)
            for q in queries:
                hits, s = timed(lambda q=q, strategy=strategy, ck=ck: c.search(table, q, 10, strategy=strategy,
                                                                                 coarse_k=ck))
                lat.append(s * 1000)
                ids.append([int(h[0]) for h in hits])
            results[key] = {"p50_ms": statistics.median(lat), "p95_ms": float(np.percentile(lat, 95)), "ids": ids}
        exact = results["exact"]["ids"]
        for key, r in results.items():
            r["agreement"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(r["ids"], exact, strict=True)]))
            log(f"  {label}: {key:16s} p50 {r['p50_ms']:.2f} ms p95 {r['p95_ms']:.2f} ms agreement@10 with exact "
                f"{r['agreement']:.4f}")
        out["search"] = results
        c.conn.execute("SELECT mrl.drop_embedding_set(%s)", (table,))
        c.conn.execute(f"DROP TABLE {table}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the source table (real descriptions)")
    ap.add_argument("--queries", type=int, default=200, help="real queries (their precomputed vectors)")
    ap.add_argument("--changes", type=int, default=400, help="size of the mix of writes before the sync")
    ap.add_argument("--coarse-k", default="100,200", help="two-stage coarse_k values")
    ap.add_argument("--shard-count", type=int, default=32, help="shards of the distributed source (Citus' default: 32)")
    ap.add_argument("--citus-dsn", default=os.environ.get("PGMRL_CITUS_DSN"),
                    help="the coordinator [env PGMRL_CITUS_DSN]; default: start scripts/setup-citus.sh's cluster")
    ap.add_argument("--data", default=str(DATA), help="the corpus and its precomputed vectors (../shared/data)")
    ap.add_argument("--json", help="write the measurements here")
    args = ap.parse_args()
    args.coarse_k = [int(x) for x in args.coarse_k.split(",")]

    records, docs, allq = load_corpus(Path(args.data), args.rows, args.changes)
    queries = allq[:args.queries].astype(np.float32)
    log(f"{args.rows:,} real Debian descriptions with their MiniLM vectors, {len(queries)} real queries; "
        "SAME MACHINE: the 3 Citus nodes share the single node's 2 cores")
    if not args.citus_dsn:
        res = subprocess.run(["bash", str(ROOT / "scripts" / "setup-citus.sh")], capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"scripts/setup-citus.sh failed:\n{res.stderr[-2000:]}")
        args.citus_dsn = res.stdout.strip().splitlines()[-1]
    with Client(args.citus_dsn) as c:
        c.install()
        nodes = c.conn.execute("SELECT count(*) FROM pg_dist_node WHERE isactive").fetchone()[0]
    log(f"Citus cluster: {nodes} nodes; the source gets {args.shard_count} shards")

    tmp = tempfile.mkdtemp(prefix="pgmrl-bench-citus-")
    os.chmod(tmp, 0o755)
    server = EmbeddedServer(Path(tmp) / "pgdata")
    table = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        single_dsn = server.start()
        with Client(single_dsn) as c:
            c.install()
        log("single node (embedded PostgreSQL 18, no Citus):")
        single = run_target("single node", single_dsn, False, table, records, docs, queries, args)
        log("3-node Citus cluster (through the coordinator):")
        cluster = run_target("citus 3 nodes", args.citus_dsn, True, table, records, docs, queries, args)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n=== {args.rows:,} rows, {len(queries)} queries; single node vs 3-node Citus cluster ({args.shard_count} "
          f"shards) ON THE SAME MACHINE (2 cores), total {time.perf_counter() - T0:.0f} s ===")
    print(f"{'':34s} {'single node':>12s} {'citus 3 nodes':>14s} {'ratio':>7s}")
    for key, what in (("load_vectors_s", "load_vectors rows/s"), ("sync_s", "serve --once keys/s (model)")):
        a = (args.rows if key == "load_vectors_s" else single["synced_keys"]) / single[key]
        b = (args.rows if key == "load_vectors_s" else cluster["synced_keys"]) / cluster[key]
        print(f"{what:34s} {a:12,.1f} {b:14,.1f} {b / a:6.2f}x")
    for key in single["search"]:
        a, b = single["search"][key], cluster["search"][key]
        print(f"{key + ' p50 ms':34s} {a['p50_ms']:12.2f} {b['p50_ms']:14.2f} {b['p50_ms'] / a['p50_ms']:6.2f}x")
        same = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a["ids"], b["ids"], strict=True)])
        print(f"{'  agreement@10 with exact':34s} {a['agreement']:12.4f} {b['agreement']:14.4f}   "
              f"(top 10 cluster vs single node: {same:.4f})")
    print(f"{'vectors after the writes':34s} {single['vectors']:12,d} {cluster['vectors']:14,d}")
    if args.json:
        for r in (single, cluster):
            for s in r["search"].values():
                s.pop("ids")
        Path(args.json).write_text(json.dumps({"rows": args.rows, "queries": len(queries), "single": single,
                                               "citus": cluster}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
