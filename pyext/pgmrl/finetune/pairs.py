"""Query-document pairs for fine-tuning, from a set's own documents (training itself: run.py).

Without an LLM, queries are cut from the documents themselves, one per method in turn:
  lead       the first sentence, shortened (descriptions usually open with what the thing is)
  keyphrase  the document's most distinctive run of content words (TF-IDF over the set)
  salient    the sentence with the most distinctive words after the first, shortened
  span       a short window of words around the document's most distinctive word
With an OpenAI-compatible chat endpoint (`llm_url`), the model writes the queries instead. Best of all, when the table
holds them, real pairs: the query side from the row's own column (a title, a subject, a summary; column_pairs).
Pairs are split into train/validation by document (a document's pairs are all on one side).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import PgmrlError

METHODS = ("lead", "keyphrase", "salient", "span")
STOP = frozenset([
    "a", "about", "above", "after", "again", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been",
    "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down",
    "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "here", "how", "i", "if",
    "in", "into", "is", "it", "its", "itself", "just", "may", "more", "most", "no", "nor", "not", "now", "of",
    "off", "on", "once", "only", "or", "other", "our", "out", "over", "own", "same", "several", "should", "so",
    "some", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "through", "to", "too", "under", "until", "up", "very", "via", "was", "we", "were", "what", "when", "where",
    "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "provides", "provide",
    "provided", "includes", "include", "including", "package", "contains", "contain", "use", "used", "using",
    "based", "support", "supports", "allows", "allow", "many", "can't", "etc", "e.g", "i.e"
])
WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#.\-]*[A-Za-z0-9+#]|[A-Za-z]")
SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
MAX_QUERY_WORDS = 10


def _words(text: str) -> list[str]:
    return WORD.findall(text)


def _clip(words: list[str], n: int = MAX_QUERY_WORDS) -> str:
    words = words[:n]
    while words and words[-1].lower() in STOP:
        words = words[:-1]
    return " ".join(words)


class QueryGenerator:
    """Heuristic queries; fit() learns document frequencies over the set's documents."""

    def __init__(self):
        self.df: Counter = Counter()
        self.n_docs = 0

    def fit(self, docs: Sequence[str]) -> QueryGenerator:
        for d in docs:
            self.df.update({w.lower() for w in _words(d)})
        self.n_docs = len(docs)
        return self

    def idf(self, w: str) -> float:
        w = w.lower()
        if w in STOP or len(w) < 3:
            return 0.0
        return math.log((1 + self.n_docs) / (1 + self.df.get(w, 0)))

    def generate(self, doc: str, method: str) -> str | None:
        sents = [s.strip() for s in SENT.split(doc.strip()) if len(_words(s)) >= 3]
        if not sents:
            return None
        if method == "lead":
            return _clip(_words(sents[0])) or None
        if method == "salient":
            rest = sents[1:] or sents
            best = max(rest, key=lambda s: np.mean([self.idf(w) for w in _words(s)] or [0]))
            words = _words(best)
            start = int(np.argmax([self.idf(w) for w in words])) if words else 0
            return _clip(words[max(0, start - 3):]) or None
        words = _words(doc)
        scores = [self.idf(w) for w in words]
        if not words or max(scores) == 0:
            return None
        if method == "keyphrase":
            # maximal runs of content words; the run with the highest total idf (at most 5 words)
            runs, cur = [], []
            for w, sc in zip(words, scores):
                if sc > 0:
                    cur.append((w, sc))
                else:
                    if cur:
                        runs.append(cur)
                    cur = []
            if cur:
                runs.append(cur)
            best = max(runs, key=lambda r: sum(sc for _, sc in r[:5]))
            return " ".join(w for w, _ in best[:5])
        if method == "span":
            i = int(np.argmax(scores))
            return _clip(words[max(0, i - 3):i + 5], 8) or None
        raise ValueError(f"unknown method {method!r}")

    def queries(self, doc: str, n: int) -> list[tuple[str, str]]:
        out, seen = [], set()
        for method in METHODS:
            q = self.generate(doc, method)
            if q and q.lower() not in seen and len(q.split()) >= 2:
                seen.add(q.lower())
                out.append((q, method))
            if len(out) >= n:
                break
        return out


def llm_queries(doc: str, n: int, url: str, model: str, api_key: str | None = None, timeout: float = 60) -> list[str]:
    """n search queries for a document from an OpenAI-compatible chat endpoint."""
    from ..embedding.remote import post_json

    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {api_key}"} if api_key else {})
    body = post_json(url.rstrip("/") + "/chat/completions", {
        "model": model, "temperature": 0.7,
        "messages": [{"role": "system", "content": "You write search queries. Answer with one query per line, "
                                                   "nothing else."},
                     {"role": "user", "content": f"Write {n} different short search queries (3-10 words) that a "
                                                 f"user would type to find this document:\n\n{doc[:4000]}"}]},
        headers, timeout=timeout, max_retries=5)
    try:
        text = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise PgmrlError(f"unexpected chat completion body from {url}") from None
    lines = [re.sub(r"^\s*(\d+[.)]|[-*])\s*", "", line).strip().strip('"') for line in text.splitlines()]
    return [q for q in lines if q][:n]


def split_of(doc_id: str, validation_share: float) -> str:
    h = int(hashlib.md5(doc_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if h < validation_share else "train"


@dataclass
class Pair:
    doc_id: str
    query: str
    split: str
    method: str


def make_pairs(ids: Sequence[str], docs: Sequence[str], queries_per_doc: int, validation_share: float,
               llm: dict | None = None, progress=None) -> list[Pair]:
    gen = None if llm else QueryGenerator().fit(docs)
    pairs = []
    for doc_id, doc in zip(ids, docs):
        split = split_of(str(doc_id), validation_share)
        if llm:
            qs = [(q, "llm") for q in llm_queries(doc, queries_per_doc, **llm)]
        else:
            assert gen is not None  # built above whenever there is no llm
            qs = gen.queries(doc, queries_per_doc)
        pairs += [Pair(str(doc_id), q, split, m) for q, m in qs]
        if progress is not None:
            progress.update(1)
    return pairs


def _normalised(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def column_pairs(ids: Sequence[str], docs: Sequence[str], queries: Sequence[str | None], validation_share: float,
                 max_docs_per_query: int = 1) -> tuple[list[Pair], dict[str, int]]:
    """One pair per row whose query comes from its own column. Dropped (and counted by reason): an empty query; one
    that is the document's own beginning (nothing to learn); one shared by more than max_docs_per_query documents
    (e.g. "transitional package": a pair that says one of them is the answer teaches the others are not)."""
    if max_docs_per_query < 1:
        raise PgmrlError("max_docs_per_query must be at least 1")
    normed = [_normalised(q or "") for q in queries]
    docs_per_query = Counter(n for n in normed if n)
    pairs: list[Pair] = []
    dropped = {"empty": 0, "document_start": 0, "shared": 0}
    for doc_id, doc, query, n in zip(ids, docs, queries, normed):
        if not n:
            dropped["empty"] += 1
        elif _normalised(doc).startswith(n):
            dropped["document_start"] += 1
        elif docs_per_query[n] > max_docs_per_query:
            dropped["shared"] += 1
        else:
            assert query is not None
            pairs.append(Pair(str(doc_id), " ".join(query.split()), split_of(str(doc_id), validation_share), "column"))
    return pairs, dropped


def no_duplicate_batches(pairs: Sequence[tuple], batch_size: int, seed: int = 0) -> list[list]:
    """Shuffled batches of (doc_id, query, doc[, negative ids, negative docs]) in which no document appears twice,
    as a positive or as a hard negative: with in-batch negatives a repeated document would be a false negative."""
    rng = np.random.default_rng(seed)
    pending = [pairs[i] for i in rng.permutation(len(pairs))]
    batches = []
    while pending:
        batch: list[tuple] = []
        used: set[str] = set()
        rest: list[tuple] = []
        for p in pending:
            docs = {p[0], *(p[3] if len(p) > 3 else ())}
            if len(batch) < batch_size and not docs & used:
                batch.append(p)
                used |= docs
            else:
                rest.append(p)
        if len(batch) < 2:
            break
        batches.append(batch)
        pending = rest
    return batches


def recall_at_10(query_vecs: np.ndarray, doc_vecs: np.ndarray, relevant: Sequence[int], dim: int | None = None) -> float:
    """Recall@10 of exact cosine search; relevant[i] is the row of doc_vecs that query i should find."""
    from ..matryoshka import truncate

    q = truncate(query_vecs, dim) if dim else query_vecs
    d = truncate(doc_vecs, dim) if dim else doc_vecs
    top = np.argsort(-(q @ d.T), axis=1)[:, :10]
    return float(np.mean([r in row for r, row in zip(relevant, top)]))


def dataset_json(pairs: list[Pair]) -> dict:
    by = Counter((p.split, p.method) for p in pairs)
    return {"pairs": len(pairs), "train": sum(v for (s, _), v in by.items() if s == "train"),
            "validation": sum(v for (s, _), v in by.items() if s == "validation"),
            "documents": len({p.doc_id for p in pairs}),
            "by_method": {m: sum(v for (_, mm), v in by.items() if mm == m) for m in {k[1] for k in by}}}


def dumps(obj) -> str:
    return json.dumps(obj, default=float)
