"""The Python API that the CLI is built on.

    from pgmrl import Client
    c = Client("postgresql://...")
    c.install()
    c.create_set("Docs", "docs", "public.docs", "title || ' ' || body", truncate_dim=128)
    c.run_worker(once=True)
    c.search("docs", "machine learning", k=10)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from . import schema, textexpr
from .db import VectorList, connect, one, scalar
from .embedding import EmbeddingConfig, get_embedder
from .errors import PgmrlError
from .schema import citus_role
from .worker.citus import NodeIntakes


class Client:
    def __init__(self, dsn: str, *, device: str | None = None, role: str | None = None):
        self.dsn = dsn
        self.device = device
        self.role = role  # SET ROLE on every connection (the HTTP API acts as its token's role)
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn, autocommit=True, role=self.role)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- schema -------------------------------------------------------------------------------------
    def install(self) -> list[str]:
        applied = schema.install(self.conn, self.dsn)
        self.close()  # reconnect so the vector types are registered on the new extension
        return applied

    # -- sets ---------------------------------------------------------------------------------------
    def create_set(self, name: str, slug: str, table: str, text_column: str, *, config: str = "all-minilm-l6-v2",
                   truncate_dim: int | None = None, on_create: bool = True, on_update: bool = True,
                   coarse_method: str | None = None, mode: str = "async", chunking: dict | str | None = None,
                   text_search_config: str = "english", full_type: str = "halfvec") -> str:
        """Creates an embedding set over `table` (a name such as 'public.docs'); returns its vectors table.
        chunking: None (one vector per row), 'tokens', 'paragraphs', 'sections' or {"method": ..., "size": ..., "overlap": ...}
        (tokens of the model); text_search_config: the language of its full-text words (hybrid search);
        full_type: how the full vectors are stored, 'halfvec' (2 bytes a dimension) or 'vector' (4 bytes)."""
        row = one(self.conn.execute("SELECT to_regclass(%s)::oid", (table,)))
        if row[0] is None:
            raise PgmrlError(f"table {table!r} does not exist (schema-qualify it if it is not on the search_path)")
        columns = [r[0] for r in self.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (row[0],))]
        textexpr.validate(text_column, columns)
        return scalar(self.conn.execute(
            "SELECT mrl.create_embedding_set(%s, %s, %s::oid::regclass, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)::text",
            (name, slug, row[0], text_column, config, truncate_dim, on_create, on_update, coarse_method,
             mode, None if chunking is None else Jsonb(chunking), text_search_config, full_type)))

    def set_exists(self, slug: str) -> bool:
        return self.conn.execute("SELECT 1 FROM mrl.embedding_sets WHERE slug = %s", (slug,)).fetchone() is not None

    def drop_set(self, slug: str) -> None:
        self.conn.execute("SELECT mrl.drop_embedding_set(%s)", (slug,))

    def status(self, slug: str | None = None) -> list[dict]:
        slugs = [slug] if slug else [r[0] for r in self.conn.execute("SELECT slug FROM mrl.embedding_sets ORDER BY slug")]
        out = []
        for s in slugs:
            # one row: its _set() raises for a set the role may not see (the same row-level rule as mrl.queue_status)
            cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
            out.append(one(cur.execute("SELECT * FROM mrl.set_status(%s)", (s,))))
        return out

    def failed_items(self, slug: str | None = None) -> list[dict]:
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute("SELECT slug, id, attempts, last_error, queued_at, failed_at FROM mrl.failed_items "
                           "WHERE %(slug)s::text IS NULL OR slug = %(slug)s ORDER BY qid", {"slug": slug}).fetchall()

    def retry_failed(self, slug: str) -> int:
        return scalar(self.conn.execute("SELECT mrl.retry_failed(%s)", (slug,)))

    def refit(self, slug: str) -> int:
        """Fits the set's rotation now (instead of waiting for the sidecar); returns the vectors used."""
        from .worker import fit_set_rotation

        set_id, method = one(self.conn.execute(
            "SELECT (s).id, (s).coarse_method FROM (SELECT mrl_internal._set(%s) AS s) x", (slug,)))
        if method != "rotation":
            self.conn.execute("SELECT mrl.refit_rotation(%s)", (slug,))  # raises the explanatory error
        with connect(self.dsn, role=self.role) as conn:
            return fit_set_rotation(conn, set_id)

    def compact(self, slug: str, full_type: str | None = None) -> tuple[int, int, str]:
        """Rewrites the set's vectors table without dead rows, converting its full vectors to `full_type` when
        given (the table's owner only); returns (bytes before, bytes after, the type now stored)."""
        before, after, stored = one(self.conn.execute("SELECT * FROM mrl.compact_embedding_set(%s, %s)",
                                                      (slug, full_type)))
        return before, after, stored

    # -- embedding and search ---------------------------------------------------------------------------
    def config(self, name: str) -> EmbeddingConfig:
        return EmbeddingConfig.load(self.conn, name)

    def set_config(self, slug: str) -> EmbeddingConfig:
        name = scalar(self.conn.execute("SELECT (mrl_internal._set(%s)).config", (slug,)))
        return self.config(name)

    def embed(self, texts: Sequence[str], config: str = "all-minilm-l6-v2", kind: str = "query") -> np.ndarray:
        return get_embedder(self.config(config), device=self.device).encode(list(texts), kind=kind)

    def search(self, slug: str, query, k: int = 10, strategy: str | None = None, coarse_k: int | None = None,
               coarse_dim: int | None = None, filter: dict | None = None, *, mode: str = "dense",
               dense_weight: float = 1.0, text_weight: float = 1.0, rrf_k: int = 60) -> list[tuple[str, float]]:
        """Searches a set with a query text (embedded with the set's model) or a query vector. strategy None is the
        set's default (two_stage unless changed); filter is {column: value or [values]} on the source table.
        mode: 'dense' (rows and cosine distances), 'text' (the full-text leg alone: rows and scores, a text query
        only) or 'hybrid' (both fused by reciprocal rank fusion: rows and fused scores, a text query; see
        hybrid_search for the ranks)."""
        if mode == "hybrid":
            return [(r["id"], r["score"]) for r in self.hybrid_search(
                slug, query, k, dense_weight=dense_weight, text_weight=text_weight, rrf_k=rrf_k, filter=filter,
                strategy=strategy)]
        if mode == "text":
            if not isinstance(query, str):
                raise PgmrlError("a full-text search needs words, not a vector")
            return self.conn.execute("SELECT id, score FROM mrl.text_search(%s, %s, %s, %s)",
                                     (slug, query, k, None if filter is None else Jsonb(filter))).fetchall()
        if mode != "dense":
            raise PgmrlError(f"mode must be 'dense', 'text' or 'hybrid', got {mode!r}")
        if isinstance(query, str):
            query = get_embedder(self.set_config(slug), device=self.device).encode([query], kind="query")[0]
        q = np.asarray(query, dtype=np.float32)
        return self.conn.execute("SELECT id, distance FROM mrl.search(%s, %s, %s, %s, %s, %s, %s)",
                                 (slug, q, k, strategy, coarse_k, coarse_dim,
                                  None if filter is None else Jsonb(filter))).fetchall()

    def hybrid_search(self, slug: str, query: str, k: int = 10, *, vector=None, dense_weight: float = 1.0,
                      text_weight: float = 1.0, rrf_k: int = 60, candidates: int | None = None,
                      filter: dict | None = None, strategy: str | None = None) -> list[dict]:
        """mrl.hybrid_search: rows with their fused score, dense and full-text ranks (None where a leg did not
        find the row) and distance. The query is embedded here (vector: its embedding, if you have it)."""
        if not isinstance(query, str):
            raise PgmrlError("a hybrid search needs the query's words (and, optionally, its vector)")
        if vector is None and dense_weight > 0:
            vector = get_embedder(self.set_config(slug), device=self.device).encode([query], kind="query")[0]
        v = None if vector is None else np.asarray(vector, dtype=np.float32)
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute(
            "SELECT id, score, dense_rank, text_rank, distance FROM mrl.hybrid_search(%s, %s, %s::vector, %s, %s, %s, "
            "%s, %s, %s, %s)", (slug, query, v, k, dense_weight, text_weight, rrf_k, candidates,
                                None if filter is None else Jsonb(filter), strategy)).fetchall()

    def search_chunks(self, slug: str, query, k: int = 10, strategy: str | None = None,
                      filter: dict | None = None) -> list[dict]:
        """mrl.search_chunks: each row once with its best chunk (number, character offsets [start, end))."""
        if isinstance(query, str):
            query = get_embedder(self.set_config(slug), device=self.device).encode([query], kind="query")[0]
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute("SELECT id, chunk, start_char, end_char, distance FROM mrl.search_chunks(%s, %s, %s, %s, "
                           "NULL, NULL, %s)", (slug, np.asarray(query, dtype=np.float32), k, strategy,
                                               None if filter is None else Jsonb(filter))).fetchall()

    # -- bring your own vectors -------------------------------------------------------------------------
    def load_vectors(self, slug: str, ids: Sequence, vectors: np.ndarray, batch_size: int = 1000,
                     progress=None) -> int:
        """Stores precomputed full vectors for rows of the set's source (they must come from the set's model,
        applied to the current text with the document prefix). Rows whose text is empty or gone are skipped;
        their queue items are cleared like the worker's. Returns the vectors written."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(ids) != len(vectors):
            raise PgmrlError(f"{len(ids)} ids but {len(vectors)} vectors")
        written = 0
        with connect(self.dsn, role=self.role) as conn:
            set_id, dims = one(conn.execute("SELECT (s).id, (s).dims FROM (SELECT mrl_internal._set(%s) AS s) x",
                                            (slug,)))
            if citus_role(conn) == "coordinator":  # keys queued on the nodes of a Citus cluster
                nodes = NodeIntakes(self.dsn)
                try:
                    nodes.move(conn)
                finally:
                    nodes.close()
            while scalar(conn.execute("SELECT mrl_internal._expand_intake()")):  # written keys -> queue rows
                conn.commit()
            conn.commit()
            if vectors.ndim != 2 or vectors.shape[1] != dims:
                raise PgmrlError(f"vectors have shape {vectors.shape}; set {slug!r} needs (n, {dims})")
            for start in range(0, len(ids), batch_size):
                chunk = [str(i) for i in ids[start:start + batch_size]]
                vecs = vectors[start:start + batch_size]
                with conn.transaction():
                    hashes: dict[str, str] = dict(conn.execute(
                        "SELECT id, content_hash FROM mrl_internal._fetch_texts(%s, %s) WHERE body <> ''",
                        (set_id, chunk)).fetchall())
                    keep = [j for j, i in enumerate(chunk) if i in hashes]
                    qids = [r[0] for r in conn.execute(
                        "SELECT qid FROM mrl.queue WHERE set_id = %s AND id = ANY(%s) FOR UPDATE", (set_id, chunk))]
                    written += scalar(conn.execute("SELECT mrl_internal._apply_batch(%s, %s, %s, %s, %s)",
                                                   (set_id, qids, [chunk[j] for j in keep],
                                                    [hashes[chunk[j]] for j in keep], VectorList(vecs[keep]))))
                if progress is not None:
                    progress.update(len(chunk))
        return written

    # -- measurement --------------------------------------------------------------------------------------
    def strategies(self, slug: str) -> list[str]:
        """The strategies this set can serve now: exact always, the others when their vectors/indexes exist."""
        method, version = one(self.conn.execute("SELECT (s).coarse_method, (s).rotation_version "
                                                "FROM (SELECT mrl_internal._set(%s) AS s) x", (slug,)))
        kinds = {r[0] for r in self.conn.execute("SELECT kind FROM mrl.search_indexes(%s)", (slug,))}
        out = ["exact"]
        if method == "prefix" or (method == "rotation" and version > 0):
            out.append("two_stage")
        out += [name for kind, name in (("binary", "binary_two_stage"), ("full", "hnsw")) if kind in kinds]
        return out

    def evaluate(self, slug: str, queries, strategies: Sequence[str] | None = None, progress=None,
                 lexical: bool = False):
        """Recall@1/10/100, MRR@10, nDCG@10, agreement@10 with exact and latency per strategy, for an
        evaluate.QuerySet (texts are embedded with the set's model). lexical: also the full-text words alone
        ('text') and hybrid search ('hybrid', with the set's default dense strategy), when every query has text."""
        from . import evaluate

        strategies = list(strategies or self.strategies(slug))
        if "exact" not in strategies:
            strategies.insert(0, "exact")
        missing = [i for i, v in enumerate(queries.vectors) if v is None]
        vectors = list(queries.vectors)
        if missing:
            emb = get_embedder(self.set_config(slug), device=self.device)
            for i, v in zip(missing, emb.encode([queries.texts[i] for i in missing], kind="query")):
                vectors[i] = v
        if lexical and all(isinstance(t, str) and t.strip() for t in queries.texts):
            strategies += [s for s in evaluate.LEXICAL if s not in strategies]

        def search(q, strategy):
            vector, text = q
            if strategy == "text":
                return [r[0] for r in self.search(slug, text, 100, mode="text")]
            if strategy == "hybrid":
                return [r["id"] for r in self.hybrid_search(slug, text, 100, vector=vector)]
            return [r[0] for r in self.search(slug, vector, 100, strategy)]

        runs, lat = evaluate.run_strategies(search, list(zip(vectors, queries.texts)), strategies, progress)
        return evaluate.score(runs, queries.relevant, lat)

    def run_worker(self, once: bool = True, **kwargs) -> int:
        from .worker import Worker

        return Worker(self.dsn, device=self.device, **kwargs).run(once=once)
