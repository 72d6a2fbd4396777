"""Two-stage search against exact search, and the SQL coarse vectors against the numpy maths."""

import numpy as np
import psycopg
import pytest

from conftest import N_LOADED as N_DOCS
from helpers import make_docs_table
from pgmrl import matryoshka as mrl
from pgmrl.db import to_numpy
from pgmrl.worker import Worker

N_QUERIES = 200


def test_two_stage_agrees_with_exact(loaded, corpus_vectors):
    """Acceptance 4 at test size: >= 98% of exact top-10 ids over 200 queries (the corpus' real queries)."""
    _, queries = corpus_vectors
    agree, hits = [], 0
    for i in range(N_QUERIES):
        two = [r[0] for r in loaded.search("docs", queries[i], 10)]
        exact = [r[0] for r in loaded.search("docs", queries[i], 10, "exact")]
        assert len(two) == 10
        agree.append(mrl.agreement(two, exact, 10))
        hits += str(i + 1) in exact
    assert np.mean(agree) >= 0.98, np.mean(agree)
    assert hits / N_QUERIES > 0.8  # the relevant document is found: the vectors are the right ones


def test_exact_matches_numpy(loaded, corpus_vectors):
    docs, queries = corpus_vectors
    q = queries[7]
    got = loaded.search("docs", q, 10, "exact")
    dist = 1 - mrl.normalize(docs[:N_DOCS]) @ mrl.normalize(q)
    want = np.argsort(dist)[:10] + 1
    assert [int(i) for i, _ in got] == list(want)
    assert np.allclose([d for _, d in got], np.sort(dist)[:10], atol=1e-5)


def test_sql_coarse_vectors_match_numpy(loaded, corpus_vectors):
    docs, _ = corpus_vectors
    conn = loaded.conn
    comps = np.vstack([to_numpy(r[0]) for r in conn.execute(
        "SELECT direction FROM mrl.rotation_components c JOIN mrl.embedding_sets s ON s.id = c.set_id "
        "WHERE s.slug = 'docs' ORDER BY component")])
    assert comps.shape == (128, 384)
    assert np.allclose(comps @ comps.T, np.eye(128), atol=1e-4)  # orthonormal directions
    ref, _ = mrl.fit_rotation(docs[:N_DOCS], 128)
    assert np.allclose(np.abs((ref * comps).sum(1))[:32], 1, atol=1e-3)  # same leading directions as numpy
    rows = conn.execute("SELECT id, coarse FROM mrl_data.docs ORDER BY id LIMIT 50").fetchall()
    stored = np.vstack([to_numpy(r[1]) for r in rows])
    expected = mrl.project(docs[:50], comps)
    assert np.abs(stored - expected).max() < 2e-3  # halfvec precision


def test_coarse_strategy_and_smaller_coarse_dim(loaded, corpus_vectors):
    _, queries = corpus_vectors
    full = [r[0] for r in loaded.search("docs", queries[0], 10, "exact")]
    coarse = loaded.search("docs", queries[0], 10, "coarse")
    assert len(coarse) == 10 and mrl.agreement([r[0] for r in coarse], full, 10) >= 0.5
    small = loaded.search("docs", queries[0], 10, "two_stage", coarse_k=200, coarse_dim=64)
    assert mrl.agreement([r[0] for r in small], full, 10) >= 0.7
    assert [d for _, d in small] == sorted(d for _, d in small)


def test_coarse_k_larger_than_default_ef_search(loaded, corpus_vectors):
    """HNSW returns at most ef_search rows: two_stage must raise it so that coarse_k candidates come back."""
    _, queries = corpus_vectors
    res = loaded.search("docs", queries[3], 300, "two_stage", coarse_k=400)
    assert len(res) == 300
    assert loaded.conn.execute("SELECT current_setting('hnsw.ef_search')").fetchone()[0] == "40"


def test_search_is_exact_until_a_rotation_exists(client, dsn, corpus, embedder):
    make_docs_table(client.conn, corpus[:20])
    client.create_set("Docs", "docs", "docs", "body", truncate_dim=64)
    Worker(dsn).run(once=True)  # 20 rows < rotation_min_rows: no automatic fit
    notices = []
    client.conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    q = embedder.encode([corpus[3]["query"]], "query")[0]
    two = client.search("docs", q, 5)
    assert any("searching exactly" in n for n in notices)
    assert two == client.search("docs", q, 5, "exact")
    assert client.conn.execute("SELECT count(*) FROM mrl_data.docs WHERE coarse IS NOT NULL").fetchone()[0] == 0


def test_rotation_fitted_automatically_after_backfill(client, dsn, corpus, embedder):
    conn = client.conn
    make_docs_table(conn, corpus[:150])
    client.create_set("Docs", "docs", "docs", "body", truncate_dim=32)
    conn.execute("UPDATE mrl.embedding_sets SET rotation_min_rows = 100")
    Worker(dsn).run(once=True)
    st = client.status("docs")[0]
    assert st["rotation_fitted_at"] is not None
    assert conn.execute("SELECT count(*) FROM mrl_data.docs WHERE coarse IS NULL").fetchone()[0] == 0
    # rows embedded after the fit get their coarse vector from the stored rotation
    conn.execute("INSERT INTO docs (id, body) VALUES (1000, %s)", (corpus[500]["doc"],))
    Worker(dsn).run(once=True)
    assert conn.execute("SELECT coarse IS NOT NULL FROM mrl_data.docs WHERE id = 1000").fetchone()[0]


def test_mrl_prefix_set(client, dsn, corpus, embedder):
    """An MRL config keeps normalise(embedding[:d]) as its coarse vector, with no fit needed."""
    conn = client.conn
    conn.execute("INSERT INTO mrl.embedding_configs (name, model, dims, supports_mrl, matryoshka_dims, "
                 "default_truncate_dim) VALUES ('test-mrl', 'sentence-transformers/all-MiniLM-L6-v2', 384, true, "
                 "'{384,256,128,64}', 128)")
    make_docs_table(conn, corpus[:40])
    client.create_set("Docs", "docs", "docs", "body", config="test-mrl")
    assert client.status("docs")[0]["truncate_dim"] == 128
    Worker(dsn).run(once=True)
    emb, coarse = conn.execute("SELECT embedding, coarse FROM mrl_data.docs WHERE id = 1").fetchone()
    assert np.abs(to_numpy(coarse) - mrl.truncate(to_numpy(emb), 128)).max() < 2e-3
    q = embedder.encode([corpus[0]["query"]], "query")[0]
    assert len(client.search("docs", q, 5, coarse_dim=64)) == 5
    with pytest.raises(Exception, match="coarse_dim 100 is not available"):
        client.search("docs", q, 5, coarse_dim=100)


def test_strategies_are_named_once_each_side(client):
    from pgmrl.strategies import STRATEGIES

    assert tuple(client.conn.execute("SELECT mrl_internal._strategies()").fetchone()[0]) == STRATEGIES
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown strategy") as err:
        client.conn.execute("SELECT mrl_internal._check_strategy('fast')")
    assert err.value.diag.message_hint == "Use " + ", ".join(f"'{s}'" for s in STRATEGIES) + "."


def test_one_argument_order_and_typed_rows(loaded, corpus_vectors):
    """two_stage_search takes search's order (k, strategy, coarse_k, coarse_dim, filter); search_rows returns the
    source rows themselves, typed, with their distance, in rank order."""
    conn = loaded.conn
    q = corpus_vectors[1][4]
    exact = conn.execute("SELECT id, distance FROM mrl.search('docs', %s, 3, 'exact')", (q,)).fetchall()
    assert conn.execute("SELECT id, distance FROM mrl.two_stage_search('docs', %s, 3, 'exact')", (q,)).fetchall() == exact
    rows = conn.execute("SELECT (r.item).id, (r.item).body, r.distance, pg_typeof((r.item).id)::text "
                        "FROM mrl.search_rows(NULL::docs, 'docs', %s, 3, 'exact') r", (q,)).fetchall()
    assert [(str(r[0]), r[2]) for r in rows] == exact and rows[0][3] == "bigint"  # the key's own type
    assert rows[0][1] == conn.execute("SELECT body FROM docs WHERE id = %s", (int(exact[0][0]),)).fetchone()[0]
    conn.execute("CREATE TABLE other (id int PRIMARY KEY)")
    with pytest.raises(psycopg.errors.DatatypeMismatch, match="NULL::public.docs"):
        conn.execute("SELECT * FROM mrl.search_rows(NULL::other, 'docs', %s)", (q,))
    assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'two_stage_search' "
                        "AND pronamespace = 'mrl'::regnamespace").fetchone()[0] == 5  # one per query type, one order


def test_search_rows_reads_no_source_that_runs_code(loaded, corpus_vectors):
    """search_rows reads the source as the caller: a source with row-level security (a policy runs its owner's
    code as every reader) is refused, as for the worker and filtered searches."""
    conn = loaded.conn
    conn.execute("ALTER TABLE docs ENABLE ROW LEVEL SECURITY")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        conn.execute("SELECT * FROM mrl.search_rows(NULL::docs, 'docs', %s, 3)", (corpus_vectors[1][0],))
