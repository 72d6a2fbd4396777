"""`pgmrl eval` and its metrics, and `pgmrl load-vectors` (bring your own vectors)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import make_docs_table
from pgmrl import evaluate
from pgmrl.cli import cli


def test_metrics_by_hand():
    ranked = ["a", "b", "c", "d"]
    assert evaluate.recall_at(ranked, {"b", "z"}, 1) == 0
    assert evaluate.recall_at(ranked, {"b", "z"}, 10) == 0.5
    assert evaluate.mrr_at(ranked, {"c"}) == pytest.approx(1 / 3)
    assert evaluate.mrr_at(ranked, {"z"}) == 0
    # one relevant at rank 2: DCG 1/log2(3), ideal 1
    assert evaluate.ndcg_at(ranked, {"b"}) == pytest.approx(1 / np.log2(3))
    # two relevant at ranks 1 and 3: (1 + 1/2) / (1 + 1/log2(3))
    assert evaluate.ndcg_at(ranked, {"a", "c"}) == pytest.approx(1.5 / (1 + 1 / np.log2(3)))
    assert evaluate.agreement_at(["a", "x"], ["a", "b"], 2) == 0.5
    res = evaluate.score({"exact": [["a", "b"]], "two_stage": [["b", "q"]]}, [{"a"}])
    assert res[0].metrics["agreement@10"] == 1.0 and res[1].metrics["agreement@10"] == 0.5
    assert res[1].metrics["recall@10"] == 0 and res[0].metrics["mrr@10"] == 1


def run(*args, dsn):
    out = CliRunner().invoke(cli, [*args, "--dsn", dsn], catch_exceptions=False)
    return out


def test_eval_command(loaded, dsn, corpus, corpus_vectors, embedder, tmp_path):
    _, queries = corpus_vectors
    qfile = tmp_path / "q.jsonl"
    with open(qfile, "w") as f:
        for i in range(40):
            f.write(json.dumps({"query": corpus[i]["query"], "relevant": [i + 1]}) + "\n")
    out = run("eval", "--set", "docs", "--queries", str(qfile), "--json", dsn=dsn)
    assert out.exit_code == 0, out.output
    res = {r["strategy"]: r for r in json.loads(out.output)["results"]}
    assert set(res) == {"exact", "two_stage", "text", "hybrid"}  # queries with text: full-text and hybrid too
    assert res["exact"]["agreement@10"] == 1.0 and res["two_stage"]["agreement@10"] >= 0.95
    assert "agreement@10" not in res["hybrid"] and 0 < res["text"]["recall@10"] <= 1
    assert res["hybrid"]["recall@10"] > 0.5
    # the same numbers from numpy: exact cosine ranking of the embedded queries over the stored documents
    docs = corpus_vectors[0][:3000]
    qv = embedder.encode([corpus[i]["query"] for i in range(40)], "query")
    order = np.argsort(-(docs @ qv.T), axis=0)
    want = np.mean([(i in order[:10, i]) for i in range(40)])
    assert res["exact"]["recall@10"] == pytest.approx(want)
    assert res["exact"]["recall@1"] <= res["exact"]["recall@10"] <= res["exact"]["recall@100"]

    # precomputed query vectors (the corpus' own) and a table, with an index strategy
    loaded.conn.execute("SELECT mrl.create_full_index('docs')")
    np.save(tmp_path / "qv.npy", queries[:40])
    out = run("eval", "--set", "docs", "--queries", str(qfile), "--query-vectors", str(tmp_path / "qv.npy"),
              "--strategy", "hnsw", dsn=dsn)
    assert out.exit_code == 0, out.output
    assert "hnsw" in out.output and "recall@10" in out.output and "ndcg@10" in out.output

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "x"}\n')
    out = CliRunner().invoke(cli, ["eval", "--set", "docs", "--queries", str(bad), "--dsn", dsn])
    assert out.exit_code == 1 and '"relevant" must be a non-empty list' in out.output


def test_load_vectors_command(client, dsn, corpus, corpus_vectors, tmp_path):
    docs = corpus_vectors[0]
    make_docs_table(client.conn, corpus[:20])
    client.conn.execute("UPDATE docs SET body = '' WHERE id = 20")
    client.create_set("Docs", "docs", "docs", "body")
    np.save(tmp_path / "v.npy", docs[:10])
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in range(1, 11)))
    out = run("load-vectors", "docs", "--vectors", str(tmp_path / "v.npy"), "--ids", str(tmp_path / "ids.txt"), dsn=dsn)
    assert out.exit_code == 0 and "stored 10 of 10" in out.output, out.output
    with open(tmp_path / "v.jsonl", "w") as f:
        for i in range(10, 20):
            f.write(json.dumps({"id": i + 1, "embedding": docs[i].tolist()}) + "\n")
    out = run("load-vectors", "docs", "--jsonl", str(tmp_path / "v.jsonl"), dsn=dsn)
    assert "stored 9 of 10" in out.output and "no text" in out.output, out.output
    st = client.status("docs")[0]
    assert st["embedded"] == 19 and st["queued"] == 0
    stored = client.conn.execute("SELECT embedding FROM mrl_data.docs WHERE id = 15").fetchone()[0]
    assert np.allclose(np.asarray(stored.to_list()), docs[14], atol=1e-6)  # stored as given

    np.save(tmp_path / "w.npy", docs[:3, :100])
    (tmp_path / "ids3.txt").write_text("1\n2\n3\n")
    out = CliRunner().invoke(cli, ["load-vectors", "docs", "--vectors", str(tmp_path / "w.npy"), "--ids",
                                   str(tmp_path / "ids3.txt"), "--dsn", dsn])
    assert out.exit_code == 1 and "needs (n, 384)" in out.output
