"""Citus: a set over a distributed table is queued on the workers' nodes, not on the coordinator.

Triggers on a distributed table fire on its shards, in each worker's part of the (possibly two-phase) transaction,
where the coordinator's queue cannot be written and NOTIFY is refused. So each shard's statement trigger writes the
keys it changed into `mrl_node.intake` on its own node (sql/node), atomically with the rows. The sidecar, connected
to the coordinator, moves them from every node into the coordinator's `mrl.queue_intake`, and from there the usual
batches run (claimed FOR UPDATE SKIP LOCKED, vectors written through the coordinator into the co-located shards).

A move is: on the node, DELETE a slice of intake rows (SKIP LOCKED, so that several sidecars take different ones);
INSERT them on the coordinator and commit there; then commit on the node. A crash between the two commits leaves the
keys on both sides: they are embedded once anyway (the second batch finds the text's hash already stored) and
nothing is lost. The node list is read from the coordinator at every move, so added nodes are followed; a node that
cannot be reached is skipped (its keys wait on it) and tried again at the next poll."""

from __future__ import annotations

import logging

import psycopg

from ..db import connect
from ..schema import citus_workers, node_dsn

log = logging.getLogger("pgmrl.worker")

MOVE_BATCH = 500  # intake rows (statements) per move
# An intake row is moved only into a set over the table its shard belongs to: a set administrator who attaches the
# trigger function to a shard of their own table, naming another owner's set, queues nothing for that set.
# Rows with a NULL key are dropped (a shard trigger queues only its table's NOT NULL distribution column).
_SAME_SOURCE = ("EXISTS (SELECT FROM mrl.embedding_sets e WHERE e.id = m.set_id "
                "AND e.source = pg_catalog.to_regclass(m.source)) AND pg_catalog.array_position(m.ids, NULL) IS NULL")
_INSERT_ONE = ("INSERT INTO mrl.queue_intake (set_id, ids, queued_at) SELECT m.set_id, m.ids, m.queued_at FROM "
               "(SELECT %s::int AS set_id, %s::text[] AS ids, %s::timestamptz AS queued_at, %s::text AS source) m "
               f"WHERE {_SAME_SOURCE}")


class NodeIntakes:
    """The mrl_node.intake of every node of the coordinator's cluster, moved into the coordinator's queue."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self._conns: dict[tuple[str, int], psycopg.Connection] = {}
        self._down: set[tuple[str, int]] = set()

    def close(self) -> None:
        for c in self._conns.values():
            if not c.closed:
                c.close()
        self._conns.clear()

    def _node(self, host: str, port: int) -> psycopg.Connection:
        conn = self._conns.get((host, port))
        if conn is None or conn.closed or conn.broken:
            conn = connect(node_dsn(self.dsn, host, port), application_name="pgmrl worker (node intake)")
            self._conns[(host, port)] = conn
        return conn

    def move(self, coord: psycopg.Connection) -> int:
        """Moves every node's intake rows into the coordinator's queue_intake; returns the rows moved."""
        moved = 0
        if coord.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            coord.commit()  # (a transaction block below must be a transaction, not a savepoint)
        with coord.transaction():  # the coordinator's own shards, if it has any: one local transaction
            cur = coord.execute(
                "WITH m AS (DELETE FROM mrl_node.intake WHERE bid IN (SELECT bid FROM mrl_node.intake ORDER BY bid "
                "FOR UPDATE SKIP LOCKED) RETURNING set_id, ids, queued_at, source) "
                "INSERT INTO mrl.queue_intake (set_id, ids, queued_at) SELECT m.set_id, m.ids, m.queued_at FROM m "
                f"WHERE {_SAME_SOURCE}")
            moved += cur.rowcount
            workers = citus_workers(coord)
        for host, port in workers:
            try:
                moved += self._move_from(coord, host, port)
            except psycopg.OperationalError as exc:
                conn = self._conns.pop((host, port), None)
                if conn is not None:
                    conn.close()
                if (host, port) not in self._down:
                    log.warning("Citus node %s:%d cannot be reached (%s): its queued keys wait there until it can",
                                host, port, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
                    self._down.add((host, port))
                continue
            if (host, port) in self._down:
                log.info("Citus node %s:%d reachable again", host, port)
                self._down.discard((host, port))
        return moved

    def _move_from(self, coord: psycopg.Connection, host: str, port: int) -> int:
        node = self._node(host, port)
        total = 0
        while True:
            with node.transaction():
                rows = node.execute(
                    "DELETE FROM mrl_node.intake WHERE bid IN (SELECT bid FROM mrl_node.intake ORDER BY bid LIMIT %s "
                    "FOR UPDATE SKIP LOCKED) RETURNING set_id, ids, queued_at, source", (MOVE_BATCH,)).fetchall()
                if rows:
                    with coord.transaction():
                        for row in rows:  # one row that cannot be queued is skipped, never blocks the others
                            try:
                                with coord.transaction():  # (a savepoint)
                                    coord.execute(_INSERT_ONE, row)
                            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                                log.warning("Citus node %s:%d: keys of set %s dropped (%s)", host, port, row[0],
                                            str(exc).strip().splitlines()[0] if str(exc).strip() else "")
                # the node commits after the coordinator: a crash in between repeats keys, never loses them
            total += len(rows)
            if len(rows) < MOVE_BATCH:
                return total
