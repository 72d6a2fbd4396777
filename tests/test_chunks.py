"""Chunked sets on the real server and model: every chunk of every current row and nothing else (under INSERT,
UPDATE, DELETE and kill -9 of the worker), chunks never longer than the model's window, a 50,000-word row embedded
in full, a text change re-embedding only its row, and searches returning each row once."""

import random
import re
import signal
import time

import numpy as np
import psycopg
import pytest

from helpers import check_chunks
from pgmrl import chunking
from pgmrl.db import to_numpy
from pgmrl.worker import Worker

TOKENS = {"method": "tokens", "size": 64, "overlap": 16}


def long_texts(corpus, n, parts=4, seed=1):
    """n texts, each the concatenation of `parts` real descriptions (paragraphs)."""
    rng = random.Random(seed)
    return ["\n\n".join(corpus[j]["doc"] for j in rng.sample(range(len(corpus)), parts)) for _ in range(n)]


@pytest.fixture
def chunked(client, corpus, embedder):
    conn = client.conn
    conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, body text, section text DEFAULT 'misc')")
    with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as cp:
        for i, t in enumerate(long_texts(corpus, 60)):
            cp.write_row((i + 1, t))
    client.create_set("Docs", "docs", "docs", "body", truncate_dim=128, chunking=TOKENS)
    client.run_worker(once=True)
    return client


def test_splitters_never_exceed_the_window(embedder, corpus):
    text = "\n\n".join(r["doc"] for r in corpus[:40])
    spans = embedder.token_spans(text)
    budget = embedder.token_budget()
    assert budget == 254  # MiniLM: 256 less [CLS] and [SEP]
    for cut in (chunking.Chunking("tokens", 256, 32), chunking.Chunking("tokens", 64, 16),
                chunking.Chunking("paragraphs", 128, 16), chunking.Chunking("sections", 128, 16)):
        parts = chunking.fit(text, chunking.split(text, cut, spans, budget), spans, embedder.count_tokens, budget)
        counts = embedder.count_tokens([p.text for p in parts])
        assert max(counts) <= min(cut.size, budget) + 2, (cut, max(counts))
        assert max(counts) <= budget
        assert parts[0].start == 0 and parts[-1].end == len(text.rstrip())
        assert all(p.text == text[p.start:p.end] for p in parts)
        if cut.method == "tokens":  # windows overlap by `overlap` tokens
            assert all(b.start < a.end for a, b in zip(parts, parts[1:]))
        else:  # paragraphs: chunks end at a sentence's end
            assert all(text[p.end - 1] in ".!?;)\"'" or p.end == len(text) or len(
                embedder.count_tokens([p.text])) for p in parts)
        if cut.method == "sections":  # a chunk crosses a paragraph break only after short whole paragraphs
            starts = {p.start for p in parts}
            paragraph_starts = [m.end() for m in re.finditer(r"\n\n", text)]
            for p in parts:
                if "\n\n" in p.text:
                    head = p.text[:p.text.rindex("\n\n")]
                    assert len(embedder.token_spans(head)) < cut.size // 4, (head, p.text)
            # the real descriptions here are long enough to be their own sections: each starts a chunk
            assert sum(s in starts for s in paragraph_starts) >= 0.9 * len(paragraph_starts)
        elif cut.method == "paragraphs":  # packed: most chunks hold the end of one description and the next
            assert sum("\n\n" in p.text for p in parts) > len(parts) // 2


def test_invariant_under_insert_update_delete(chunked, corpus, embedder):
    conn = chunked.conn
    before = check_chunks(conn, "docs", "body", embedder=embedder)
    assert before["chunks"] > 3 * 60  # the texts are several windows long
    stamps = dict(conn.execute("SELECT id || ':' || chunk, embedded_at FROM mrl_data.docs WHERE id <> 5").fetchall())
    extra = long_texts(corpus, 5, seed=2)
    conn.execute("INSERT INTO docs (id, body) SELECT 100 + g, t FROM unnest(%s::text[]) WITH ORDINALITY u(t, g)", (extra,))
    conn.execute("UPDATE docs SET body = left(body, 200) WHERE id = 5")  # fewer chunks: the others go
    conn.execute("UPDATE docs SET body = '' WHERE id = 6")
    conn.execute("UPDATE docs SET body = body || body WHERE id = 7")
    conn.execute("DELETE FROM docs WHERE id IN (8, 9)")
    chunked.run_worker(once=True)
    check_chunks(conn, "docs", "body", embedder=embedder)
    assert conn.execute("SELECT count(*) FROM mrl_data.docs WHERE id = 5").fetchone()[0] <= 2
    # a text change re-embeds only its row's chunks
    after = dict(conn.execute("SELECT id || ':' || chunk, embedded_at FROM mrl_data.docs").fetchall())
    changed = {k.split(":")[0] for k, t in stamps.items() if after.get(k) != t}
    assert changed <= {"6", "7", "8", "9"}, changed
    status = chunked.status("docs")[0]
    assert status["embedded"] == status["rows"] - 1  # rows with chunks (row 6 is empty)


def test_search_returns_each_row_once_with_its_best_chunk(chunked, corpus, embedder):
    conn = chunked.conn
    body = conn.execute("SELECT body FROM docs WHERE id = 11").fetchone()[0]
    last = body.split("\n\n")[-1]  # the text's last description, far past the model's window
    q = embedder.encode([last[:300]], kind="query")[0]
    for strategy in ("two_stage", "exact", "coarse"):
        rows = chunked.search("docs", q, k=20, strategy=strategy)
        ids = [r[0] for r in rows]
        assert len(ids) == 20 and len(set(ids)) == 20, strategy  # k rows, each once
        assert ids[0] == "11", strategy
        assert [r[1] for r in rows] == sorted(r[1] for r in rows)
    best = chunked.search_chunks("docs", q, k=3)[0]
    assert best["id"] == "11" and best["end_char"] > body.index(last)  # the matching chunk is past the window
    assert body[best["start_char"]:best["end_char"]] in body
    # k rows whenever k rows match, even when one row's chunks would fill the candidates
    assert len(chunked.search("docs", q, k=60, coarse_k=60)) == 60
    # filters still work
    conn.execute("UPDATE docs SET section = 'web' WHERE id IN (3, 4, 11)")
    got = {r[0] for r in chunked.search("docs", q, k=10, filter={"section": "web"})}
    assert got == {"3", "4", "11"}
    # the source rows themselves, each once
    n = conn.execute("SELECT count(*), count(DISTINCT (r.item).id) FROM mrl.search_rows(NULL::docs, 'docs', %s, 15) r",
                     (q,)).fetchone()
    assert n == (15, 15)
    # hybrid: each row once too
    hits = chunked.hybrid_search("docs", last[:300], k=10, vector=q)
    assert hits[0]["id"] == "11" and len({h["id"] for h in hits}) == 10


def test_a_50000_word_row_is_embedded_in_full(client, corpus, embedder):
    conn = client.conn
    words = " ".join(r["doc"] for r in corpus[1000:3000]).split()[:50_000]
    needle = ("Quokkawatch records sightings of quokkas on Rottnest Island, tags each marsupial by GPS position and "
              "photo, and plots their burrows on a map of the island.")
    text = " ".join(words) + " " + needle
    assert len(text.split()) >= 50_000
    conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, body text)")
    conn.execute("INSERT INTO docs VALUES (1, %s), (2, %s)", (text, corpus[7]["doc"]))
    client.create_set("Docs", "docs", "docs", "body", chunking={"method": "paragraphs"})
    w = Worker(client.dsn, max_batch_tokens=4096)
    w.run(once=True)
    assert w.failed == 0
    counts = check_chunks(conn, "docs", "body", embedder=embedder)
    assert counts["chunks"] > 50_000 / 254
    end = conn.execute("SELECT max(end_char) FROM mrl_data.docs WHERE id = 1").fetchone()[0]
    assert end == len(text)
    q = embedder.encode(["software to track quokka sightings on Rottnest Island"], kind="query")[0]
    best = client.search_chunks("docs", q, k=1)[0]
    assert best["id"] == "1" and best["end_char"] > text.index(needle)  # found by its last words


@pytest.mark.slow
def test_kill_9_of_the_worker_keeps_the_chunk_invariant(client, dsn, corpus, embedder):
    from test_faults import finish, start_worker, wait_for

    conn = client.conn
    conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, body text)")
    with conn.cursor().copy("COPY docs FROM STDIN") as cp:
        for i, t in enumerate(long_texts(corpus, 400, parts=2, seed=3)):
            cp.write_row((i + 1, t))
    client.create_set("Docs", "docs", "docs", "body", truncate_dim=128, chunking=TOKENS)

    def stored():
        return conn.execute("SELECT count(DISTINCT id) FROM mrl_data.docs").fetchone()[0]

    kills = 0
    rng = random.Random(5)
    for round_ in range(4):
        before = stored()
        proc = start_worker(dsn)
        wait_for(lambda before=before, proc=proc: stored() > before or proc.poll() is not None, 120,
                 "the worker to make progress")
        conn.execute("UPDATE docs SET body = body || ' more.' WHERE id = ANY(%s)",
                     (rng.sample(range(1, 401), 20),))
        conn.execute("DELETE FROM docs WHERE id = %s", (round_ + 1,))
        time.sleep(rng.uniform(0.2, 1.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        finish(proc, 30)
    assert kills >= 3
    rc, err = finish(start_worker(dsn, "--once"), 600)
    assert rc == 0, err
    check_chunks(conn, "docs", "body", embedder=embedder)


def test_chunking_is_checked_and_changed_blue_green(chunked, embedder):
    conn = chunked.conn
    for bad, state in (('{"method": "sentences"}', "22023"), ('{"method": "tokens", "size": 300}', "22023"),
                       ('{"method": "tokens", "size": 64, "overlap": 40}', "22023")):
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT mrl.create_embedding_set('X', 'x', 'docs', 'body', chunking => %s)", (bad,))
        assert info.value.sqlstate == state
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute("SELECT mrl.create_embedding_set('X', 'x', 'docs', 'body', mode => 'sync', chunking => '\"tokens\"')")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("UPDATE mrl.embedding_sets SET chunking = NULL WHERE slug = 'docs'")
    conn.execute("""SELECT mrl.alter_embedding_set('docs', chunking => '"none"')""")
    chunked.run_worker(once=True)  # embeds the replacement and switches it in
    row = conn.execute("SELECT chunking, replaces FROM mrl.embedding_sets WHERE slug = 'docs'").fetchone()
    assert row == (None, None)
    assert conn.execute("SELECT count(*) = count(DISTINCT id) FROM mrl_data.docs").fetchone()[0]
    assert conn.execute("SELECT to_regclass('mrl_words.docs_fts') IS NOT NULL AND mrl.words_table('docs') = 'mrl_words.docs'::regclass").fetchone()[0]
    q = embedder.encode(["a tool"], kind="query")[0]
    assert len(chunked.search("docs", np.asarray(q), k=5)) == 5
    conn.execute("""SELECT mrl.alter_embedding_set('docs', chunking => '{"method": "sections", "size": 128}')""")
    chunked.run_worker(once=True)
    assert conn.execute("SELECT chunking ->> 'method' FROM mrl.embedding_sets WHERE slug = 'docs'").fetchone()[0] == "sections"
    check_chunks(conn, "docs", "body", embedder=embedder)


def test_set_embeddings_of_a_chunked_set_are_the_first_chunks(chunked):
    conn = chunked.conn
    vt = conn.execute("SELECT mrl.vectors_table('docs')::text").fetchone()[0]
    first = {str(i): e for i, e in conn.execute(f"SELECT id, embedding FROM {vt} WHERE chunk = 0 AND id <= 5")}
    got = conn.execute("SELECT id, embedding FROM mrl.set_embeddings('docs', ARRAY['1', '2', '3', '4', '5'])").fetchall()
    # (the stored halfvec, read back as the vector the function returns)
    assert len(got) == 5 and all(np.array_equal(to_numpy(e), to_numpy(first[i])) for i, e in got)
    assert conn.execute(f"SELECT count(*) FROM {vt} WHERE id <= 5").fetchone()[0] > 5  # there were other chunks
