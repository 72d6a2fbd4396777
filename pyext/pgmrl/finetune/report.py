"""The held-out comparison after training: does the fine-tuned model beat the base model with its rotation?

Queries: the dataset's validation pairs (documents never trained on). Documents: the validation documents plus other
documents of the set up to `max_docs` (a seeded sample), so that each query competes with a realistic corpus. For each
dimension, Recall@10 of exact cosine search for: the base model's raw prefix, the base model with a PCA rotation fitted
on those documents (what a set with `coarse_method = rotation` searches), and the fine-tuned model's Matryoshka
prefix. The verdict is taken at the set's coarse dimension (`truncate_dim`): fine-tuning wins when it beats the rotation
there by at least WIN_MARGIN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import matryoshka as mrl
from ..db import connect, one
from ..embedding import EmbeddingConfig, get_embedder
from . import pairs as finetune
from .dataset import documents, load_dataset
from .negatives import stored_vectors

WIN_MARGIN = 0.01  # Recall@10; about the standard error of a difference on 1,000 held-out queries


def corpus_ids(all_ids: Sequence[str], required: Sequence[str], max_docs: int, seed: int = 0) -> list[str]:
    """The required ids plus a seeded sample of the others, max_docs in all (never fewer than the required), in id
    order."""
    need = set(required)
    others = [d for d in all_ids if d not in need]
    rng = np.random.default_rng(seed)
    room = max(0, max_docs - len(need))
    sample = [others[i] for i in sorted(rng.permutation(len(others))[:room])]
    return sorted(need | set(sample))


def base_document_vectors(conn, slug: str, set_config: str, base: EmbeddingConfig, ids: Sequence[str],
                          texts: dict[str, str]) -> np.ndarray:
    """The base model's document vectors: the set's stored ones when the set uses the base model, is not chunked (a
    chunk's vector is not the document's) and all are there; else encoded now."""
    chunked = conn.execute("SELECT (mrl_internal._set(%s)).chunking IS NOT NULL", (slug,)).fetchone()[0]
    if set_config == base.name and not chunked:
        stored = stored_vectors(conn, slug, ids)
        if len(stored) == len(ids):
            return np.vstack([stored[d] for d in ids])
    return mrl.normalize(get_embedder(base).encode([texts[d] for d in ids], "document"))


def recall_table(base_q: np.ndarray, base_d: np.ndarray, tuned_q: np.ndarray, tuned_d: np.ndarray,
                 relevant: Sequence[int], dims: Sequence[int]) -> dict[int, dict[str, float]]:
    """Recall@10 per dimension: base raw prefix, base + PCA rotation (fitted on the documents), fine-tuned prefix."""
    full = base_d.shape[1]
    table = {}
    for d in sorted(set(dims), reverse=True):
        cut = d if d < full else None
        if cut:
            comps, _ = mrl.fit_rotation(base_d, d)
            pca = finetune.recall_at_10(mrl.project(base_q, comps), mrl.project(base_d, comps), relevant)
        else:
            pca = finetune.recall_at_10(base_q, base_d, relevant)
        table[d] = {"base_raw": finetune.recall_at_10(base_q, base_d, relevant, cut), "base_pca": pca,
                    "finetuned": finetune.recall_at_10(tuned_q, tuned_d, relevant, d if d < tuned_d.shape[1] else None)}
    return table


def verdict(table: dict[int, dict[str, float]], truncate_dim: int) -> dict:
    row = table[truncate_dim]
    gain = row["finetuned"] - row["base_pca"]
    return {"truncate_dim": truncate_dim, "finetuned": row["finetuned"], "base_pca": row["base_pca"],
            "gain": round(gain, 4), "won": gain >= WIN_MARGIN}


def heldout_report(dsn: str, dataset: str, finetuned: str, base: str, dims: Sequence[int],
                   max_docs: int = 5000, seed: int = 0) -> dict:
    """The comparison (module doc) as {"queries", "documents", "recall@10": {dim: {...}}, "verdict": {...}}."""
    with connect(dsn, autocommit=True) as conn:
        slug, _, val = load_dataset(conn, dataset)
        set_config, truncate_dim = one(conn.execute(
            "SELECT (s).config, (s).truncate_dim FROM (SELECT mrl_internal._set(%s) AS s) x", (slug,)))
        texts = documents(conn, slug)
        base_cfg = EmbeddingConfig.load(conn, base)
        tuned_cfg = EmbeddingConfig.load(conn, finetuned)
        ids = corpus_ids(sorted(texts), [d for d, _ in val], max_docs, seed)
        base_d = base_document_vectors(conn, slug, set_config, base_cfg, ids, texts)
    index = {d: i for i, d in enumerate(ids)}
    relevant = [index[d] for d, _ in val]
    queries = [q for _, q in val]
    base_q = mrl.normalize(get_embedder(base_cfg).encode(queries, "query"))
    tuned = get_embedder(tuned_cfg)
    tuned_d = mrl.normalize(tuned.encode([texts[d] for d in ids], "document"))
    tuned_q = mrl.normalize(tuned.encode(queries, "query"))
    td = int(truncate_dim or base_d.shape[1])
    table = recall_table(base_q, base_d, tuned_q, tuned_d, relevant, [*dims, td])
    return {"queries": len(val), "documents": len(ids), "set": slug, "recall@10": table,
            "verdict": verdict(table, td)}


def describe(report: dict, slug: str, config: str) -> list[str]:
    """The report as lines for a terminal, ending with the plain verdict and, on a win only, the command to switch."""
    lines = [f"held-out Recall@10: {report['queries']} validation queries against {report['documents']} documents",
             "   dims  base raw prefix  base + rotation  fine-tuned"]
    for d, r in report["recall@10"].items():
        lines.append(f"  {d:5d}  {r['base_raw']:15.3f}  {r['base_pca']:15.3f}  {r['finetuned']:10.3f}")
    v = report["verdict"]
    td = v["truncate_dim"]
    if v["won"]:
        lines.append(f"fine-tuning beats the rotation at the set's coarse dimension ({td}): {v['finetuned']:.3f} "
                     f"against {v['base_pca']:.3f} (+{v['gain']:.3f}). Switch the set to it (re-embeds, no gap):")
        lines.append(f"  pgmrl alter-set {slug} --config {config} --truncate-dim {td}")
    else:
        lines.append(f"fine-tuning does NOT beat the rotation at the set's coarse dimension ({td}): "
                     f"{v['finetuned']:.3f} against {v['base_pca']:.3f} ({v['gain']:+.3f}; a win needs "
                     f"+{WIN_MARGIN}). Keep the base model with its rotation.")
    return lines
