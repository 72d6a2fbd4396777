"""Acceptance 3: after any mix of INSERT/UPDATE/DELETE and a worker drain, the vectors match the current texts."""

import subprocess
import sys
import threading

import numpy as np
import psycopg
import pytest

from helpers import check_invariant, cosine, make_docs_table, pending
from pgmrl.db import connect, to_numpy
from pgmrl.worker import Worker


def _queue_len(conn):
    return pending(conn)


def test_mixed_changes_end_in_exact_vectors(client, dsn, embedder, corpus):
    conn = client.conn
    make_docs_table(conn, corpus[:30])
    client.create_set("Docs", "docs", "docs", "body")
    assert _queue_len(conn) == 30  # backfill queued every row
    Worker(dsn).run(once=True)
    check_invariant(conn, "docs", "body")

    new = corpus[30:45]
    conn.execute("INSERT INTO docs (id, package, summary, body) SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])",
                 (list(range(31, 46)), [r["id"] for r in new], [r["query"] for r in new], [r["doc"] for r in new]))
    conn.execute("UPDATE docs SET body = body || ' Also works offline.' WHERE id IN (1, 2, 31)")
    conn.execute("UPDATE docs SET body = NULL WHERE id = 3")
    conn.execute("UPDATE docs SET body = '' WHERE id = 32")
    conn.execute("DELETE FROM docs WHERE id IN (4, 33)")
    conn.execute("INSERT INTO docs (id, package, body) VALUES (100, 'empty', NULL), (101, 'blank', '')")
    conn.execute("UPDATE docs SET id = 200 WHERE id = 5")
    before = _queue_len(conn)
    conn.execute("UPDATE docs SET summary = 'other column', section = 'web' WHERE id BETWEEN 6 AND 20")
    assert _queue_len(conn) == before, "an UPDATE of other columns must not queue a re-embedding"

    w = Worker(dsn, batch_size=7)
    w.run(once=True)
    assert w.failed == 0 and w.processed > 0
    counts = check_invariant(conn, "docs", "body")
    assert counts["vectors"] == conn.execute("SELECT count(*) FROM docs WHERE coalesce(body, '') <> ''").fetchone()[0]

    rows = conn.execute("SELECT d.body, v.embedding FROM docs d JOIN mrl_data.docs v USING (id) ORDER BY id").fetchall()
    reference = embedder.model.encode([r[0] for r in rows], normalize_embeddings=True)
    sims = cosine(np.vstack([to_numpy(r[1]) for r in rows]), reference)
    assert sims.min() >= 0.999, f"lowest cosine to SentenceTransformer.encode: {sims.min()}"


def test_expression_text_and_repeat_updates(client, dsn, embedder, corpus):
    conn = client.conn
    make_docs_table(conn, corpus[:10])
    expr = "summary || ': ' || body"
    client.create_set("Docs", "docs", "docs", expr)
    for i in range(3):  # the same row changed three times before the worker runs
        conn.execute("UPDATE docs SET summary = %s WHERE id = 1", (f"version {i}",))
    Worker(dsn).run(once=True)
    check_invariant(conn, "docs", expr)
    text, emb = conn.execute(f"SELECT {expr}, v.embedding FROM docs d JOIN mrl_data.docs v USING (id) WHERE id = 1").fetchone()
    assert text.startswith("version 2: ")
    assert cosine(to_numpy(emb), embedder.model.encode(text, normalize_embeddings=True)) >= 0.999


def test_update_while_embedding_is_not_lost(client, dsn, embedder, corpus):
    """A committed UPDATE that lands while the worker embeds the old text must end with the new text embedded."""
    conn = client.conn
    make_docs_table(conn, corpus[:8])
    client.create_set("Docs", "docs", "docs", "body")
    fired = threading.Event()

    class Racing:
        config = embedder.config

        def encode(self, texts, kind="document"):
            if not fired.is_set():
                fired.set()
                with psycopg.connect(dsn, autocommit=True) as other:  # a writer commits meanwhile
                    other.execute("UPDATE docs SET body = 'rewritten while the worker was busy' WHERE id = 2")
            return embedder.encode(texts, kind)

        def truncated(self, texts, kind="document"):
            return embedder.truncated(texts, kind)

    w = Worker(dsn, embedder_for=lambda cfg: Racing())
    w.run(once=True)
    assert fired.is_set()
    check_invariant(conn, "docs", "body")
    h = conn.execute("SELECT content_hash FROM mrl_data.docs WHERE id = 2").fetchone()[0]
    assert h == conn.execute("SELECT md5('rewritten while the worker was busy')").fetchone()[0]


def test_two_workers_share_the_queue(client, dsn, embedder, corpus):
    conn = client.conn
    make_docs_table(conn, corpus[:120])
    client.create_set("Docs", "docs", "docs", "body")
    workers = [Worker(dsn, batch_size=8) for _ in range(2)]
    threads = [threading.Thread(target=w.run, kwargs={"once": True}) for w in workers]
    for t in threads:
        t.start()
    # a writer keeps changing rows meanwhile
    with psycopg.connect(dsn, autocommit=True) as other:
        for i in range(1, 40):
            other.execute("UPDATE docs SET body = body || ' (edited)' WHERE id = %s", (i,))
    for t in threads:
        t.join(timeout=300)
    assert all(w.processed > 0 for w in workers), [w.processed for w in workers]
    Worker(dsn).run(once=True)  # final drain of what the writer queued late
    check_invariant(conn, "docs", "body")


def test_serve_once_cli(client, dsn, corpus):
    conn = client.conn
    make_docs_table(conn, corpus[:5])
    client.create_set("Docs", "docs", "docs", "body")
    out = subprocess.run([sys.executable, "-m", "pgmrl.cli", "serve", "--once", "--dsn", dsn, "--batch-size", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "embedded 5 queue item(s)" in out.stderr
    check_invariant(conn, "docs", "body")


def test_nothing_lost_without_a_worker(client, corpus):
    conn = client.conn
    make_docs_table(conn, corpus[:3])
    client.create_set("Docs", "docs", "docs", "body", on_update=False)
    conn.execute("UPDATE docs SET body = 'x' WHERE id = 1")  # on_update off: not queued
    assert _queue_len(conn) == 3
    st = client.status("docs")[0]
    assert (st["rows"], st["embedded"], st["queued"]) == (3, 0, 3)


def test_drop_set_removes_only_its_parts(client, dsn, corpus):
    conn = client.conn
    make_docs_table(conn, corpus[:4])
    client.create_set("Docs", "docs", "docs", "body")
    client.create_set("Summaries", "sums", "docs", "summary")
    client.drop_set("docs")
    assert conn.execute("SELECT to_regclass('mrl_data.docs')").fetchone()[0] is None
    assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'mrl_docs_%'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM mrl.queue q JOIN mrl.embedding_sets s ON s.id = q.set_id "
                        "WHERE s.slug = 'sums'").fetchone()[0] == 4
    assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 4
    with connect(dsn, autocommit=True) as c2:
        c2.execute("INSERT INTO docs (id, body, summary) VALUES (99, 'new', 'new')")
    assert _queue_len(conn) == 5


def test_alter_model_blue_green(client, dsn, corpus, embedder):
    """Changing the model/coarse dimension re-embeds in the background; the old vectors serve until the switch."""
    conn = client.conn
    conn.execute("INSERT INTO mrl.embedding_configs (name, model, dims, supports_mrl, matryoshka_dims, "
                 "default_truncate_dim) VALUES ('test-mrl', 'sentence-transformers/all-MiniLM-L6-v2', 384, true, "
                 "'{384,256,128,64}', 128)")
    make_docs_table(conn, corpus[:40])
    client.create_set("Docs", "docs", "docs", "body", truncate_dim=32)
    Worker(dsn).run(once=True)
    msg = conn.execute("SELECT mrl.alter_embedding_set('docs', config => 'test-mrl', truncate_dim => 64)").fetchone()[0]
    assert "old vectors serve" in msg
    with pytest.raises(psycopg.errors.ObjectInUse):
        conn.execute("SELECT mrl.alter_embedding_set('docs', truncate_dim => 16)")
    conn.execute("UPDATE docs SET body = 'changed during the re-embedding' WHERE id = 1")
    q = embedder.encode([corpus[2]["query"]], "query")[0]
    assert len(client.search("docs", q, 5)) == 5  # still served by the old vectors
    assert client.status("docs")[0]["coarse_method"] == "rotation"
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT mrl.switch_embedding_set('docs')")
    Worker(dsn).run(once=True)  # embeds both, then switches the replacement in
    st = client.status("docs")[0]
    assert (st["config"], st["coarse_method"], st["truncate_dim"], st["embedded"]) == ("test-mrl", "prefix", 64, 40)
    assert not client.set_exists("mrl_next_1") and len(client.status()) == 1
    assert conn.execute("SELECT mrl.vectors_table('docs')::text").fetchone()[0] == "mrl_data.docs"
    check_invariant(conn, "docs", "body")
    assert conn.execute("SELECT count(*) FROM mrl_data.docs WHERE coarse IS NULL").fetchone()[0] == 0
    assert len(client.search("docs", q, 5)) == 5
    conn.execute("INSERT INTO docs (id, body) VALUES (999, 'after the switch')")  # triggers follow the new set
    Worker(dsn).run(once=True)
    check_invariant(conn, "docs", "body")
