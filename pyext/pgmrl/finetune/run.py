"""`pgmrl finetune generate / train`: datasets in the database, training on CPU or GPU, the guard.

The guard (the guide's rule): fine-tuning pays when the set's baseline Recall@10 on the validation pairs is below
60%, or when a fine-tuned model measurably beats the base model's rotation at the set's coarse dimension on held-out
real queries. So `train` refuses at 60% or more on generated pairs (unless forced), and on real pairs (a dataset
from a query column) trains as a trial: the held-out comparison (report.py) decides whether to switch."""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from ..db import connect, scalar
from ..embedding import EmbeddingConfig, resolve_local_model
from ..errors import PgmrlError
from . import pairs as finetune
from .dataset import dataset_info, documents, load_dataset

log = logging.getLogger(__name__)
GUARD_RECALL = 0.60  # the guide: fine-tune only when the baseline Recall@10 is below 60%


def generate(dsn: str, slug: str, name: str, queries_per_doc: int = 4, validation_share: float = 0.2,
             llm: dict | None = None, replace: bool = False, progress=None, role: str | None = None,
             query_column: str | None = None, query_expr: str | None = None, max_docs_per_query: int = 1) -> dict:
    """Pairs of the set's documents with queries: from the rows' own column or expression (`query_column` /
    `query_expr`: real pairs, one per row), else generated (`queries_per_doc` per document, by the LLM when `llm`).
    `role`: the database role to act as (the HTTP API passes its token's role)."""
    if query_column and query_expr:
        raise PgmrlError("give either a query column or a query expression, not both")
    if (query_column or query_expr) and llm:
        raise PgmrlError("a query column already gives the queries: drop the LLM endpoint")
    if not 1 <= queries_per_doc <= 20:
        raise PgmrlError("queries_per_doc must be between 1 and 20")
    if not 0 < validation_share < 1:
        raise PgmrlError("the validation share must be between 0 and 1")
    with connect(dsn, role=role) as conn:
        if conn.execute("SELECT 1 FROM mrl.finetune_datasets WHERE name = %s", (name,)).fetchone():
            if not replace:
                raise PgmrlError(f"dataset {name!r} exists; choose another name or replace it")
            conn.execute("DELETE FROM mrl.finetune_datasets WHERE name = %s", (name,))
        t = time.perf_counter()
        if query_column or query_expr:
            expr = query_expr or psycopg.sql.Identifier(query_column or "").as_string(conn)
            pairs, config = _column_pairs(conn, slug, expr, validation_share, max_docs_per_query)
        else:
            pairs, config = _generated_pairs(conn, slug, queries_per_doc, validation_share, llm, progress)
        stats = finetune.dataset_json(pairs) | {"seconds": round(time.perf_counter() - t, 1)}
        if "dropped" in config:
            stats["dropped"] = config.pop("dropped")
        if not pairs:
            raise PgmrlError(f"no pairs from set {slug!r}" + (f" (dropped: {stats['dropped']})"
                                                              if "dropped" in stats else ""))
        _store(conn, name, slug, config, stats, pairs)
    return {"name": name, "source": {"type": "embedding_set", "slug": slug}, "config": config, "stats": stats}


def _store(conn, name: str, slug: str, config: dict, stats: dict, pairs: list[finetune.Pair]) -> None:
    with conn.transaction():
        try:
            conn.execute("INSERT INTO mrl.finetune_datasets (name, source, config, stats) VALUES (%s, %s, %s, %s)",
                         (name, Jsonb({"type": "embedding_set", "slug": slug}), Jsonb(config), Jsonb(stats)))
        except psycopg.errors.CheckViolation:
            raise PgmrlError(f"invalid dataset name {name!r}: lower-case letters, digits, '.', '_', '-'") from None
        with conn.cursor().copy("COPY mrl.finetune_pairs (dataset, n, doc_id, query, split, method) FROM STDIN") as cp:
            for i, p in enumerate(pairs):
                cp.write_row((name, i, p.doc_id, p.query, p.split, p.method))


def _column_pairs(conn, slug: str, expr: str, validation_share: float, max_docs_per_query: int):
    try:
        rows = conn.execute("SELECT id, body, query FROM mrl.set_document_pairs(%s, %s)", (slug, expr)).fetchall()
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.InsufficientPrivilege) as exc:
        hint = exc.diag.message_hint
        raise PgmrlError(f"query: {exc.diag.message_primary}" + (f" ({hint})" if hint else "")) from None
    if not rows:
        raise PgmrlError(f"set {slug!r} has no documents with text")
    pairs, dropped = finetune.column_pairs([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                           validation_share, max_docs_per_query)
    return pairs, {"query": expr, "validation_share": validation_share, "method": "column",
                   "max_docs_per_query": max_docs_per_query, "dropped": dropped}


def _generated_pairs(conn, slug: str, queries_per_doc: int, validation_share: float, llm: dict | None, progress):
    rows = conn.execute("SELECT id, body FROM mrl.set_documents(%s)", (slug,)).fetchall()
    if not rows:
        raise PgmrlError(f"set {slug!r} has no documents with text")
    if progress is not None:
        progress.total = len(rows)
    pairs = finetune.make_pairs([r[0] for r in rows], [r[1] for r in rows], queries_per_doc, validation_share,
                                llm, progress)
    return pairs, {"queries_per_doc": queries_per_doc, "validation_share": validation_share,
                   "method": "llm" if llm else "heuristic:" + ",".join(finetune.METHODS)}


def baseline_recall(dsn: str, slug: str, val: list[tuple[str, str]], progress=None) -> float:
    """Recall@10 of the set as it is (its model, its stored vectors, exact search) on the validation pairs."""
    from .. import evaluate
    from ..client import Client

    qs = evaluate.QuerySet([q for _, q in val], [None] * len(val), [{d} for d, _ in val])
    with Client(dsn) as c:
        res = c.evaluate(slug, qs, ["exact"], progress=progress)
    return res[0].metrics["recall@10"]


def train(dsn: str, dataset: str, base: str = "all-minilm-l6-v2", dims: tuple[int, ...] = (384, 256, 128, 64, 32),
          name: str | None = None, output: str | None = None, epochs: int = 1, batch_size: int = 32,
          lr: float = 5e-5, max_seq_length: int = 128, max_pairs: int | None = None, force: bool = False,
          device: str | None = None, seed: int = 0, echo=print, progress_factory=None,
          hard_negatives: int = 1) -> dict:
    """Trains base on the dataset's train pairs with MatryoshkaLoss(MultipleNegativesRankingLoss), each pair with
    `hard_negatives` documents mined from the set (0: in-batch negatives only), and registers the result as an MRL
    embedding config. The guard: module doc."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

    slug, train_pairs, val, cfg, name, params, dims = _prepare(dsn, dataset, base, name, dims)
    t0 = time.perf_counter()
    recall = _guard(dsn, dataset, slug, val, force, echo)
    if max_pairs and len(train_pairs) > max_pairs:
        train_pairs = _whole_documents(train_pairs, max_pairs, seed)
    examples: list[tuple] = list(train_pairs)
    mining = None
    if hard_negatives > 0:
        examples, mining = _with_negatives(dsn, slug, train_pairs, hard_negatives, seed, echo)

    torch.manual_seed(seed)
    model = SentenceTransformer(str(resolve_local_model(cfg)), device=device, local_files_only=True)
    model.max_seq_length = max_seq_length
    loss = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), list(dims))
    batches = [b for e in range(epochs) for b in finetune.no_duplicate_batches(examples, batch_size, seed + e)]
    echo(f"training {cfg.name} on {len(examples)} pairs ({len(batches)} steps of {batch_size}, {epochs} epoch(s), "
         f"{hard_negatives} hard negative(s) each, max {max_seq_length} tokens, Matryoshka dims "
         f"{','.join(map(str, dims))})")
    t_train = time.perf_counter()
    losses = _optimise(model, loss, batches, cfg, lr, progress_factory)
    train_s = time.perf_counter() - t_train
    out = Path(output or Path(os.environ.get("PGMRL_MODEL_DIR") or Path.home() / ".local/share/pgmrl/models") / name)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    _register(dsn, name, out, cfg, dims, max_seq_length, params, dataset)
    echo(f"trained in {train_s:.0f} s; saved to {out}; registered embedding config {name!r} (MRL dims "
         f"{','.join(map(str, dims))})")
    return {"config": name, "path": str(out.resolve()), "base": cfg.name, "dataset": dataset, "set": slug,
            "pairs": len(examples), "steps": len(batches), "hard_negatives": hard_negatives,
            "mining": mining, "train_seconds": round(train_s, 1),
            "total_seconds": round(time.perf_counter() - t0, 1), "baseline_recall@10": recall,
            "final_loss": float(np.mean(losses[-10:])) if losses else math.nan, "matryoshka_dims": list(dims)}


def _guard(dsn: str, dataset: str, slug: str, val: list[tuple[str, str]], force: bool, echo) -> float:
    """The set's baseline Recall@10 on the validation pairs; raises where the guide's rule says not to train."""
    recall = baseline_recall(dsn, slug, val)
    echo(f"baseline Recall@10 of set {slug} (its model, exact search) on {len(val)} validation pairs: {recall:.3f}")
    if recall < GUARD_RECALL or force:
        return recall
    with connect(dsn, autocommit=True) as conn:
        _, config = dataset_info(conn, dataset)
    if config.get("method") == "column":
        echo(f"the baseline is at least {GUARD_RECALL:.0%}, but these are real pairs: training as a trial; the "
             f"held-out comparison at the set's coarse dimension decides whether to switch")
        return recall
    raise PgmrlError(f"the baseline Recall@10 is {recall:.1%}, at least {GUARD_RECALL:.0%}: the guide says "
                     f"fine-tuning is unlikely to pay off with generated pairs. Use real pairs (--query-column) "
                     f"or pass --force to train anyway.")


def _with_negatives(dsn: str, slug: str, pairs: list[tuple[str, str, str]], per_query: int, seed: int, echo):
    """(doc_id, query, doc, negative ids, negative docs) for each pair; a pair short of mined negatives is topped up
    with random documents of the set (never its own)."""
    from ..embedding import get_embedder
    from .negatives import mine

    t = time.perf_counter()
    with connect(dsn, autocommit=True) as conn:
        texts = documents(conn, slug)
        cfg_name = scalar(conn.execute("SELECT (mrl_internal._set(%s)).config", (slug,)))
        set_cfg = EmbeddingConfig.load(conn, cfg_name)
        qv = get_embedder(set_cfg).encode([q for _, q, _ in pairs], "query")
        negs, stats = mine(conn, slug, qv, [d for d, _, _ in pairs], texts, per_query)
    rng = np.random.default_rng(seed)
    ids = sorted(texts)
    out = []
    for (doc_id, query, doc), chosen in zip(pairs, negs):
        while len(chosen) < per_query:
            extra = ids[int(rng.integers(len(ids)))]
            if extra != doc_id and extra not in chosen:
                chosen.append(extra)
        out.append((doc_id, query, doc, tuple(chosen), tuple(texts[c] for c in chosen)))
    echo(f"mined hard negatives for {stats.with_negatives} of {stats.queries} pairs from set {slug} in "
         f"{time.perf_counter() - t:.0f} s (skipped as near-duplicates: {stats.skipped_duplicate}, as possibly "
         f"relevant: {stats.skipped_margin})")
    return out, stats.as_dict()


def _prepare(dsn: str, dataset: str, base: str, name: str | None, dims: tuple[int, ...]):
    """The dataset's pairs and the base config, checked: (slug, train pairs, validation pairs, config, the new
    config's name, the base's size in millions of parameters, the Matryoshka dims in descending order)."""
    with connect(dsn, autocommit=True) as conn:
        slug, train_pairs, val = load_dataset(conn, dataset)
        cfg = EmbeddingConfig.load(conn, base)
        name = name or f"{cfg.name}-{dataset}"
        if conn.execute("SELECT 1 FROM mrl.embedding_configs WHERE name = %s", (name,)).fetchone():
            raise PgmrlError(f"an embedding config named {name!r} exists; pass another --name")
        params = scalar(conn.execute("SELECT params_millions FROM mrl_internal._config(%s)", (base,)))
    if cfg.provider != "sentence-transformers":
        raise PgmrlError(f"base {cfg.name} is served by {cfg.provider}; fine-tuning needs a local model")
    dims = tuple(sorted({int(d) for d in dims}, reverse=True))
    if dims[0] != cfg.dims or dims[-1] < 1:
        raise PgmrlError(f"--matryoshka-dims must start at the model's {cfg.dims} dims and stay positive, got {dims}")
    if not train_pairs or not val:
        raise PgmrlError(f"dataset {dataset!r} needs both train and validation pairs")
    return slug, train_pairs, val, cfg, name, params, dims


def _whole_documents(pairs: list[tuple[str, str, str]], max_pairs: int, seed: int) -> list[tuple[str, str, str]]:
    """At most max_pairs pairs, taking whole documents (all their queries, as generated) in a seeded random order."""
    rng = np.random.default_rng(seed)
    counts = Counter(d for d, _, _ in pairs)
    docs = sorted(counts)
    keep, n = set(), 0
    for i in rng.permutation(len(docs)):
        if n + counts[docs[i]] > max_pairs:
            continue
        keep.add(docs[i])
        n += counts[docs[i]]
    return [p for p in pairs if p[0] in keep]


def _optimise(model, loss, batches: list, cfg: EmbeddingConfig, lr: float, progress_factory=None) -> list[float]:
    """AdamW over the batches: linear warm-up over the first 10% of steps, then linear decay to 0, gradients
    clipped at 1. Returns the loss of every step."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    warmup = max(1, len(batches) // 10)
    steps = len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: (step + 1) / warmup if step < warmup else max(0.0, (steps - step) / max(1, steps - warmup)))
    model.train()
    bar = progress_factory(len(batches)) if progress_factory else None
    losses: list[float] = []
    for batch in batches:
        q_prefix, d_prefix = cfg.query_prefix, cfg.document_prefix
        columns = [[q_prefix + p[1] for p in batch], [d_prefix + p[2] for p in batch]]
        columns += [[d_prefix + p[4][j] for p in batch] for j in range(len(batch[0][4]) if len(batch[0]) > 4 else 0)]
        feats = [model.preprocess(c) for c in columns]
        feats = [{k: v.to(model.device) if hasattr(v, "to") else v for k, v in f.items()} for f in feats]
        value = loss(feats, None)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(value.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    return losses


def _register(dsn: str, name: str, out: Path, cfg: EmbeddingConfig, dims: tuple[int, ...], max_seq_length: int,
              params, dataset: str) -> None:
    """Registers the saved model as an MRL embedding config (default coarse dimension 128 where trained for it)."""
    default_dim = 128 if 128 in dims else dims[min(1, len(dims) - 1)]
    with connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO mrl.embedding_configs (name, model, provider, dims, supports_mrl, matryoshka_dims, "
            "default_truncate_dim, query_prefix, document_prefix, max_seq_length, params_millions, best_for) "
            "VALUES (%s, %s, 'sentence-transformers', %s, true, %s, %s, %s, %s, %s, %s, %s)",
            (name, str(out.resolve()), cfg.dims, list(dims), default_dim, cfg.query_prefix, cfg.document_prefix,
             max_seq_length, params, f"{cfg.name} fine-tuned on dataset {dataset} (Matryoshka {min(dims)}-{max(dims)})"))
