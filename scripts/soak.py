#!/usr/bin/env python3
"""Soak: steady INSERT/UPDATE/DELETE load for N minutes with two `pgmrl serve` workers, then the invariant.

Reports the queue lag (age of the oldest queued item, sampled every second) p50/p95/max, the write and embedding
throughput, and whether every row ended with exactly one current vector.

    python scripts/soak.py --minutes 10                 # temporary embedded server
    python scripts/soak.py --minutes 10 --dsn postgresql://...
"""

import argparse
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psycopg

from corpus import database, records
from pgmrl import Client

TEXT = "left(body, 400)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=float, default=20, help="write statements per second (all writers together)")
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--keys", type=int, default=5000)
    args = ap.parse_args()

    docs = [r["doc"] for r in records(20000)]
    with database(args.dsn, "pgmrl-soak-") as dsn:
        soak(args, docs, dsn)


def soak(args, docs: list[str], dsn: str) -> None:
    c = Client(dsn)
    c.install()
    c.conn.execute("DROP TABLE IF EXISTS soak_docs CASCADE")
    if c.set_exists("soak"):
        c.drop_set("soak")
    c.conn.execute("CREATE TABLE soak_docs (id bigint PRIMARY KEY, body text, touched int DEFAULT 0)")
    c.create_set("Soak", "soak", "soak_docs", TEXT)

    workers = [subprocess.Popen([sys.executable, "-m", "pgmrl.cli", "serve", "--dsn", dsn, "--no-http"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    stop = threading.Event()
    counts = {"insert": 0, "update": 0, "delete": 0, "other": 0, "errors": 0}
    lock = threading.Lock()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        interval = args.writers / args.rate
        with psycopg.connect(dsn, autocommit=True) as w:
            while not stop.is_set():
                t = time.monotonic()
                key, doc = rng.randint(1, args.keys), rng.choice(docs)
                op = rng.random()
                try:
                    if op < 0.45:
                        w.execute("INSERT INTO soak_docs (id, body) VALUES (%s, %s) "
                                  "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body", (key, doc))
                        kind = "insert"
                    elif op < 0.8:
                        w.execute("UPDATE soak_docs SET body = %s WHERE id = %s", (doc, key))
                        kind = "update"
                    elif op < 0.9:
                        w.execute("DELETE FROM soak_docs WHERE id = %s", (key,))
                        kind = "delete"
                    else:
                        w.execute("UPDATE soak_docs SET touched = touched + 1 WHERE id = %s", (key,))
                        kind = "other"
                except psycopg.Error:
                    kind = "errors"
                with lock:
                    counts[kind] += 1
                stop.wait(max(0.0, interval - (time.monotonic() - t)))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(args.writers)]
    for t in threads:
        t.start()
    lags, start = [], time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as mon:
        while time.monotonic() - start < args.minutes * 60:
            age = mon.execute("SELECT coalesce(extract(epoch FROM oldest_queued_age), 0) FROM mrl.queue_status "
                              "WHERE slug = 'soak'").fetchone()[0]
            lags.append(float(age))
            time.sleep(1)
        stop.set()
        for t in threads:
            t.join()
        load_s = time.monotonic() - start
        drain_start = time.monotonic()
        while mon.execute("SELECT count(*) FROM mrl.queue WHERE NOT dead").fetchone()[0] > 0:
            time.sleep(0.5)
        drain_s = time.monotonic() - drain_start
        bad = mon.execute(
            f"SELECT count(*) FROM soak_docs t FULL JOIN mrl_data.soak v ON v.id = t.id "
            f"WHERE (t.id IS NULL) OR (coalesce({TEXT}, '') <> '' AND (v.id IS NULL OR v.content_hash <> md5({TEXT})))"
        ).fetchone()[0]
        rows, vectors = mon.execute("SELECT (SELECT count(*) FROM soak_docs), (SELECT count(*) FROM mrl_data.soak)").fetchone()
        dead = mon.execute("SELECT count(*) FROM mrl.queue WHERE dead").fetchone()[0]
    for w in workers:
        w.send_signal(signal.SIGTERM)
    codes = [w.wait(60) for w in workers]
    writes = sum(v for k, v in counts.items() if k != "errors")
    lag = np.array(lags)
    print(f"soak: {load_s / 60:.1f} min, {args.writers} writers, 2 workers, keys 1..{args.keys}")
    print(f"  writes: {writes} ({writes / load_s:.1f}/s): {counts}")
    print(f"  queue lag (oldest queued item, sampled each second): p50 {np.percentile(lag, 50):.2f} s, "
          f"p95 {np.percentile(lag, 95):.2f} s, max {lag.max():.2f} s")
    print(f"  final drain after the load stopped: {drain_s:.1f} s; workers exited with {codes}")
    print(f"  invariant: {rows} rows, {vectors} vectors, {bad} rows without a current vector or vectors without a row, "
          f"{dead} dead-lettered -> {'HOLDS' if bad == 0 and dead == 0 and counts['errors'] == 0 else 'VIOLATED'}")
    c.close()


if __name__ == "__main__":
    main()
