#!/usr/bin/env python3
"""Hybrid search benchmark: dense (two-stage) against the full-text words alone and against both fused by
reciprocal rank fusion (mrl.hybrid_search), same set, same queries, same run.

Loads the precomputed all-MiniLM-L6-v2 vectors of the first --docs documents of the Debian corpus (../shared/data)
into a set (128-d rotation, the quickstart's settings) whose text is the long description, then ranks two query
sets against it (the right answer: the query's own document):

  plain   the corpus' real queries: a package's one-line summary (no name), e.g. "tool to compress files"
  name    queries that are a rare identifying word: the package name alone, for packages whose name appears in
          their own description and in at most 3 descriptions of the set (what a user who knows the name types)
  name+summary  the same packages, "<package name> <summary>"
  word    queries that are another rare identifying word: a word (5+ letters, not the package name) that occurs in
          this package's description and in no other description of the set, but in 2+ descriptions of the whole
          corpus (a real term, not a typo), e.g. a protocol, algorithm or file format it names
  word+summary  the same packages, "<summary> <word>"

For each: Recall@10 and nDCG@10 of dense, text and hybrid (rrf_k 60, equal weights), and hybrid minus dense.

    python scripts/bench_hybrid.py                              # 20,000 documents, 500 queries of each kind
    python scripts/bench_hybrid.py --docs 5000 --queries 200 --json out.json
"""

import argparse
import json
import random
import re
import time

from corpus import database, vectors
from corpus import records as load_records
from pgmrl import Client, evaluate


def name_queries(records: list[dict], limit: int, rng: random.Random) -> list[int]:
    """Indexes of records whose package name is a word of their own description and of at most 3 descriptions."""
    words: dict[str, int] = {}
    for r in records:
        for w in set(re.findall(r"[\w.+-]+", r["doc"].lower())):
            words[w] = words.get(w, 0) + 1
    ok = [i for i, r in enumerate(records)
          if len(r["id"]) >= 3 and r["id"].lower() in set(re.findall(r"[\w.+-]+", r["doc"].lower()))
          and words.get(r["id"].lower(), 0) <= 3]
    return sorted(rng.sample(ok, min(limit, len(ok))))


def word_queries(records: list[dict], everything: list[dict], limit: int,
                 rng: random.Random) -> list[tuple[int, str]]:
    """(record index, word) for records with a word of 5+ letters that occurs in no other description of the set,
    is not the package's name, and occurs in at least 2 descriptions of the whole corpus (a term, not a typo);
    one such word per record, drawn at random."""
    def words(r: dict) -> set[str]:
        return set(re.findall(r"(?<![\w-])[a-z]{5,}(?![\w-])", r["doc"].lower()))

    in_set: dict[str, int] = {}
    in_corpus: dict[str, int] = {}
    per_doc = [words(r) for r in records]
    for ws in per_doc:
        for w in ws:
            in_set[w] = in_set.get(w, 0) + 1
    for r in everything:
        for w in words(r):
            in_corpus[w] = in_corpus.get(w, 0) + 1
    ok = []
    for i, (r, ws) in enumerate(zip(records, per_doc)):
        unique = sorted(w for w in ws if in_set[w] == 1 and in_corpus[w] >= 2 and w not in r["id"].lower())
        if unique:
            ok.append((i, unique))
    picked = sorted(rng.sample(ok, min(limit, len(ok))))
    return [(i, rng.choice(unique)) for i, unique in picked]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="Database (default: a temporary embedded server)")
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=500, help="Queries of each kind")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--json", help="Write the results here")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    records = load_records(args.docs)
    docs, qvecs = vectors("docs", args.docs), vectors("queries", args.docs)
    plain = sorted(rng.sample(range(args.docs), args.queries))
    named = name_queries(records, args.queries, rng)
    worded = word_queries(records, load_records(10**9), args.queries, rng)
    words = dict(worded)
    with database(args.dsn, "pgmrl-bench-hybrid-") as dsn, Client(dsn) as c:
        c.install()
        c.conn.execute("DROP TABLE IF EXISTS bench_docs CASCADE")
        c.conn.execute("CREATE TABLE bench_docs (id bigint PRIMARY KEY, package text, body text)")
        with c.conn.cursor().copy("COPY bench_docs FROM STDIN") as cp:
            for i, r in enumerate(records):
                cp.write_row((i + 1, r["id"], r["doc"]))
        if c.set_exists("hy"):
            c.drop_set("hy")
        c.create_set("hybrid bench", "hy", "bench_docs", "body", truncate_dim=128)
        t = time.perf_counter()
        c.load_vectors("hy", list(range(1, args.docs + 1)), docs)
        c.refit("hy")
        c.conn.execute("ANALYZE mrl_data.hy")
        print(f"{args.docs} documents loaded in {time.perf_counter() - t:.0f} s; "
              f"{len(plain)} plain, {len(named)} name and {len(worded)} rare-word queries")
        emb = None
        results = {}
        wordidx = [i for i, _ in worded]
        for kind, idx in (("plain", plain), ("name", named), ("name+summary", named), ("word", wordidx),
                          ("word+summary", wordidx)):
            if kind == "plain":
                texts = [records[i]["query"] for i in idx]
                qv = [qvecs[i] for i in idx]
            else:
                texts = [records[i]["id"] if kind == "name" else f'{records[i]["id"]} {records[i]["query"]}'
                         if kind == "name+summary" else words[i] if kind == "word" else
                         f'{records[i]["query"]} {words[i]}' for i in idx]
                if emb is None:
                    from pgmrl.embedding import get_embedder
                    emb = get_embedder(c.set_config("hy"))
                qv = list(emb.encode(texts, kind="query"))
            relevant = [{str(i + 1)} for i in idx]
            runs: dict[str, list[list[str]]] = {"dense": [], "text": [], "hybrid": []}
            lat: dict[str, list[float]] = {k: [] for k in runs}
            for text, v in zip(texts, qv):
                for mode in runs:
                    t = time.perf_counter()
                    if mode == "hybrid":
                        ids = [r["id"] for r in c.hybrid_search("hy", text, 10, vector=v)]
                    elif mode == "text":
                        ids = [r[0] for r in c.search("hy", text, 10, mode="text")]
                    else:
                        ids = [r[0] for r in c.search("hy", v, 10)]
                    lat[mode].append((time.perf_counter() - t) * 1000)
                    runs[mode].append(ids)
            scored = {r.strategy: r.metrics for r in evaluate.score(runs, relevant, lat)}
            results[kind] = {"queries": len(idx), **scored}
            print(f"\n{kind} queries ({len(idx)}), e.g. {texts[0]!r}")
            print(f"  {'':8s} {'R@10':>6s} {'nDCG@10':>8s} {'p50 ms':>7s}")
            for mode, m in scored.items():
                print(f"  {mode:8s} {m['recall@10']:6.3f} {m['ndcg@10']:8.3f} {m['p50_ms']:7.1f}")
            print(f"  hybrid - dense: R@10 {scored['hybrid']['recall@10'] - scored['dense']['recall@10']:+.3f}, "
                  f"nDCG@10 {scored['hybrid']['ndcg@10'] - scored['dense']['ndcg@10']:+.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"docs": args.docs, "seed": args.seed, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
