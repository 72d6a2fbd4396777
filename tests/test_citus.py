"""pgmrl on a Citus cluster (a coordinator and two workers, scripts/setup-citus.sh): sets over distributed tables
keep the invariant under every kind of write made through the coordinator, searches agree with exact search, and the
shard triggers' intake cannot be used by an ordinary role.

PGMRL_CITUS_DSN: the coordinator's DSN (the last line setup-citus.sh prints). Without it these tests are skipped,
unless PGMRL_REQUIRE_CITUS=1 (CI), where that is a failure."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest

from helpers import check_invariant
from pgmrl.client import Client
from pgmrl.schema import citus_workers, node_dsn
from pgmrl.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
CITUS_DSN = os.environ.get("PGMRL_CITUS_DSN")
if not CITUS_DSN and os.environ.get("PGMRL_REQUIRE_CITUS") == "1":
    raise RuntimeError("PGMRL_REQUIRE_CITUS=1 but PGMRL_CITUS_DSN is not set (run scripts/setup-citus.sh)")
pytestmark = pytest.mark.skipif(not CITUS_DSN, reason="no Citus cluster (PGMRL_CITUS_DSN; scripts/setup-citus.sh)")


@pytest.fixture(scope="module")
def cluster():
    assert CITUS_DSN
    with Client(CITUS_DSN) as c:
        c.install()
    return CITUS_DSN


@pytest.fixture
def dist_table(cluster, corpus):
    """A fresh table distributed by its key, with `n` real descriptions; dropped (with its set) afterwards."""
    name = f"d_{uuid.uuid4().hex[:10]}"
    made: list[str] = []

    def make(n: int) -> str:
        with psycopg.connect(cluster, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, package text, body text)")
            conn.execute("SELECT create_distributed_table(%s, 'id')", (name,))
            with conn.cursor().copy(f"COPY {name} (id, package, body) FROM STDIN") as cp:
                for i, r in enumerate(corpus[:n]):
                    cp.write_row((i + 1, r["id"], r["doc"]))
        made.append(name)
        return name

    yield make
    with psycopg.connect(cluster, autocommit=True) as conn:
        for t in made:
            if conn.execute("SELECT 1 FROM mrl.embedding_sets WHERE slug = %s", (t,)).fetchone():
                conn.execute("SELECT mrl.drop_embedding_set(%s)", (t,))
            conn.execute(f"DROP TABLE IF EXISTS {t} CASCADE")


def node_intake_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT sum(x::int) FROM (SELECT (run_command_on_all_nodes("
                            "'SELECT count(*) FROM mrl_node.intake')).result) r(x)").fetchone()[0]


def test_distributed_set_tables_are_colocated(cluster, dist_table):
    t = dist_table(50)
    with Client(cluster) as c:
        vt = c.create_set(t, t, t, "body")
        rows = dict(c.conn.execute(
            "SELECT logicalrelid::regclass::text, colocationid FROM pg_dist_partition WHERE logicalrelid = ANY(%s::regclass[])",
            ([t, vt, f"mrl_words.{t}"],)).fetchall())
        assert len(rows) == 3 and len(set(rows.values())) == 1, rows
        # every row was queued by the backfill; the shard triggers fire on the workers
        assert c.status(t)[0]["queued"] == 50


def test_invariant_under_mixed_writes_through_the_coordinator(cluster, dist_table, corpus, corpus_vectors, embedder):
    docs, _ = corpus_vectors
    t = dist_table(400)
    with Client(cluster) as c:
        c.create_set(t, t, t, "body")
        assert c.load_vectors(t, list(range(1, 401)), docs[:400]) == 400
        conn = c.conn
        # multi-row, multi-shard statements and COPY, each kind of write
        conn.execute(f"INSERT INTO {t} (id, package, body) SELECT 400 + g, 'new', 'a new package number ' || g "
                     "FROM generate_series(1, 60) g")
        conn.execute(f"UPDATE {t} SET body = body || ' (updated)' WHERE id % 7 = 0")            # ~57 rows
        conn.execute(f"UPDATE {t} SET package = package || '-x' WHERE id % 11 = 0")            # text unchanged
        conn.execute(f"DELETE FROM {t} WHERE id % 13 = 0")                                     # cascades
        conn.execute(f"UPDATE {t} SET body = '' WHERE id IN (5, 6, 402)")                      # loses its vector
        conn.execute(f"UPDATE {t} SET body = NULL WHERE id = 8")
        with conn.cursor().copy(f"COPY {t} (id, package, body) FROM STDIN") as cp:
            for i, r in enumerate(corpus[1000:1040]):
                cp.write_row((1001 + i, r["id"], r["doc"]))
        with conn.transaction():                                                                # one 2PC transaction
            conn.execute(f"INSERT INTO {t} (id, body) VALUES (2001, 'first'), (2002, 'second'), (2003, 'third')")
            conn.execute(f"UPDATE {t} SET body = 'second, changed' WHERE id = 2002")
        assert node_intake_rows(cluster) > 0  # queued on the workers' nodes, not on the coordinator
        w = Worker(cluster, batch_size=64)
        w.run(once=True)
        assert node_intake_rows(cluster) == 0
        counts = check_invariant(conn, t, "body", table=t)
        expect = conn.execute(f"SELECT count(*) FROM {t} WHERE coalesce(body, '') <> ''").fetchone()[0]
        assert counts["vectors"] == expect
        # the vectors are the model's for the current texts (updated and new rows)
        vt = conn.execute("SELECT mrl.vectors_table(%s)::text", (t,)).fetchone()[0]
        rows = conn.execute(f"SELECT t.body, v.embedding::text FROM {t} t JOIN {vt} v ON v.id = t.id "
                            "WHERE t.id IN (7, 14, 2002, 1001, 401) ORDER BY t.id").fetchall()
        assert len(rows) == 5
        got = np.array([[float(x) for x in r[1].strip("[]").split(",")] for r in rows], dtype=np.float32)
        want = embedder.encode([r[0] for r in rows], kind="document")
        cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert cos.min() > 0.999, cos


def test_two_stage_search_on_a_distributed_set_agrees_with_exact(cluster, dist_table, corpus_vectors):
    docs, queries = corpus_vectors
    n = 3000
    t = dist_table(n)
    with Client(cluster) as c:
        c.create_set(t, t, t, "body", truncate_dim=128)
        assert c.load_vectors(t, list(range(1, n + 1)), docs[:n]) == n
        assert c.refit(t) == n  # one rotation, fitted on the coordinator, used for every shard's coarse vectors
        assert set(c.strategies(t)) >= {"exact", "two_stage"}
        unit = docs[:n] / np.linalg.norm(docs[:n], axis=1, keepdims=True)
        agree_exact, agree_truth = [], []
        for q in queries[:200]:
            exact = [int(i) for i, _ in c.search(t, q, 10, strategy="exact")]
            two = [int(i) for i, _ in c.search(t, q, 10, strategy="two_stage", coarse_k=200)]
            truth = list(np.argsort(-(unit @ (q / np.linalg.norm(q))))[:10] + 1)
            agree_exact.append(len(set(exact) & set(two)) / 10)
            agree_truth.append(len(set(exact) & {int(x) for x in truth}) / 10)
        # exact search through the coordinator is the single-node answer (numpy over the same vectors)
        assert np.mean(agree_truth) >= 0.99, np.mean(agree_truth)
        assert np.mean(agree_exact) >= 0.99, np.mean(agree_exact)


def test_ordinary_roles_search_but_cannot_queue_or_own_distributed_sets(cluster, dist_table, corpus_vectors):
    """An ordinary role reads through the shards' row-level security; neither it nor a set administrator can reach
    the intake or attach the shard trigger function, and a set administrator cannot create a set over a distributed
    table (its shards on the workers are outside the checks pgmrl makes on the coordinator: code it attached to them
    would run as the sidecar)."""
    docs, queries = corpus_vectors
    t = dist_table(300)
    role = f"r_{uuid.uuid4().hex[:8]}"
    with Client(cluster) as c:
        c.create_set(t, t, t, "body")
        c.load_vectors(t, list(range(1, 301)), docs[:300])
        c.conn.execute(f"CREATE ROLE {role} LOGIN")  # propagated to the workers by Citus
        c.conn.execute(f"GRANT SELECT ON {t} TO {role}")
        c.conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
        c.conn.execute(f"GRANT pgmrl_admin TO {role}")
    try:
        with Client(cluster, role=role) as r:
            hits = r.search(t, queries[0], 10, strategy="exact")
            assert len(hits) == 10  # the shards' row-level security names the workers' copy of the source
            r.conn.execute(f"CREATE TABLE {role}_own (id bigint PRIMARY KEY, body text)")
            for sql in ("SELECT count(*) FROM mrl_node.intake", "INSERT INTO mrl_node.intake (set_id, ids) VALUES (1, '{1}')",
                        f"CREATE TRIGGER x AFTER INSERT ON {role}_own REFERENCING NEW TABLE AS mrl_new FOR EACH "
                        f"STATEMENT EXECUTE FUNCTION mrl_node._queue_shard_changes('1', 'public.{t}', 'id')"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    r.conn.execute(sql)
            r.conn.execute("SELECT create_distributed_table(%s, 'id')", (f"{role}_own",))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only by a superuser"):
                r.create_set(f"{role}_own", f"{role}_own", f"{role}_own", "body")
            r.conn.execute(f"DROP TABLE {role}_own")
    finally:
        with psycopg.connect(cluster, autocommit=True) as conn:
            conn.execute(f"REVOKE ALL ON {t} FROM {role}")
            conn.execute(f"REVOKE CREATE ON SCHEMA public FROM {role}")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def worker_nodes(dsn: str) -> list[tuple[str, int]]:
    with psycopg.connect(dsn) as conn:
        return citus_workers(conn)


def worker_dsns(dsn: str) -> dict[int, str]:
    return {port: node_dsn(dsn, host, port) for host, port in worker_nodes(dsn)}


def test_shard_trigger_refuses_fake_shards_and_the_mover_drops_bad_rows(cluster, dist_table):
    """The shard trigger function queues only from a real shard of the named table placed on its own node, keyed by
    the distribution column; intake rows that name another set's source, or hold a NULL key, are dropped by the
    sidecar without stopping it."""
    t = dist_table(20)
    with Client(cluster) as c:
        c.create_set(t, t, t, "body")
        set_id = c.conn.execute("SELECT id FROM mrl.embedding_sets WHERE slug = %s", (t,)).fetchone()[0]
        # a shard of the source placed on the second worker, and the first worker's DSN
        shard, port = c.conn.execute(
            "SELECT shardid, nodeport FROM citus_shards WHERE table_name = %s::regclass ORDER BY nodeport DESC LIMIT 1",
            (t,)).fetchone()
        Worker(cluster).run(once=True)
    nodes = worker_dsns(cluster)
    other = next(d for p, d in nodes.items() if p != port)
    trig = f"EXECUTE FUNCTION mrl_node._queue_shard_changes('{set_id}', 'public.{t}', %s)"
    with psycopg.connect(other, autocommit=True) as w:
        w.execute("SET citus.enable_ddl_propagation = off")
        # a table named like a shard that lives on another node
        w.execute(f"CREATE TABLE public.{t}_{shard} (id bigint PRIMARY KEY, body text)")
        try:
            w.execute(f"CREATE TRIGGER fake AFTER INSERT ON public.{t}_{shard} REFERENCING NEW TABLE AS mrl_new "
                      f"FOR EACH STATEMENT " + trig.replace("%s", "'id'"))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not on a shard"):
                w.execute(f"INSERT INTO public.{t}_{shard} VALUES (424242, 'x')")
        finally:
            w.execute(f"DROP TABLE public.{t}_{shard}")
        # a real shard on this node, but keyed by another column than the distribution column
        w.execute("SET citus.override_table_visibility = off")  # (Citus hides shards from the catalog otherwise)
        real = w.execute("SELECT c.relname FROM pg_class c JOIN pg_dist_shard d ON c.relname = %s || '_' || d.shardid "
                         "WHERE d.logicalrelid = %s::regclass LIMIT 1", (t, t)).fetchone()[0]
        w.execute("SET citus.enable_manual_changes_to_shards = on")
        w.execute(f"CREATE TRIGGER wrong_key AFTER INSERT ON public.{real} REFERENCING NEW TABLE AS mrl_new "
                  f"FOR EACH STATEMENT " + trig.replace("%s", "'body'"))
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not on a shard"):
                w.execute(f"INSERT INTO public.{real} VALUES (-1, 'x')")
        finally:
            w.execute(f"DROP TRIGGER wrong_key ON public.{real}")
        # bad intake rows (as a superuser could write them): a NULL key, another table's name
        w.execute("INSERT INTO mrl_node.intake (set_id, ids, source) VALUES (%s, '{NULL}', %s), (%s, '{7}', 'public.nope')",
                  (set_id, f"public.{t}", set_id))
    with Client(cluster) as c:
        Worker(cluster).run(once=True)  # drops both with a warning, and goes on
        assert node_intake_rows(cluster) == 0
        assert c.status(t)[0]["queued"] == 0


def test_a_distributed_set_handed_to_a_non_superuser_is_refused(cluster, dist_table, corpus_vectors):
    docs, queries = corpus_vectors
    t = dist_table(50)
    role = f"o_{uuid.uuid4().hex[:8]}"
    with Client(cluster) as c:
        c.create_set(t, t, t, "body")
        c.load_vectors(t, list(range(1, 51)), docs[:50])
        c.conn.execute(f"CREATE ROLE {role}")
        try:
            c.conn.execute(f"ALTER TABLE {t} OWNER TO {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="owned by a superuser"):
                c.search(t, queries[0], 5, strategy="exact")
            c.conn.execute(f"UPDATE {t} SET body = body || ' changed' WHERE id = 1")
            w = Worker(cluster, max_attempts=1)
            w.run(once=True)
            assert w.processed == 0 and w.failed >= 1  # the batch is refused, never run
        finally:
            c.conn.execute(f"ALTER TABLE {t} OWNER TO CURRENT_USER")
            c.conn.execute(f"DROP ROLE {role}")


def test_refused_sources(cluster, dist_table):
    with psycopg.connect(cluster, autocommit=True) as conn:
        name = f"ref_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, body text)")
        conn.execute("SELECT create_reference_table(%s)", (name,))
        try:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="reference"):
                conn.execute("SELECT mrl.create_embedding_set(%s, %s, %s::regclass, 'body')", (name, name, name))
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="sync"):
                t = dist_table(10)
                conn.execute("SELECT mrl.create_embedding_set(%s, %s, %s::regclass, 'body', mode => 'sync')", (t, t, t))
        finally:
            conn.execute(f"DROP TABLE {name}")


def _serve(dsn: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pgmrl.cli", "serve", "--dsn", dsn, "--no-http", "--batch-size",
                             "16", "--poll-interval", "0.5", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_faults_kill_9_sidecars_and_a_worker_node_restart_during_writes(cluster, dist_table, corpus):
    """Four writers through the coordinator (INSERT, UPDATE, DELETE, each possibly multi-shard), two sidecars that
    are killed with SIGKILL mid-batch and restarted, and a crash-restart of one worker node in the middle: after the
    writers stop and one `pgmrl serve --once`, the invariant holds on the whole set."""
    t = dist_table(300)
    text = "left(body, 300)"  # short texts keep the model fast; the machinery is what is under test
    with Client(cluster) as c:
        c.create_set(t, t, t, text)
    stop = threading.Event()
    ok, failed = [0], [0]
    errors: list[tuple[float, str]] = []
    restart: list[float] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            try:
                with psycopg.connect(cluster, autocommit=True) as w:
                    while not stop.is_set():
                        key = rng.randint(1, 450)
                        doc = corpus[rng.randint(0, 5000)]["doc"]
                        op = rng.random()
                        if op < 0.3:
                            w.execute(f"INSERT INTO {t} (id, body) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE "
                                      "SET body = EXCLUDED.body", (key, doc))
                        elif op < 0.55:
                            w.execute(f"UPDATE {t} SET body = %s WHERE id = %s", (doc, key))
                        elif op < 0.7:  # multi-shard
                            w.execute(f"UPDATE {t} SET body = body || ' +' WHERE id BETWEEN %s AND %s", (key, key + 5))
                        elif op < 0.85:
                            w.execute(f"DELETE FROM {t} WHERE id = %s", (key,))
                        else:  # multi-row, multi-shard INSERT
                            w.execute(f"INSERT INTO {t} (id, body) SELECT g, %s FROM generate_series(%s::bigint, %s::bigint) g "
                                      "ON CONFLICT (id) DO NOTHING", (doc, key, key + 3))
                        ok[0] += 1
            except psycopg.Error as exc:
                failed[0] += 1  # the node restart: statements on its shards fail while it is down
                errors.append((time.monotonic(), f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:100]}"))
                time.sleep(0.2)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for th in threads:
        th.start()
    sidecars = [_serve(cluster), _serve(cluster)]
    kills = 0
    try:
        for round_ in range(4):
            time.sleep(random.uniform(3, 5))
            if round_ == 1:  # a worker node crashes and comes back while everything runs
                restart.append(time.monotonic())
                subprocess.run(["bash", str(ROOT / "scripts" / "setup-citus.sh"), "--restart", "worker1", "immediate"],
                               check=True, capture_output=True, timeout=120)
                restart.append(time.monotonic())
            victim = sidecars[round_ % 2]
            if victim.poll() is None:
                victim.send_signal(signal.SIGKILL)
                kills += 1
            victim.communicate(timeout=30)
            sidecars[round_ % 2] = _serve(cluster)
        time.sleep(3)
    finally:
        stop.set()
        for th in threads:
            th.join(60)
        for p in sidecars:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            p.communicate(timeout=60)
    assert kills >= 3 and ok[0] > 100, (kills, ok[0])
    with psycopg.connect(cluster, autocommit=True) as conn:
        conn.execute("SELECT recover_prepared_transactions()")  # 2PC left prepared by the node crash
        rc = subprocess.run([sys.executable, "-m", "pgmrl.cli", "serve", "--dsn", cluster, "--once"],
                            capture_output=True, text=True, timeout=900)
        assert rc.returncode == 0, rc.stderr[-2000:]
        assert node_intake_rows(cluster) == 0
        counts = check_invariant(conn, t, text, table=t)
    # a writer sees errors only while the node goes down and comes back (connections to it fail, 2PC through it
    # aborts, in whatever words Citus relays them); any other error is a failure of pgmrl's shard triggers
    other = [e for at, e in errors if not restart[0] - 0.5 <= at <= restart[1] + 10]
    assert not other, other[:5]
    print(f"{ok[0]} statements by 4 writers ({failed[0]} failed while a node was down), {kills} kill -9 of the "
          f"sidecars, worker1 crash-restarted; invariant holds over {counts['vectors']} vectors")


def test_each_shard_returns_coarse_k_candidates(cluster, corpus, corpus_vectors):
    """With few shards and coarse_k above hnsw.ef_search, each shard's HNSW scan must still return coarse_k rows
    (pgmrl install turns on iterative scans on the workers): two-stage at a large coarse_k equals exact search."""
    docs, queries = corpus_vectors
    t = f"few_{uuid.uuid4().hex[:8]}"
    n = 3000
    with Client(cluster) as c:
        conn = c.conn
        conn.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, body text)")
        conn.execute("SELECT create_distributed_table(%s, 'id', shard_count => 2)", (t,))
        try:
            with conn.cursor().copy(f"COPY {t} (id, body) FROM STDIN") as cp:
                for i, r in enumerate(corpus[:n]):
                    cp.write_row((i + 1, r["doc"]))
            c.create_set(t, t, t, "body", truncate_dim=64)
            c.load_vectors(t, list(range(1, n + 1)), docs[:n])
            c.refit(t)
            vt = conn.execute("SELECT mrl.vectors_table(%s)::text", (t,)).fetchone()[0]
            set_id = conn.execute("SELECT id FROM mrl.embedding_sets WHERE slug = %s", (t,)).fetchone()[0]
            got, agree = [], []
            for q in queries[:50]:
                # the coarse stage as the search sends it to the shards: ORDER BY ... LIMIT coarse_k
                cq = conn.execute("SELECT mrl.coarse_of(%s, %s::vector)::text",
                                  (set_id, "[" + ",".join(map(str, q.tolist())) + "]")).fetchone()[0]
                got.append(conn.execute(f"SELECT count(*) FROM (SELECT id FROM {vt} ORDER BY coarse <=> %s::halfvec "
                                        "LIMIT 200) s", (cq,)).fetchone()[0])
                exact = {int(i) for i, _ in c.search(t, q, 10, strategy="exact")}
                two = {int(i) for i, _ in c.search(t, q, 10, strategy="two_stage", coarse_k=200)}
                agree.append(len(exact & two) / 10)
            assert set(got) == {200}, got  # (without iterative scans: 2 shards x ef_search 40 = 80)
            assert np.mean(agree) >= 0.97, np.mean(agree)
        finally:
            if conn.execute("SELECT 1 FROM mrl.embedding_sets WHERE slug = %s", (t,)).fetchone():
                conn.execute("SELECT mrl.drop_embedding_set(%s)", (t,))
            conn.execute(f"DROP TABLE {t}")


def test_filtered_search_on_a_distributed_set(cluster, dist_table, corpus, corpus_vectors):
    """A filter on a source column: the candidates come from the shards' coarse indexes (iterative scans keep going
    past the rows the filter drops), and every hit satisfies the filter and is the exact filtered answer."""
    docs, queries = corpus_vectors
    n = 3000
    t = dist_table(n)
    with Client(cluster) as c:
        c.create_set(t, t, t, "body", truncate_dim=128)
        c.load_vectors(t, list(range(1, n + 1)), docs[:n])
        c.refit(t)
        c.conn.execute(f"UPDATE {t} SET package = 'even' WHERE id % 2 = 0")  # text unchanged: nothing to embed
        agree = []
        for q in queries[:30]:
            exact = [int(i) for i, _ in c.search(t, q, 10, strategy="exact", filter={"package": "even"})]
            two = [int(i) for i, _ in c.search(t, q, 10, strategy="two_stage", coarse_k=200, filter={"package": "even"})]
            assert len(two) == 10 and all(i % 2 == 0 for i in two), two
            agree.append(len(set(exact) & set(two)) / 10)
        assert np.mean(agree) >= 0.95, np.mean(agree)


def test_long_table_names_whose_shards_citus_renames(cluster, corpus):
    """Citus shortens and hashes the names of shards of long-named tables: the shard trigger must still know them."""
    t = f"a_table_with_a_name_long_enough_that_citus_hashes_its_shard_names_{uuid.uuid4().hex[:6]}"[:63]
    with Client(cluster) as c:
        conn = c.conn
        conn.execute(f'CREATE TABLE "{t}" (id bigint PRIMARY KEY, body text)')
        conn.execute("SELECT create_distributed_table(%s, 'id')", (f'"{t}"',))
        try:
            slug = "long_" + uuid.uuid4().hex[:8]
            c.create_set(slug, slug, f'public."{t}"', "body")
            with conn.cursor() as cur:
                cur.executemany(f'INSERT INTO "{t}" VALUES (%s, %s)', [(i, r["doc"][:300]) for i, r in enumerate(corpus[:40])])
            assert node_intake_rows(cluster) > 0
            Worker(cluster).run(once=True)
            check_invariant(conn, slug, "body", table=f'"{t}"')
            c.conn.execute("SELECT mrl.drop_embedding_set(%s)", (slug,))
        finally:
            conn.execute(f'DROP TABLE "{t}"')
