"""Fine-tuning: generated pairs in the database, the 60% guard, a (tiny) MatryoshkaLoss training run that
registers an MRL config, and the REST generate endpoint."""

import json

import numpy as np
from click.testing import CliRunner
from fastapi.testclient import TestClient

from pgmrl.cli import cli
from pgmrl.embedding import get_embedder
from pgmrl.finetune import pairs as finetune
from pgmrl.sidecar import create_app


def test_query_generator_methods(corpus):
    gen = finetune.QueryGenerator().fit([r["doc"] for r in corpus[:500]])
    doc = corpus[1]["doc"]
    qs = gen.queries(doc, 4)
    assert 2 <= len(qs) <= 4 and len({q for q, _ in qs}) == len(qs)
    words = set(finetune._words(doc.lower()))
    for q, method in qs:
        assert method in finetune.METHODS
        assert 2 <= len(q.split()) <= finetune.MAX_QUERY_WORDS
        assert all(w.lower() in words for w in finetune._words(q))  # cut from the document itself
    assert gen.queries("", 4) == []


def test_batches_never_repeat_a_document():
    pairs = [(str(i % 7), f"q{i}", f"d{i % 7}") for i in range(50)]
    batches = finetune.no_duplicate_batches(pairs, 5)
    assert all(len({p[0] for p in b}) == len(b) for b in batches)
    assert sum(map(len, batches)) >= 45


def test_split_is_by_document():
    assert {finetune.split_of("doc-1", 0.2)} == {finetune.split_of("doc-1", 0.2)}
    share = np.mean([finetune.split_of(str(i), 0.2) == "validation" for i in range(5000)])
    assert 0.17 < share < 0.23


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_generate_guard_and_train(loaded, dsn, tmp_path):
    out = run("finetune", "generate", "--set", "docs", "--name", "deb", "--queries-per-doc", "2", "--dsn", dsn)
    assert out.exit_code == 0, out.output
    conn = loaded.conn
    stats = conn.execute("SELECT count(*), count(DISTINCT doc_id) FROM mrl.finetune_pairs WHERE dataset = 'deb'").fetchone()
    assert stats[1] == 3000 and 5000 <= stats[0] <= 6000
    # a document's pairs are all on one side of the split
    assert conn.execute("SELECT count(*) FROM (SELECT doc_id FROM mrl.finetune_pairs WHERE dataset = 'deb' "
                        "GROUP BY doc_id HAVING count(DISTINCT split) > 1) x").fetchone()[0] == 0
    again = run("finetune", "generate", "--set", "docs", "--name", "deb", "--dsn", dsn)
    assert again.exit_code == 1 and "exists" in again.output

    # MiniLM already finds most of these documents: the guard refuses and prints the measurement
    args = ["finetune", "train", "--dataset", "deb", "--dsn", dsn, "--name", "minilm-deb", "--output",
            str(tmp_path / "m"), "--max-pairs", "24", "--batch-size", "8", "--max-seq-length", "32",
            "--matryoshka-dims", "384,128,64", "--skip-eval", "--json"]
    refused = run(*args)
    assert refused.exit_code == 1
    assert "baseline Recall@10" in refused.output and "--force" in refused.output
    assert conn.execute("SELECT count(*) FROM mrl.embedding_configs WHERE name = 'minilm-deb'").fetchone()[0] == 0

    done = run(*args, "--force")
    assert done.exit_code == 0, done.output
    result = json.loads(done.output[done.output.index("{"):])
    assert result["steps"] == 3 and result["pairs"] <= 24
    row = conn.execute("SELECT supports_mrl, matryoshka_dims, default_truncate_dim, model FROM mrl.embedding_configs "
                       "WHERE name = 'minilm-deb'").fetchone()
    assert row[:3] == (True, [384, 128, 64], 128) and row[3] == str((tmp_path / "m").resolve())
    vec = get_embedder(loaded.config("minilm-deb")).encode(["a query"], "query")
    assert vec.shape == (1, 384) and abs(np.linalg.norm(vec) - 1) < 1e-5
    # the new config is a valid MRL model for a set (prefix truncation accepted)
    conn.execute("CREATE TABLE tiny (id int PRIMARY KEY, body text)")
    loaded.create_set("Tiny", "tiny", "tiny", "body", config="minilm-deb", truncate_dim=64)


def test_rest_generate(loaded, dsn):
    app = create_app(dsn, token="test-token-0123456789")
    app.state.model_ready = True
    with TestClient(app, headers={"Authorization": "Bearer test-token-0123456789"}) as api:
        body = {"name": "from-rest", "source": {"type": "embedding_set", "slug": "docs"},
                "config": {"queries_per_doc": 3}}
        r = api.post("/api/v1/fine-tuning/generate", json=body)
        assert r.status_code == 201, r.text
        got = r.json()
        assert got["config"]["queries_per_doc"] == 3 and got["stats"]["documents"] == 3000
        assert got["stats"]["train"] + got["stats"]["validation"] == got["stats"]["pairs"]
        assert api.post("/api/v1/fine-tuning/generate", json=body).status_code == 409
        assert api.post("/api/v1/fine-tuning/generate", json=body | {"name": "x", "source": {"slug": "nope"}}).status_code == 404
        assert api.post("/api/v1/fine-tuning/generate", json=body | {"name": "Bad Name"}).status_code == 422
    app.state.db.close_all()
