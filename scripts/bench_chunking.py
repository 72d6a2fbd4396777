#!/usr/bin/env python3
"""Chunking benchmark: what a long document says past the model's window, found with and without chunking.

Builds --docs long documents, each the concatenation (as paragraphs) of --parts real Debian package descriptions
drawn at random (--seed) from the corpus (../shared/data), embeds them with the real all-MiniLM-L6-v2 (a 256-token
window) in three sets over the same table, and searches with the packages' real one-line summaries (precomputed
query vectors); the right answer is the long document that contains the package:

  none        one vector per row (today's behaviour): the model reads the first 256 tokens only
  tokens      token windows of 256 tokens (the model's window, [CLS]/[SEP] counted), 32 shared by neighbours
  paragraphs  whole descriptions/sentences packed into chunks of at most 256 tokens
  tokens-128, paragraphs-128   the same with chunks of at most 128 tokens
  sections-128  every description (paragraph) starts a chunk of at most 128 tokens

Two query groups per document: the package at the start, and the first package that starts past the model's
window (its first token after token 254). Reports Recall@10 and MRR@10 for both groups, their gap, the chunks
stored and the embedding time of each set.

    python scripts/bench_chunking.py                    # 300 documents of 6 descriptions
    python scripts/bench_chunking.py --docs 100 --json out.json
"""

import argparse
import json
import random
import time

import numpy as np

from corpus import database, vectors
from corpus import records as load_records
from pgmrl import Client, evaluate
from pgmrl.embedding import get_embedder

SETS = {"none": None, "tokens": {"method": "tokens", "size": 256, "overlap": 32},
        "paragraphs": {"method": "paragraphs", "size": 256},
        "tokens-128": {"method": "tokens", "size": 128, "overlap": 32},
        "paragraphs-128": {"method": "paragraphs", "size": 128},
        "sections-128": {"method": "sections", "size": 128}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="Database (default: a temporary embedded server)")
    ap.add_argument("--docs", type=int, default=300, help="Long documents")
    ap.add_argument("--parts", type=int, default=6, help="Descriptions per long document")
    ap.add_argument("--pool", type=int, default=20000, help="Corpus records to draw descriptions from")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sets", default=",".join(SETS), help="Which of: " + ", ".join(SETS))
    ap.add_argument("--json", help="Write the results here")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    records = load_records(args.pool)
    qvecs = vectors("queries", args.pool)
    drawn = rng.sample(range(args.pool), args.docs * args.parts)
    docs = [drawn[d * args.parts:(d + 1) * args.parts] for d in range(args.docs)]
    texts = ["\n\n".join(records[j]["doc"] for j in parts) for parts in docs]

    with database(args.dsn, "pgmrl-bench-chunking-") as dsn, Client(dsn) as c:
        c.install()
        emb = get_embedder(c.config("all-minilm-l6-v2"))
        window = emb.token_budget("document")
        # which package of each document starts past the window (in the model's own tokens)
        start_q, past_q = [], []
        for d, (parts, text) in enumerate(zip(docs, texts)):
            start_q.append((d, parts[0]))
            pos = 0
            for j in parts:
                k = text.index(records[j]["doc"], pos)
                if len(emb.token_spans(text[:k])) >= window:
                    past_q.append((d, j))
                    break
                pos = k
        n_tokens = [len(emb.token_spans(t)) for t in texts]
        print(f"{args.docs} documents of {args.parts} descriptions: {np.mean(n_tokens):.0f} tokens on average "
              f"(window {window}); {len(past_q)} documents have a package past the window")
        c.conn.execute("DROP TABLE IF EXISTS long_docs CASCADE")
        c.conn.execute("CREATE TABLE long_docs (id bigint PRIMARY KEY, body text)")
        with c.conn.cursor().copy("COPY long_docs FROM STDIN") as cp:
            for d, t in enumerate(texts):
                cp.write_row((d + 1, t))
        results = {}
        for name in args.sets.split(","):
            cut = SETS[name]
            slug = "long_" + name.replace("-", "_")
            if c.set_exists(slug):
                c.drop_set(slug)
            c.create_set(slug, slug, "long_docs", "body", chunking=cut)
            t = time.perf_counter()
            c.run_worker(once=True)
            took = time.perf_counter() - t
            rows = c.conn.execute(f"SELECT count(*) FROM mrl_data.{slug}").fetchone()[0]
            res = {"vectors": rows, "embed_s": round(took, 1)}
            for group, qs in (("start", start_q), ("past_window", past_q)):
                runs = {name: [[r[0] for r in c.search(slug, qvecs[j], 10, strategy="exact")] for _, j in qs]}
                m = evaluate.score(runs, [{str(d + 1)} for d, _ in qs])[0].metrics
                res[group] = {"queries": len(qs), "recall@10": m["recall@10"], "mrr@10": m["mrr@10"]}
            res["gap"] = res["start"]["recall@10"] - res["past_window"]["recall@10"]
            results[name] = res
            print(f"  {name:10s} vectors {rows:5d}  embedded in {took:5.0f} s   Recall@10 start "
                  f"{res['start']['recall@10']:.3f}  past the window {res['past_window']['recall@10']:.3f}  "
                  f"(gap {res['gap']:+.3f})   MRR@10 {res['start']['mrr@10']:.3f} / {res['past_window']['mrr@10']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"docs": args.docs, "parts": args.parts, "seed": args.seed, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
