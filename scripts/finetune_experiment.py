#!/usr/bin/env python3
"""Fine-tuning experiment on the Debian corpus (issue acceptance): does a MiniLM fine-tuned with MatryoshkaLoss on
synthetic pairs from the documents beat the base model, especially truncated?

1. N real documents (long descriptions, records 0..N-1) go into an embedding set with their precomputed MiniLM
   vectors (no re-embedding).
2. `pgmrl finetune generate`: 4 synthetic queries per document, cut from the document itself (no LLM); documents
   split 80/20 into train/validation.
3. The guard: the set's baseline Recall@10 on the validation pairs (train refuses at >= 60% without --force).
4. `pgmrl finetune train`: MatryoshkaLoss(MNRL) over 384/256/128/64/32 on at most --max-pairs train pairs.
5. Held-out evaluation on the corpus' REAL queries (the short descriptions, never seen in training) of the
   validation documents, searching all N documents: base (raw prefix and PCA rotation) vs fine-tuned (prefix)
   at 384/128/64 dims.

    python scripts/finetune_experiment.py --docs 5000 --max-pairs 4000 --force
"""

import argparse
import json
import time

import numpy as np

from corpus import DATA, database, vectors
from corpus import records as load_records
from pgmrl import Client
from pgmrl import matryoshka as mrl
from pgmrl.embedding import EmbeddingConfig, get_embedder
from pgmrl.finetune import pairs as finetune
from pgmrl.finetune.run import generate, load_dataset, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--queries-per-doc", type=int, default=4)
    ap.add_argument("--max-pairs", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--output", default="/tmp/pgmrl-finetuned")
    ap.add_argument("--force", action="store_true", help="train even if the guard refuses")
    ap.add_argument("--json")
    args = ap.parse_args()

    recs = load_records(args.docs, args.data)
    doc_vecs = vectors("docs", args.docs, args.data)
    real_q = vectors("queries", args.docs, args.data)
    report = {"docs": args.docs}
    with database(args.dsn, "pgmrl-ft-") as dsn:
        c = Client(dsn)
        c.install()
        conn = c.conn
        conn.execute("DROP TABLE IF EXISTS ft_docs CASCADE")
        if c.set_exists("ftdocs"):
            c.drop_set("ftdocs")
        conn.execute("DELETE FROM mrl.finetune_datasets WHERE name = 'debian'")
        conn.execute("DELETE FROM mrl.embedding_configs WHERE name = 'minilm-debian'")
        conn.execute("CREATE TABLE ft_docs (id bigint PRIMARY KEY, package text, body text)")
        with conn.cursor().copy("COPY ft_docs FROM STDIN") as cp:
            for i, r in enumerate(recs):
                cp.write_row((i, r["id"], r["doc"]))
        c.create_set("Debian", "ftdocs", "ft_docs", "body")
        c.load_vectors("ftdocs", list(range(args.docs)), doc_vecs)

        t = time.perf_counter()
        ds = generate(dsn, "ftdocs", "debian", args.queries_per_doc, 0.2)
        print(f"generate: {ds['stats']} in {time.perf_counter() - t:.1f} s")
        report["dataset"] = ds["stats"]
        _, train_pairs, val = load_dataset(conn, "debian")

        # which generated queries resemble the real ones? base Recall@10 per method, cosine to the real query
        base = get_embedder(EmbeddingConfig.load(conn, "all-minilm-l6-v2"))
        rows = conn.execute("SELECT doc_id::int, query, method FROM mrl.finetune_pairs WHERE dataset = 'debian' "
                            "AND split = 'validation'").fetchall()
        qv = base.encode([r[1] for r in rows], "query")
        dn = mrl.normalize(doc_vecs)
        per_method = {}
        for m in sorted({r[2] for r in rows}):
            idx = [i for i, r in enumerate(rows) if r[2] == m]
            rel = [rows[i][0] for i in idx]
            per_method[m] = {"pairs": len(idx), "base_recall@10": finetune.recall_at_10(qv[idx], dn, rel),
                             "cosine_to_real_query": float(np.mean([qv[i] @ mrl.normalize(real_q[rows[i][0]]) for i in idx]))}
            print(f"  method {m:10s} {per_method[m]}")
        report["methods"] = per_method

        res = train(dsn, "debian", "all-minilm-l6-v2", (384, 256, 128, 64, 32), "minilm-debian", args.output,
                    batch_size=args.batch_size, max_seq_length=args.max_seq_length, max_pairs=args.max_pairs,
                    force=args.force)
        report["train"] = res
        report["guard_baseline_recall@10"] = res["baseline_recall@10"]

        # held-out: the validation documents' real queries, against all N documents
        val_docs = sorted({int(d) for d, _ in val})
        tuned = get_embedder(EmbeddingConfig.load(conn, "minilm-debian"))
        t = time.perf_counter()
        tuned_docs = tuned.encode([r["doc"] for r in recs], "document")
        tuned_q = tuned.encode([recs[i]["query"] for i in val_docs], "query")
        print(f"embedded {args.docs} documents with the fine-tuned model in {time.perf_counter() - t:.0f} s")
        bq = mrl.normalize(real_q[val_docs])
        table = {}
        for d in (384, 128, 64):
            raw = finetune.recall_at_10(bq, dn, val_docs, d if d < 384 else None)
            comps, _ = mrl.fit_rotation(dn, d)
            pca = finetune.recall_at_10(mrl.project(bq, comps), mrl.project(dn, comps), val_docs)
            ft = finetune.recall_at_10(tuned_q, tuned_docs, val_docs, d if d < 384 else None)
            table[d] = {"base_raw": raw, "base_pca": pca, "finetuned": ft}
        report["heldout_real_queries"] = {"queries": len(val_docs), "documents": args.docs, "recall@10": table}
        print(f"\nheld-out real queries ({len(val_docs)} validation documents' short descriptions, {args.docs} documents):")
        print("  dims  base raw prefix  base PCA  fine-tuned MRL")
        for d, r in table.items():
            print(f"  {d:4d}  {r['base_raw']:15.3f}  {r['base_pca']:8.3f}  {r['finetuned']:14.3f}")
        print(f"training: {res['steps']} steps, {res['pairs']} pairs, {res['train_seconds']:.0f} s")
        c.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=float)


if __name__ == "__main__":
    main()
