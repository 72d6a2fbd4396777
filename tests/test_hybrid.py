"""Hybrid search (full-text words fused with two-stage dense search) on the real server and model: the full-text
words follow the texts, a row whose only match is a word no other row has is found first, and the ranks and
scores are those of reciprocal rank fusion."""

import psycopg
import pytest

from helpers import make_docs_table

N = 400


@pytest.fixture
def hybrid(client, corpus, embedder):
    make_docs_table(client.conn, corpus[:N])
    client.create_set("Docs", "docs", "docs", "package || ': ' || body", truncate_dim=128)
    client.run_worker(once=True)
    return client


def test_a_unique_word_is_found_first(hybrid, embedder):
    conn = hybrid.conn
    conn.execute("UPDATE docs SET body = body || ' Also known internally as zqxwvortex.' WHERE id = 123")
    hybrid.run_worker(once=True)
    assert conn.execute("SELECT count(*) FROM mrl_words.docs WHERE tsv @@ to_tsquery('english', 'zqxwvortex')"
                        ).fetchone()[0] == 1
    q = embedder.encode(["zqxwvortex"], kind="query")[0]
    rows = conn.execute("SELECT id, score, dense_rank, text_rank FROM mrl.hybrid_search('docs', 'zqxwvortex', %s, 5)",
                        (q,)).fetchall()
    assert rows[0][0] == "123" and rows[0][3] == 1
    assert len(rows) == 5  # the dense leg fills the rest
    # the fused score is RRF's
    for _id, score, dr, tr in rows:
        expect = (1 / (60 + dr) if dr else 0) + (1 / (60 + tr) if tr else 0)
        assert score == pytest.approx(expect)
    # dense alone does not find it first: the word means nothing to the model
    assert hybrid.search("docs", q, k=1)[0][0] != "123"
    assert [r[0] for r in hybrid.search("docs", "zqxwvortex", k=5, mode="text")] == ["123"]
    assert hybrid.search("docs", "zqxwvortex", k=5, mode="hybrid")[0][0] == "123"


def test_full_text_follows_updates_and_deletes(hybrid):
    conn = hybrid.conn
    conn.execute("UPDATE docs SET body = 'a brand new text about flibbertigibbet' WHERE id = 7")
    hybrid.run_worker(once=True)
    text = conn.execute("SELECT id FROM mrl.text_search('docs', 'flibbertigibbet')").fetchall()
    assert text == [("7",)]
    conn.execute("UPDATE docs SET body = 'nothing special' WHERE id = 7")
    hybrid.run_worker(once=True)
    assert conn.execute("SELECT id FROM mrl.text_search('docs', 'flibbertigibbet')").fetchall() == []
    conn.execute("DELETE FROM docs WHERE id = 8")
    pkg = conn.execute("SELECT package FROM docs WHERE id = 9").fetchone()[0]
    assert ("9",) in conn.execute("SELECT id FROM mrl.text_search('docs', %s)", (pkg,)).fetchall()
    # every row with text has its words, current
    assert conn.execute("SELECT count(*) FROM mrl_data.docs v JOIN docs d USING (id) LEFT JOIN mrl_words.docs w USING (id) "
                        "WHERE w.tsv IS DISTINCT FROM to_tsvector('english', d.package || ': ' || d.body)").fetchone()[0] == 0
    # and nothing else: the words follow the vectors (deleted with them)
    assert conn.execute("SELECT count(*) FROM mrl_words.docs").fetchone()[0] == \
        conn.execute("SELECT count(*) FROM mrl_data.docs").fetchone()[0]


def test_websearch_syntax_filter_and_weights(hybrid, embedder):
    conn = hybrid.conn
    conn.execute("UPDATE docs SET section = 'web' WHERE id <= 200")
    conn.execute("UPDATE docs SET body = body || ' quuxplorer' WHERE id IN (5, 250)")
    hybrid.run_worker(once=True)
    ids = {r[0] for r in conn.execute("SELECT id FROM mrl.text_search('docs', 'quuxplorer')")}
    assert ids == {"5", "250"}
    q = embedder.encode(["quuxplorer"], kind="query")[0]
    rows = conn.execute("SELECT id, text_rank FROM mrl.hybrid_search('docs', 'quuxplorer', %s, 3, "
                        "filter => '{\"section\": \"web\"}')", (q,)).fetchall()
    assert rows[0] == ("5", 1) and "250" not in {r[0] for r in rows}
    # -word excludes rows holding it
    pkg5 = conn.execute("SELECT package FROM docs WHERE id = 5").fetchone()[0]
    ids = {r[0] for r in conn.execute("SELECT id FROM mrl.text_search('docs', %s)", (f'quuxplorer -"{pkg5}"',))}
    assert "5" not in ids and "250" in ids
    # text weight 0: dense order alone, with no text ranks
    rows = conn.execute("SELECT id, text_rank FROM mrl.hybrid_search('docs', 'quuxplorer', %s, 5, text_weight => 0)",
                        (q,)).fetchall()
    assert [r[0] for r in rows] == [r[0] for r in hybrid.search("docs", q, k=5)] and {r[1] for r in rows} == {None}
    # dense weight 0 needs no vector (nothing is embedded)
    rows = conn.execute("SELECT id FROM mrl.hybrid_search('docs', 'quuxplorer', NULL, 5, dense_weight => 0)").fetchall()
    assert {r[0] for r in rows} == {"5", "250"}
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT * FROM mrl.hybrid_search('docs', 'x', %s, 5, rrf_k => -1)", (q,))


def test_language_per_set(client, corpus, embedder):
    make_docs_table(client.conn, corpus[:50])
    client.conn.execute("UPDATE docs SET body = 'glimmerings of zorbing' WHERE id = 1")
    client.conn.execute("SELECT mrl.create_embedding_set('S', 'simple_docs', 'docs', 'body', "
                        "text_search_config => 'simple')")
    client.run_worker(once=True)
    # 'simple' does not stem: "glimmering" does not match "glimmerings" (english would)
    assert client.conn.execute("SELECT count(*) FROM mrl.text_search('simple_docs', 'glimmering')").fetchone()[0] == 0
    assert client.conn.execute("SELECT id FROM mrl.text_search('simple_docs', 'glimmerings')").fetchall() == [("1",)]
    with pytest.raises(psycopg.errors.UndefinedObject):
        client.conn.execute("SELECT mrl.create_embedding_set('S', 'bad_docs', 'docs', 'body', "
                            "text_search_config => 'klingon')")


def test_cli_and_rest(hybrid, dsn, embedder):
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from pgmrl.cli import cli
    from pgmrl.sidecar import create_app

    conn = hybrid.conn
    conn.execute("UPDATE docs SET body = body || ' snorkelwhistle' WHERE id = 42")
    hybrid.run_worker(once=True)
    out = CliRunner().invoke(cli, ["search", "docs", "snorkelwhistle", "--hybrid", "-k", "3", "--dsn", dsn],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    ranked = [line.split() for line in out.output.splitlines() if line.split() and line.split()[0].isdigit()]
    first = ranked[0]
    assert first[0] == "1" and first[-1] == "42" and first[3] == "1"  # rank 1, text rank 1, id 42
    out = CliRunner().invoke(cli, ["search", "docs", "snorkelwhistle", "--text-only", "--dsn", dsn],
                             catch_exceptions=False)
    assert [line.split()[-1] for line in out.output.splitlines() if line.split()[0].isdigit()] == ["42"]
    app = create_app(dsn, token="tok")
    app.state.model_ready = True
    with TestClient(app, headers={"Authorization": "Bearer tok"}) as tc:
        r = tc.get("/api/v1/search", params={"q": "snorkelwhistle", "set": "docs", "mode": "hybrid", "k": 3})
        assert r.status_code == 200, r.text
        res = r.json()
        assert res["ids"][0] == "42" and res["results"][0]["text_rank"] == 1 and len(res["ids"]) == 3
        r = tc.get("/api/v1/search", params={"q": "snorkelwhistle", "set": "docs", "mode": "text"})
        assert r.json()["ids"] == ["42"]
        assert tc.get("/api/v1/search", params={"q": "x", "set": "docs", "mode": "bm25"}).status_code == 422
    app.state.db.close_all()
