"""One batch = one transaction: claim queue rows FOR UPDATE SKIP LOCKED, read the current texts, embed them in one
call, write vectors (only where the text still has the hash that was embedded) and delete the claimed rows. A batch
that fails is retried item by item, so one bad row is dead-lettered on its own and cannot block the others."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import psycopg

from .. import chunking
from ..db import VectorList
from ..embedding import Embedder, EmbeddingConfig
from ..errors import PgmrlError
from .metrics import Metrics

log = logging.getLogger("pgmrl.worker")


class Batches:
    """The batch logic of the Worker (a mixin: the Worker owns the connection and the counters)."""

    conn: psycopg.Connection | None
    batch_size: int
    max_attempts: int
    metrics: Metrics | None
    on_progress: Callable[[int], None] | None
    processed: int
    failed: int
    _configs: dict[int, EmbeddingConfig]
    _chunkings: dict[int, chunking.Chunking | None]
    max_batch_tokens: int
    _embedder_for: Callable[[EmbeddingConfig], Embedder]
    _fk_retries: dict[int, int]

    def _db(self) -> psycopg.Connection:
        if self.conn is None:
            raise psycopg.OperationalError("the worker is not connected")
        return self.conn

    def _embedder(self, set_id: int) -> Embedder:
        if set_id not in self._configs:
            row = self._db().execute("SELECT config, chunking FROM mrl.embedding_sets WHERE id = %s",
                                     (set_id,)).fetchone()
            if row is None:  # dropped since its queue rows were read; the batch fails like any other
                raise PgmrlError(f"embedding set {set_id} no longer exists")
            self._configs[set_id] = EmbeddingConfig.load(self._db(), row[0])
            self._chunkings[set_id] = chunking.Chunking.from_json(row[1])
        return self._embedder_for(self._configs[set_id])

    def _claim_and_embed(self, set_id: int, only_qids: list[int] | None = None) -> tuple[int, list[int]]:
        """Runs one batch transaction. Returns (queue rows done, claimed qids); raises on embedding errors."""
        conn = self._db()
        with conn.transaction():
            if only_qids is None:
                rows = conn.execute(
                    "SELECT qid, id FROM mrl.queue WHERE set_id = %s AND NOT dead "
                    "AND (next_attempt_at IS NULL OR next_attempt_at <= now()) "
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
        conn = self._db()
        rows = conn.execute("SELECT id, body, content_hash, stored_hash FROM mrl_internal._fetch_texts(%s, %s)",
                            (set_id, ids)).fetchall()
        todo = [(i, body, h) for i, body, h, stored in rows if body and h != stored]
        texts = [t[1] for t in todo]
        embedder = self._embedder(set_id)
        cut = self._chunkings.get(set_id)
        if cut is not None:
            return self._embed_chunks(set_id, qids, todo, embedder, cut)
        vectors: np.ndarray | list[np.ndarray] = embedder.encode(texts, kind="document") if todo else []
        truncated = embedder.truncated(texts) if todo else []
        if any(truncated):
            log.info("set %d: %d text(s) longer than the model's window were embedded from their beginning",
                     set_id, sum(truncated))
        conn.execute("SELECT mrl_internal._apply_batch(%s, %s, %s, %s, %s, %s)",
                     (set_id, qids, [t[0] for t in todo], [t[2] for t in todo], VectorList(vectors), truncated))
        return qids

    def _embed_chunks(self, set_id: int, qids: list[int], todo: list[tuple[str, str, str]], embedder: Embedder,
                      cut: chunking.Chunking) -> list[int]:
        """A chunked set: each text cut in the model's tokens, every chunk embedded (in model calls of at most
        max_batch_tokens tokens), all chunks of a row written together."""
        budget = embedder.token_budget("document")
        ids: list[str] = []
        hashes: list[str] = []
        chunks: list[chunking.Chunk] = []
        sizes: list[int] = []
        for key, body, h in todo:
            spans = embedder.token_spans(body)
            parts = chunking.split(body, cut, spans, budget)
            parts = chunking.fit(body, parts, spans, embedder.count_tokens, budget)
            counts = embedder.count_tokens([p.text for p in parts])
            ids += [key] * len(parts)
            hashes += [h] * len(parts)
            chunks += parts
            sizes += counts
        vectors: list[np.ndarray] = []
        group: list[str] = []
        used = 0
        for part, n in zip(chunks, sizes):
            if group and used + n > self.max_batch_tokens:
                vectors.extend(embedder.encode(group, kind="document"))
                group, used = [], 0
            group.append(part.text)
            used += n
        if group:
            vectors.extend(embedder.encode(group, kind="document"))
        self._db().execute(
            "SELECT mrl_internal._apply_batch(%s, %s, %s, %s, %s, NULL, %s, %s, %s)",
            (set_id, qids, ids, hashes, VectorList(vectors), [c.number for c in chunks], [c.start for c in chunks],
             [c.end for c in chunks]))
        return qids

    def _fail(self, qids: list[int], exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        with self._db().transaction():
            self._db().execute("SELECT mrl_internal._fail_items(%s, %s, %s)", (qids, error, self.max_attempts))
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
