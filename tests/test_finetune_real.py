"""Fine-tuning on real pairs: the query side from the table's own column or expression, the pairs dropped, hard
negatives mined from the set (never the positive, never a near-duplicate), and the held-out report, whose numbers
are recomputed here from vectors independently of the product's code."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from pgmrl.cli import cli
from pgmrl.embedding import get_embedder
from pgmrl.errors import PgmrlError
from pgmrl.finetune import negatives
from pgmrl.finetune import pairs as finetune
from pgmrl.finetune.run import generate


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_column_pairs_drop_empty_document_start_and_shared(corpus):
    recs = corpus[:50]
    ids = [str(i) for i in range(50)]
    docs = [r["doc"] for r in recs]
    queries: list[str | None] = [r["query"] for r in recs]
    queries[0] = None
    queries[1] = "   "
    queries[2] = " ".join(docs[2].split()[:4]).upper()  # the document's own beginning, case and spacing aside
    queries[3] = queries[4] = queries[5] = "Transitional dummy package"
    pairs, dropped = finetune.column_pairs(ids, docs, queries, 0.2)
    assert dropped["empty"] == 2 and dropped["document_start"] >= 1 and dropped["shared"] >= 3
    assert len(pairs) + sum(dropped.values()) == 50
    kept = {p.doc_id for p in pairs}
    assert not kept & {"0", "1", "2", "3", "4", "5"}
    assert all(p.query == " ".join(recs[int(p.doc_id)]["query"].split()) and p.method == "column" for p in pairs)
    # a looser limit keeps a query that three documents share
    _, dropped3 = finetune.column_pairs(ids, docs, queries, 0.2, max_docs_per_query=3)
    assert dropped3["shared"] == dropped["shared"] - 3
    with pytest.raises(PgmrlError):
        finetune.column_pairs(ids, docs, queries, 0.2, max_docs_per_query=0)


def test_generate_from_query_column_and_expression(loaded, dsn):
    conn = loaded.conn
    conn.execute("UPDATE docs SET summary = NULL WHERE id = 1")
    conn.execute("UPDATE docs SET summary = left(body, 40) WHERE id = 2")
    conn.execute("UPDATE docs SET summary = 'transitional package' WHERE id IN (3, 4, 5)")
    conn.commit()
    out = run("finetune", "generate", "--set", "docs", "--name", "real", "--query-column", "summary", "--dsn", dsn)
    assert out.exit_code == 0, out.output
    assert "dropped: 1 empty" in out.output
    rows = conn.execute("SELECT p.doc_id, p.query, d.summary, p.split, p.method FROM mrl.finetune_pairs p "
                        "JOIN docs d ON d.id::text = p.doc_id WHERE p.dataset = 'real'").fetchall()
    stats = conn.execute("SELECT stats FROM mrl.finetune_datasets WHERE name = 'real'").fetchone()[0]
    assert len(rows) + sum(stats["dropped"].values()) == 3000
    assert {r[0] for r in rows}.isdisjoint({"1", "2", "3", "4", "5"})
    assert len({r[0] for r in rows}) == len(rows)  # one pair per row
    assert all(r[1] == " ".join(r[2].split()) and r[4] == "column" for r in rows)
    assert {r[3] for r in rows} == {"train", "validation"}

    expr = run("finetune", "generate", "--set", "docs", "--name", "upper", "--query-expr", "upper(summary)",
               "--dsn", dsn)
    assert expr.exit_code == 0, expr.output
    queries = [r[0] for r in conn.execute("SELECT query FROM mrl.finetune_pairs WHERE dataset = 'upper'")]
    assert queries and all(q == q.upper() for q in queries)

    for bad, words in (("(SELECT 'x')", "subqueries"), ("summary; DROP TABLE docs", "statement separator"),
                       ("no_such_column", "not valid")):
        r = run("finetune", "generate", "--set", "docs", "--name", "bad", "--query-expr", bad, "--dsn", dsn)
        assert r.exit_code == 1 and words in r.output, r.output
    both = run("finetune", "generate", "--set", "docs", "--name", "bad", "--query-column", "summary",
               "--query-expr", "summary", "--dsn", dsn)
    assert both.exit_code == 1 and "not both" in both.output
    assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 3000


def test_mining_excludes_the_positive_and_near_duplicates(loaded, corpus, corpus_vectors):
    conn = loaded.conn
    docs, queries = corpus_vectors
    qv = queries[:200]
    positives = [str(i + 1) for i in range(200)]  # id = record index + 1
    before = negatives.candidates(conn, "docs", qv, 20)
    i = next(n for n, r in enumerate(before) if r[0] == positives[n])  # a query that finds its document first
    # a near-duplicate of that document: the same package described again, in a new row
    conn.execute("INSERT INTO docs (id, package, summary, body) VALUES (9001, 'dup', 'dup', %s)",
                 (corpus[i]["doc"] + " (repackaged)",))
    conn.commit()
    loaded.load_vectors("docs", [9001], docs[i:i + 1] * 0.999 + docs[i + 1:i + 2] * 0.001)
    texts = dict(conn.execute("SELECT id, body FROM mrl.set_documents('docs')").fetchall())
    ranked = negatives.candidates(conn, "docs", qv, 20)
    assert ranked[i][:2] in ([positives[i], "9001"], ["9001", positives[i]])  # the duplicate ranks right there
    chosen, stats = negatives.mine(conn, "docs", qv, positives, texts, per_query=2)
    assert stats.queries == 200 and stats.with_negatives >= 190 and stats.skipped_duplicate >= 1
    assert "9001" not in chosen[i] and all(positives[n] not in chosen[n] for n in range(200))
    # recomputed from the vectors table itself: no positive, no near-duplicate, none as close to the query
    vt = conn.execute("SELECT mrl.vectors_table('docs')::text").fetchone()[0]
    stored = {str(k): np.asarray(getattr(e, "to_numpy", lambda e=e: e)(), dtype=np.float64)
              for k, e in conn.execute(f"SELECT id, embedding FROM {vt}")}
    for n, (q, pos, negs) in enumerate(zip(qv, positives, chosen)):
        q = q / np.linalg.norm(q)
        p = stored[pos] / np.linalg.norm(stored[pos])
        for neg in negs:
            v = stored[neg] / np.linalg.norm(stored[neg])
            assert neg != pos and texts[neg] != texts[pos] and neg in ranked[n]  # from the set's own search
            assert float(v @ p) < 0.98 and float(q @ v) <= 0.95 * float(q @ p) + 1e-6


def test_select_negatives_guards_on_crafted_vectors():
    e = np.eye(4, dtype=np.float32)
    q = np.array([[1.0, 0.2, 0.0, 0.0]], dtype=np.float32)
    vectors = {"pos": e[0], "dup": (e[0] + 0.01 * e[3]) / np.linalg.norm(e[0] + 0.01 * e[3]),
               "close": (e[0] + 0.1 * e[1]) / np.linalg.norm(e[0] + 0.1 * e[1]), "far": e[1], "other": e[2]}
    texts = {k: k for k in vectors}
    chosen, stats = negatives.select_negatives(q, ["pos"], [["pos", "dup", "close", "far", "other"]], vectors, texts,
                                               per_query=2, margin=0.95, duplicate_cosine=0.98)
    # "close" is a near-duplicate of the positive too (cosine 0.995); "far" is the first true negative
    assert chosen == [["far", "other"]]
    assert (stats.skipped_positive, stats.skipped_duplicate, stats.skipped_margin) == (1, 2, 0)
    chosen, stats = negatives.select_negatives(q, ["pos"], [["far"]], vectors, texts, margin=0.1)
    assert chosen == [[]] and stats.skipped_margin == 1  # within the margin of the positive: maybe relevant


def _recall(q: np.ndarray, d: np.ndarray, relevant: list[int]) -> float:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    top = np.argsort(-(q @ d.T), axis=1)[:, :10]
    return float(np.mean([r in row for r, row in zip(relevant, top)]))


def test_train_real_pairs_and_the_report_recomputed(loaded, dsn, tmp_path, corpus_vectors, embedder):
    generate(dsn, "docs", "real", query_column="summary")
    args = ["finetune", "train", "--dataset", "real", "--dsn", dsn, "--name", "minilm-real", "--output",
            str(tmp_path / "m"), "--max-pairs", "32", "--batch-size", "8", "--max-seq-length", "32",
            "--matryoshka-dims", "384,128,64", "--hard-negatives", "1", "--eval-docs", "3000", "--json"]
    done = run(*args)  # real pairs: no --force needed at a high baseline; trained as a trial
    assert done.exit_code == 0, done.output
    assert "real pairs: training as a trial" in done.output and "mined hard negatives" in done.output
    result = json.loads(done.output[done.output.index("{\n"):])
    assert result["hard_negatives"] == 1 and result["mining"]["with_negatives"] >= 28
    report = result["heldout"]
    assert report["documents"] == 3000

    conn = loaded.conn
    val = conn.execute("SELECT doc_id::int, query FROM mrl.finetune_pairs WHERE dataset = 'real' "
                       "AND split = 'validation' ORDER BY n").fetchall()
    assert report["queries"] == len(val) > 400
    ids = sorted(str(i) for i in range(1, 3001))  # --eval-docs 3000: every document of the set, in id order
    rel = [ids.index(str(d)) for d, _ in val]  # (the same order: texts cut at 32 tokens can tie)
    base_d = corpus_vectors[0][[int(i) - 1 for i in ids]]
    base_d = base_d / np.linalg.norm(base_d, axis=1, keepdims=True)
    base_q = embedder.encode([q for _, q in val], "query")
    tuned = get_embedder(loaded.config("minilm-real"))
    body = dict(conn.execute("SELECT id::text, body FROM docs").fetchall())
    tuned_d = tuned.encode([body[i] for i in ids], "document")
    tuned_q = tuned.encode([q for _, q in val], "query")
    _, _, vt = np.linalg.svd(base_d.astype(np.float64), full_matrices=False)
    for dim in (384, 128, 64):
        got = report["recall@10"][str(dim)]
        assert abs(got["base_raw"] - _recall(base_q[:, :dim], base_d[:, :dim], rel)) < 0.003
        assert abs(got["finetuned"] - _recall(tuned_q[:, :dim], tuned_d[:, :dim], rel)) < 0.003
        r = vt[:dim].T
        assert abs(got["base_pca"] - _recall(base_q @ r, base_d @ r, rel)) < 0.003
    v = report["verdict"]
    assert v["truncate_dim"] == 128
    assert v["won"] == (report["recall@10"]["128"]["finetuned"] - report["recall@10"]["128"]["base_pca"] >= 0.01)
    assert ("pgmrl alter-set docs --config minilm-real" in done.output) == v["won"]
    assert ("does NOT beat the rotation" in done.output) == (not v["won"])


def test_generated_pairs_keep_the_guard(loaded, dsn, tmp_path):
    generate(dsn, "docs", "synthetic", queries_per_doc=1)
    r = run("finetune", "train", "--dataset", "synthetic", "--dsn", dsn, "--output", str(tmp_path / "m"),
            "--max-pairs", "8", "--batch-size", "4", "--skip-eval")
    assert r.exit_code == 1 and "--query-column" in r.output and "--force" in r.output


def test_rest_generate_from_query_column(loaded, dsn):
    from fastapi.testclient import TestClient

    from pgmrl.sidecar import create_app

    app = create_app(dsn, token="test-token-0123456789")
    app.state.model_ready = True
    with TestClient(app, headers={"Authorization": "Bearer test-token-0123456789"}) as api:
        body = {"name": "rest-real", "source": {"type": "embedding_set", "slug": "docs"},
                "config": {"query_column": "summary", "max_docs_per_query": 2}}
        r = api.post("/api/v1/fine-tuning/generate", json=body)
        assert r.status_code == 201, r.text
        got = r.json()
        assert got["config"]["method"] == "column" and got["config"]["max_docs_per_query"] == 2
        assert got["stats"]["pairs"] + sum(got["stats"]["dropped"].values()) == 3000
        both = body | {"name": "x", "config": {"query_column": "summary", "query_expr": "summary"}}
        assert api.post("/api/v1/fine-tuning/generate", json=both).status_code == 422
        bad = body | {"name": "y", "config": {"query_expr": "(SELECT 'x')"}}
        r = api.post("/api/v1/fine-tuning/generate", json=bad)
        assert r.status_code == 422 and "refused" in r.text
        missing = body | {"name": "z", "config": {"query_column": "nope"}}
        assert api.post("/api/v1/fine-tuning/generate", json=missing).status_code == 422
    app.state.db.close_all()
