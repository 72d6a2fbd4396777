"""Retrieval quality: Recall@k, MRR@10, nDCG@10 and agreement with exact search, per search strategy.

A query file is JSON Lines, one query per line:
    {"query": "tool to compress files", "relevant": ["gzip", "xz-utils"]}
    {"vector": [0.01, ...], "relevant": ["42"]}          (a precomputed query vector instead of text)
Ids are compared as text (the primary key of the set's source table).

Besides the dense strategies, "text" (the set's full-text words alone, mrl.text_search) and "hybrid" (both fused,
mrl.hybrid_search) rank queries that have text: hybrid search has no self-check like mrl.measure_recall, so it is
measured on the user's own queries and relevance judgements.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PgmrlError


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def mrr_at(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    for rank, id_ in enumerate(ranked[:k], 1):
        if id_ in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(rank + 1) for rank, id_ in enumerate(ranked[:k], 1) if id_ in relevant)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def agreement_at(ranked: Sequence[str], exact: Sequence[str], k: int = 10) -> float:
    truth = list(exact[:k])
    return len(set(ranked[:k]) & set(truth)) / len(truth) if truth else 1.0


@dataclass
class QuerySet:
    texts: list[str | None]
    vectors: list[np.ndarray | None]
    relevant: list[set[str]]

    def __len__(self) -> int:
        return len(self.relevant)


def read_queries(path: str | Path, vectors: np.ndarray | None = None) -> QuerySet:
    """Reads a JSONL query file; `vectors` (one row per line) supplies precomputed query vectors."""
    texts, vecs, relevant = [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PgmrlError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise PgmrlError(f"{path}:{n}: each line must be a JSON object")
            rel = obj.get("relevant")
            if isinstance(rel, (str, int)):
                rel = [rel]
            if not isinstance(rel, list) or not rel:
                raise PgmrlError(f'{path}:{n}: "relevant" must be a non-empty list of ids')
            vec = obj.get("vector")
            text = obj.get("query")
            if vec is None and not (isinstance(text, str) and text.strip()) and vectors is None:
                raise PgmrlError(f'{path}:{n}: give "query" (text) or "vector"')
            texts.append(text)
            vecs.append(None if vec is None else np.asarray(vec, dtype=np.float32))
            relevant.append({str(r) for r in rel})
    if not relevant:
        raise PgmrlError(f"{path}: no queries")
    if vectors is not None:
        if len(vectors) < len(relevant):
            raise PgmrlError(f"{len(relevant)} queries but only {len(vectors)} query vectors")
        vecs = [np.asarray(v, dtype=np.float32) for v in vectors[:len(relevant)]]
    return QuerySet(texts, vecs, relevant)


# Rankings that use the query's words (not comparable with exact dense search, so no agreement@10)
LEXICAL = ("text", "hybrid")


@dataclass
class StrategyResult:
    strategy: str
    metrics: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict:
        return {"strategy": self.strategy, **self.metrics}


def score(runs: dict[str, list[list[str]]], relevant: list[set[str]], latencies: dict[str, list[float]] | None = None
          ) -> list[StrategyResult]:
    """Metrics per strategy from ranked id lists (one per query); 'exact' (when present) is the agreement reference."""
    out = []
    exact = runs.get("exact")
    for name, ranked in runs.items():
        m = {
            "recall@1": float(np.mean([recall_at(r, rel, 1) for r, rel in zip(ranked, relevant)])),
            "recall@10": float(np.mean([recall_at(r, rel, 10) for r, rel in zip(ranked, relevant)])),
            "recall@100": float(np.mean([recall_at(r, rel, 100) for r, rel in zip(ranked, relevant)])),
            "mrr@10": float(np.mean([mrr_at(r, rel) for r, rel in zip(ranked, relevant)])),
            "ndcg@10": float(np.mean([ndcg_at(r, rel) for r, rel in zip(ranked, relevant)])),
        }
        if exact is not None and name not in LEXICAL:
            m["agreement@10"] = float(np.mean([agreement_at(r, e) for r, e in zip(ranked, exact)]))
        if latencies and latencies.get(name):
            m["p50_ms"] = float(np.percentile(latencies[name], 50))
            m["p95_ms"] = float(np.percentile(latencies[name], 95))
        out.append(StrategyResult(name, m))
    return out


def run_strategies(search: Callable[[Any, str], list[str]], queries: Iterable[Any],
                   strategies: Sequence[str], progress=None) -> tuple[dict[str, list[list[str]]], dict[str, list[float]]]:
    """Runs every query through `search(vector, strategy)` for each strategy; ids and latencies (ms)."""
    runs: dict[str, list[list[str]]] = {s: [] for s in strategies}
    lat: dict[str, list[float]] = {s: [] for s in strategies}
    for q in queries:
        for s in strategies:
            t = time.perf_counter()
            runs[s].append(search(q, s))
            lat[s].append((time.perf_counter() - t) * 1000)
        if progress is not None:
            progress.update(1)
    return runs, lat


def format_table(results: list[StrategyResult]) -> str:
    keys = list(dict.fromkeys(k for r in results for k in r.metrics))  # (text and hybrid have no agreement@10)
    cols = ["strategy"] + keys
    rows = [[r.strategy] + ["-" if k not in r.metrics else f"{r.metrics[k]:.2f}" if k.endswith("_ms")
                            else f"{r.metrics[k]:.4f}" for k in keys] for r in results]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    return "\n".join([line, "  ".join("-" * w for w in widths)] +
                     ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows])
