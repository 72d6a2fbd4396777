"""The embedding worker: drains mrl.queue into the sets' vector tables.

One batch = one transaction: claim queue rows FOR UPDATE SKIP LOCKED, read the current texts, embed them in one
call, write vectors (only where the text still has the hash that was embedded) and delete the claimed rows.
Several workers can run at once; a crash rolls the batch back and the rows are claimed again.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

import numpy as np
import psycopg

from .db import VectorList, connect, to_numpy
from .embedders import Embedder, EmbeddingConfig, get_embedder
from .errors import DatabaseUnavailable
from .mrl import fit_rotation

log = logging.getLogger("pgmrl.worker")

CHANNEL = "mrl_queue"


def fit_set_rotation(conn: psycopg.Connection, set_id: int, sample: int = 50000) -> int:
    """Fits and stores the PCA rotation of a set; returns the number of vectors it was fitted on."""
    with conn.transaction():
        slug, tdim = conn.execute("SELECT slug, truncate_dim FROM mrl.embedding_sets WHERE id = %s FOR UPDATE",
                                  (set_id,)).fetchone()
        rows = conn.execute("SELECT e FROM mrl_internal._sample_embeddings(%s, %s) AS e", (set_id, sample)).fetchall()
        if len(rows) < tdim:
            log.info("set %s: %d vectors, need at least %d to fit a %d-d rotation", slug, len(rows), tdim, tdim)
            conn.execute("UPDATE mrl.embedding_sets SET rotation_requested_at = NULL WHERE id = %s", (set_id,))
            return 0
        x = np.vstack([to_numpy(r[0]) for r in rows])
        components, explained = fit_rotation(x, tdim)
        total = conn.execute("SELECT count(*) FROM mrl_internal._sample_embeddings(%s, NULL)", (set_id,)).fetchone()[0]
        conn.execute("SELECT mrl_internal._store_rotation(%s, %s, %s, %s)",
                     (set_id, VectorList(components), [float(v) for v in explained], total))
    log.info("set %s: fitted a %d-d rotation on %d vectors (%.1f%% of the variance)", slug, tdim, len(x),
             100 * float(explained.sum()))
    return len(x)


class Worker:
    def __init__(self, dsn: str, *, batch_size: int = 256, poll_interval: float = 5.0, max_attempts: int = 5,
                 stop_event: threading.Event | None = None, device: str | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 embedder_for: Callable[[EmbeddingConfig], Embedder] | None = None, metrics=None,
                 transaction_timeout: float = 300.0, lock_timeout: float = 30.0):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.dsn = dsn
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.stop = stop_event or threading.Event()
        self.on_progress = on_progress
        self._embedder_for = embedder_for or (lambda cfg: get_embedder(cfg, device=device))
        self._configs: dict[int, EmbeddingConfig] = {}
        self.conn: psycopg.Connection | None = None
        self.listen_conn: psycopg.Connection | None = None
        self.metrics = metrics  # pgmrl.http.Metrics, shared with the HTTP server
        self.transaction_timeout = transaction_timeout
        self.lock_timeout = lock_timeout
        self._fk_retries: dict[int, int] = {}  # consecutive foreign-key rollbacks per set
        self.processed = 0
        self.failed = 0

    # -- connections --------------------------------------------------------------------------------
    def _connect(self) -> None:
        self.close()
        self.conn = connect(self.dsn, application_name="pgmrl worker")
        # A batch holds its queue rows while it embeds; if this process hangs, the server ends the transaction
        # (and the rows are claimed again) instead of keeping them locked forever.
        self.conn.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                          (f"{int(self.transaction_timeout * 1000)}",))
        # A row lock held by some writer, or a statement that never ends, must not stall every set: the batch
        # fails with backoff (and is dead-lettered in the end) instead of waiting forever.
        self.conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                          (f"{int(self.lock_timeout * 1000)}", f"{int(self.transaction_timeout * 1000)}"))
        self.conn.commit()
        self.listen_conn = connect(self.dsn, autocommit=True, application_name="pgmrl worker (listen)")
        self.listen_conn.execute(f"LISTEN {CHANNEL}")

    def close(self) -> None:
        for c in (self.conn, self.listen_conn):
            if c is not None and not c.closed:
                c.close()
        self.conn = self.listen_conn = None

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT finish the current batch, then stop."""
        def handler(signum, frame):
            log.info("signal %d: finishing the current batch, then stopping", signum)
            self.stop.set()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- one batch ---------------------------------------------------------------------------------
    def _embedder(self, set_id: int) -> Embedder:
        if set_id not in self._configs:
            name = self.conn.execute("SELECT config FROM mrl.embedding_sets WHERE id = %s", (set_id,)).fetchone()[0]
            self._configs[set_id] = EmbeddingConfig.load(self.conn, name)
        return self._embedder_for(self._configs[set_id])

    def _claim_and_embed(self, set_id: int, only_qids: list[int] | None = None) -> tuple[int, list[int]]:
        """Runs one batch transaction. Returns (queue rows done, claimed qids); raises on embedding errors."""
        conn = self.conn
        with conn.transaction():
            if only_qids is None:
                rows = conn.execute(
                    "SELECT qid, id FROM mrl.queue WHERE set_id = %s AND NOT dead AND (next_attempt_at IS NULL OR next_attempt_at <= now()) "
                    "ORDER BY qid LIMIT %s FOR UPDATE SKIP LOCKED", (set_id, self.batch_size)).fetchall()
            else:
                rows = conn.execute("SELECT qid, id FROM mrl.queue WHERE qid = ANY(%s) AND NOT dead "
                                    "FOR UPDATE SKIP LOCKED", (only_qids,)).fetchall()
            if not rows:
                return 0, []
            qids = [r[0] for r in rows]
            ids = list(dict.fromkeys(r[1] for r in rows))
            try:
                return len(rows), self._embed_and_apply(set_id, qids, ids)
            except Exception as exc:  # the caller isolates and records the item(s) that failed
                exc.qids = qids  # type: ignore[attr-defined]
                raise

    def _embed_and_apply(self, set_id: int, qids: list[int], ids: list[str]) -> list[int]:
        """Inside the batch transaction: read the current texts, embed those not embedded yet, write."""
        conn = self.conn
        rows = conn.execute("SELECT id, body, content_hash, stored_hash FROM mrl_internal._fetch_texts(%s, %s)",
                            (set_id, ids)).fetchall()
        todo = [(i, body, h) for i, body, h, stored in rows if body and h != stored]
        texts = [t[1] for t in todo]
        embedder = self._embedder(set_id)
        vectors = embedder.encode(texts, kind="document") if todo else []
        truncated = embedder.truncated(texts) if todo else []
        if any(truncated):
            log.info("set %d: %d text(s) longer than the model's window were embedded from their beginning",
                     set_id, sum(truncated))
        conn.execute("SELECT mrl_internal._apply_batch(%s, %s, %s, %s, %s, %s)",
                     (set_id, qids, [t[0] for t in todo], [t[2] for t in todo], VectorList(vectors), truncated))
        return qids

    def _fail(self, qids: list[int], exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        with self.conn.transaction():
            self.conn.execute("SELECT mrl_internal._fail_items(%s, %s, %s)", (qids, error, self.max_attempts))
        self.failed += len(qids)
        if self.metrics:
            self.metrics.error(len(qids))
        log.warning("%d queue item(s) failed (%s); retried with backoff, dead-lettered after %d attempts",
                    len(qids), error[:300], self.max_attempts)

    def process_batch(self, set_id: int) -> int:
        """Embeds one batch of a set; a failing batch is retried item by item so one bad row can't block others."""
        started = time.perf_counter()
        try:
            done, _ = self._claim_and_embed(set_id)
            self._fk_retries.pop(set_id, None)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as exc:
            # a writer holds a row lock past lock_timeout, or a statement ran too long: back off, dead-letter in the end
            self._fail(getattr(exc, "qids", []), exc)
            return 0
        except (psycopg.errors.TransactionRollback, psycopg.errors.ForeignKeyViolation) as exc:
            # a deadlock, or a source row deleted while the batch was written: the retry sees the new state. A batch
            # that keeps failing this way (a key whose row the foreign key never finds) is isolated item by item.
            tries = self._fk_retries[set_id] = self._fk_retries.get(set_id, 0) + 1
            if tries < 3:
                log.info("batch rolled back (%s); retrying", exc.sqlstate)
                return 0
            self._fk_retries.pop(set_id, None)
            done = self._isolate(set_id, exc)
            self._count(done, started)
            return done
        except psycopg.OperationalError:
            raise
        except Exception as exc:  # the model or a row failed: isolate the culprits
            done = self._isolate(set_id, exc)
        self._count(done, started)
        return done

    def _isolate(self, set_id: int, exc: Exception) -> int:
        """Retries a failed batch item by item, recording the items that fail on their own. Returns rows done."""
        qids = getattr(exc, "qids", None)
        if not qids:
            raise exc
        if len(qids) == 1:
            self._fail(qids, exc)
            return 0
        done = 0
        for qid in qids:
            try:
                done += self._claim_and_embed(set_id, [qid])[0]
            except psycopg.OperationalError as item_exc:
                if not isinstance(item_exc, (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)):
                    raise
                self._fail([qid], item_exc)
            except Exception as item_exc:
                self._fail([qid], item_exc)
        return done

    def _count(self, done: int, started: float) -> None:
        self.processed += done
        if done and self.metrics:
            self.metrics.batch(done, time.perf_counter() - started)
        if done and self.on_progress:
            self.on_progress(done)

    # -- loop ------------------------------------------------------------------------------------------
    def pending_sets(self) -> list[int]:
        while self.conn.execute("SELECT mrl_internal._expand_intake()").fetchone()[0]:  # statements' key arrays -> rows
            self.conn.commit()
        self.conn.commit()
        rows = self.conn.execute("SELECT DISTINCT set_id FROM mrl.queue WHERE NOT dead AND (next_attempt_at IS NULL OR next_attempt_at <= now()) "
                                 "AND set_id IN (SELECT id FROM mrl.embedding_sets)").fetchall()
        self.conn.commit()
        return [r[0] for r in rows]

    def drain(self) -> int:
        """Processes ready work until none is left (or stop is set); then fits rotations that are due."""
        total = 0
        while not self.stop.is_set():
            sets = self.pending_sets()
            if not sets:
                break
            for set_id in sets:
                while not self.stop.is_set():
                    n = self.process_batch(set_id)
                    total += n
                    if n == 0:
                        break
        if not self.stop.is_set():
            due = [r[0] for r in self.conn.execute("SELECT mrl_internal._rotation_due()").fetchall()]
            self.conn.commit()
            for set_id in due:
                try:
                    fit_set_rotation(self.conn, set_id)
                except psycopg.OperationalError:
                    raise
                except Exception as exc:  # one set's maintenance must not stop the others
                    self.conn.rollback()
                    log.error("set %d: fitting the rotation failed: %s", set_id, exc)
            for slug in [r[0] for r in self.conn.execute("SELECT mrl_internal._switch_due()").fetchall()]:
                try:
                    with self.conn.transaction():
                        self.conn.execute("SELECT mrl.switch_embedding_set(%s)", (slug,))
                except psycopg.errors.InsufficientPrivilege:
                    log.warning("set %s is re-embedded but this worker may not switch it in: run "
                                "SELECT mrl.switch_embedding_set('%s') as the set's owner", slug, slug)
                    continue
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as exc:
                    log.error("set %s: switching in its replacement failed: %s", slug, exc)
                    continue
                self._configs.clear()
                log.info("set %s: switched to its re-embedded replacement", slug)
            self.conn.commit()
        return total

    def _wait(self) -> None:
        deadline = time.monotonic() + self.poll_interval
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for _ in self.listen_conn.notifies(timeout=min(left, 0.5), stop_after=1):
                return

    def run(self, once: bool = False) -> int:
        """Runs until stopped (or, with once, until the queue has no ready work). Survives connection loss."""
        try:
            return self._run(once)
        finally:
            self.close()

    def _run(self, once: bool) -> int:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                if self.conn is None or self.conn.closed or self.conn.broken:
                    self._connect()
                self.drain()
                backoff = 1.0
                if once:
                    break
                self._wait()
            except (psycopg.OperationalError, DatabaseUnavailable) as exc:
                log.warning("database unavailable (%s); reconnecting in %.0f s", str(exc).splitlines()[0], backoff)
                self.close()
                if once and backoff >= 8:
                    raise
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
            except psycopg.Error as exc:
                # Whatever the database holds (a queue row, a changed table) must not stop a long-running worker:
                # items are dead-lettered where they fail; anything else is logged and retried after a pause.
                log.error("worker error (%s: %s); retrying in %.0f s", type(exc).__name__,
                          str(exc).splitlines()[0] if str(exc) else "", backoff)
                if once:
                    raise
                self.close()
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
        return self.processed
