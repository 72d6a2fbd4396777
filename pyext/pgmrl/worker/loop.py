"""The worker's loop: connect, drain the ready work set by set (batch.py), maintain the sets (maintenance.py), then
wait for a notification or the poll interval. Stops when its stop Event is set (SIGTERM, SIGINT); survives
database restarts. Several workers can run at once; a crash rolls the batch back and the rows are claimed again.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable

import psycopg

from ..chunking import Chunking
from ..db import connect, scalar
from ..embedding import Embedder, EmbeddingConfig, get_embedder
from ..errors import DatabaseUnavailable, SchemaMismatch
from ..schema import citus_role, schema_problem
from .batch import Batches
from .citus import NodeIntakes
from .maintenance import fit_due_rotations, switch_due_sets
from .metrics import Metrics

log = logging.getLogger("pgmrl.worker")

CHANNEL = "mrl_queue"
SCHEMA_RECHECK = 30.0  # seconds between checks while the database needs `pgmrl install`


def _log_notice(diag: psycopg.errors.Diagnostic) -> None:
    """What the database says to the worker (RAISE NOTICE/WARNING in pgmrl's functions) goes to the log."""
    level = logging.WARNING if diag.severity_nonlocalized == "WARNING" else logging.INFO
    log.log(level, "database: %s%s", diag.message_primary,
            f" (hint: {diag.message_hint})" if diag.message_hint else "")


class Worker(Batches):
    def __init__(self, dsn: str, *, batch_size: int = 256, poll_interval: float = 5.0, max_attempts: int = 5,
                 stop_event: threading.Event | None = None, device: str | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 embedder_for: Callable[[EmbeddingConfig], Embedder] | None = None, metrics: Metrics | None = None,
                 transaction_timeout: float = 300.0, lock_timeout: float = 30.0, listen_dsn: str | None = None,
                 max_batch_tokens: int = 16384):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.dsn = dsn
        self.listen_dsn = listen_dsn  # a direct connection for LISTEN when `dsn` goes through a pooler
        self._listen_checked = False
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.stop = stop_event or threading.Event()
        self.on_progress = on_progress
        self._embedder_for = embedder_for or (lambda cfg: get_embedder(cfg, device=device))
        self._configs: dict[int, EmbeddingConfig] = {}
        self._chunkings: dict[int, Chunking | None] = {}
        self.max_batch_tokens = max_batch_tokens
        self.conn: psycopg.Connection | None = None
        self.listen_conn: psycopg.Connection | None = None
        self.metrics = metrics  # shared with the HTTP server's /metrics
        self.transaction_timeout = transaction_timeout
        self.lock_timeout = lock_timeout
        self._fk_retries: dict[int, int] = {}  # consecutive foreign-key rollbacks per set
        self.processed = 0
        self.failed = 0
        self._nodes: NodeIntakes | None = None  # on a Citus coordinator

    # -- connections --------------------------------------------------------------------------------
    def _connect(self) -> None:
        self.close()
        conn = self.conn = connect(self.dsn, application_name="pgmrl worker")
        conn.add_notice_handler(_log_notice)  # e.g. a switched-in set whose tuning was reset
        # A batch holds its queue rows while it embeds; if this process hangs, the server ends the transaction
        # (and the rows are claimed again) instead of keeping them locked forever.
        conn.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                          (f"{int(self.transaction_timeout * 1000)}",))
        # A row lock held by some writer, or a statement that never ends, must not stall every set: the batch
        # fails with backoff (and is dead-lettered in the end) instead of waiting forever.
        conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                          (f"{int(self.lock_timeout * 1000)}", f"{int(self.transaction_timeout * 1000)}"))
        conn.commit()
        problem = schema_problem(conn)  # never embed with SQL this code does not know (e.g. after a pgmrl upgrade)
        conn.commit()
        if problem:
            raise SchemaMismatch(problem)
        if citus_role(conn) == "coordinator":  # sets over distributed tables are queued on every node
            self._nodes = NodeIntakes(self.dsn)
        conn.commit()
        listen = self.listen_conn = connect(self.listen_dsn or self.dsn, autocommit=True,
                                            application_name="pgmrl worker (listen)")
        listen.execute(f"LISTEN {CHANNEL}")
        if not self._listen_checked:
            self._listen_checked = True
            self._check_notifications(conn, listen)

    def _check_notifications(self, conn: psycopg.Connection, listen: psycopg.Connection) -> None:
        """Sends itself a notification: when it does not arrive (a pooler in transaction mode hands LISTEN to a
        server connection that others then use), says so; the worker still finds work by polling."""
        ping = f"pgmrl-ping-{uuid.uuid4().hex}"
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, ping))
        conn.commit()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            for n in listen.notifies(timeout=max(0.05, deadline - time.monotonic()), stop_after=1):
                if n.payload == ping:
                    return
        log.warning("notifications do not reach this worker's LISTEN connection (is the DSN a pooler in transaction "
                    "mode?): new rows wait for the next poll (every %.0f s). Give a direct connection with "
                    "--listen-dsn / PGMRL_LISTEN_DSN", self.poll_interval)

    def close(self) -> None:
        if self._nodes is not None:
            self._nodes.close()
            self._nodes = None
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

    # -- loop ------------------------------------------------------------------------------------------
    def pending_sets(self) -> list[int]:
        conn = self._db()
        if self._nodes is not None:
            self._nodes.move(conn)
        while scalar(conn.execute("SELECT mrl_internal._expand_intake()")):  # statements' key arrays -> rows
            conn.commit()
        conn.commit()
        rows = conn.execute("SELECT DISTINCT set_id FROM mrl.queue WHERE NOT dead "
                            "AND (next_attempt_at IS NULL OR next_attempt_at <= now()) "
                                 "AND set_id IN (SELECT id FROM mrl.embedding_sets)").fetchall()
        conn.commit()
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
            conn = self._db()
            fit_due_rotations(conn)
            if switch_due_sets(conn):
                self._configs.clear()
                self._chunkings.clear()
        return total

    def _wait(self) -> None:
        deadline = time.monotonic() + self.poll_interval
        listen = self.listen_conn
        if listen is None:
            return
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for _ in listen.notifies(timeout=min(left, 0.5), stop_after=1):
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
            except SchemaMismatch as exc:
                self.close()
                if once:
                    raise
                log.error("%s; checking again in %.0f s", exc, SCHEMA_RECHECK)
                self.stop.wait(SCHEMA_RECHECK)
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
