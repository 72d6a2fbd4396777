"""Hard negatives for fine-tuning, mined from the set's own vectors.

For each training query, the set's search (its coarse index, then the exact re-rank) returns the documents its model
ranks highest; the first ones that are not the query's own document become its hard negatives. Two guards keep false
negatives out (a document that answers the query as well as its own does): a candidate is skipped when its stored
vector is a near-duplicate of the positive's (cosine >= `duplicate_cosine`, or the same text), or when it is nearly as
close to the query as the positive is (similarity > `margin` x the positive's: "positive-aware" mining).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..db import VectorList, to_numpy

CHUNK = 256  # queries per statement


@dataclass(frozen=True)
class MiningStats:
    queries: int
    with_negatives: int
    skipped_positive: int
    skipped_duplicate: int
    skipped_margin: int

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def candidates(conn, slug: str, query_vecs: np.ndarray, k: int) -> list[list[str]]:
    """The set's top-k document ids for each query vector (its default search strategy)."""
    out: list[list[str]] = [[] for _ in range(len(query_vecs))]
    for start in range(0, len(query_vecs), CHUNK):
        chunk = VectorList(query_vecs[start:start + CHUNK].astype(np.float32))
        rows = conn.execute(
            "SELECT q.n, r.id FROM unnest(%s) WITH ORDINALITY AS q(v, n) "
            "CROSS JOIN LATERAL mrl.search(%s::text, q.v, %s::int) WITH ORDINALITY AS r(id, distance, rank) "
            "ORDER BY q.n, r.rank",
            (chunk, slug, k)).fetchall()
        for n, doc_id in rows:
            out[start + int(n) - 1].append(doc_id)
    return out


def stored_vectors(conn, slug: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The set's stored full vectors of these rows, normalised."""
    ids = sorted(set(ids))
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(ids), 5000):
        for doc_id, emb in conn.execute("SELECT id, embedding FROM mrl.set_embeddings(%s, %s)",
                                        (slug, ids[start:start + 5000])):
            v = to_numpy(emb)
            out[doc_id] = v / max(float(np.linalg.norm(v)), 1e-12)
    return out


def select_negatives(query_vecs: np.ndarray, positives: Sequence[str], ranked: Sequence[Sequence[str]],
                     vectors: dict[str, np.ndarray], texts: dict[str, str], per_query: int = 1,
                     margin: float = 0.95, duplicate_cosine: float = 0.98) -> tuple[list[list[str]], MiningStats]:
    """The hard negatives of each query from its ranked candidates, with the false-negative guards (module doc)."""
    q = query_vecs / np.maximum(np.linalg.norm(query_vecs, axis=1, keepdims=True), 1e-12)
    result: list[list[str]] = []
    skipped = {"positive": 0, "duplicate": 0, "margin": 0}
    for qi, pos, cands in zip(q, positives, ranked):
        pos_vec = vectors.get(pos)
        chosen: list[str] = []
        for cand in cands:
            if len(chosen) >= per_query:
                break
            if cand == pos:
                skipped["positive"] += 1
                continue
            cand_vec = vectors.get(cand)
            if cand_vec is None or pos_vec is None:
                continue  # deleted, or not embedded yet, since the search
            if texts.get(cand) == texts.get(pos) or float(cand_vec @ pos_vec) >= duplicate_cosine:
                skipped["duplicate"] += 1
                continue
            if float(qi @ cand_vec) > margin * float(qi @ pos_vec):
                skipped["margin"] += 1
                continue
            chosen.append(cand)
        result.append(chosen)
    stats = MiningStats(len(result), sum(1 for r in result if r), skipped["positive"], skipped["duplicate"],
                        skipped["margin"])
    return result, stats


def mine(conn, slug: str, query_vecs: np.ndarray, positives: Sequence[str], texts: dict[str, str],
         per_query: int = 1, k: int = 20, margin: float = 0.95,
         duplicate_cosine: float = 0.98) -> tuple[list[list[str]], MiningStats]:
    """Hard negatives for each (query vector, positive document id) from the set's own search and vectors."""
    ranked = candidates(conn, slug, query_vecs, k)
    vectors = stored_vectors(conn, slug, [*positives, *(d for r in ranked for d in r)])
    return select_negatives(query_vecs, positives, ranked, vectors, texts, per_query, margin, duplicate_cosine)
