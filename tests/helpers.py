"""Helpers shared by the tests (not fixtures)."""

from __future__ import annotations

import numpy as np
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def make_docs_table(conn, records, table: str = "docs") -> None:
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, package text, summary text, body text, "
                 "section text DEFAULT 'misc')")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} (id, package, summary, body) VALUES (%s, %s, %s, %s)",
                        [(i + 1, r["id"], r["query"], r["doc"]) for i, r in enumerate(records)])


def check_invariant(conn, slug: str, text_expr: str, table: str = "docs") -> dict:
    """The sync invariant: one vector per row with non-empty text, hash = md5(text); none otherwise; queue empty
    apart from dead-lettered items. Returns counts; raises AssertionError with the offending keys."""
    vt = conn.execute("SELECT mrl.vectors_table(%s)::text", (slug,)).fetchone()[0]
    missing = conn.execute(
        f"SELECT t.id FROM {table} t LEFT JOIN {vt} v ON v.id = t.id "
        f"WHERE coalesce(({text_expr})::text, '') <> '' AND (v.id IS NULL OR v.content_hash <> md5(({text_expr})::text))"
    ).fetchall()
    extra = conn.execute(
        f"SELECT v.id FROM {vt} v LEFT JOIN {table} t ON t.id = v.id "
        f"WHERE t.id IS NULL OR coalesce(({text_expr})::text, '') = ''").fetchall()
    queued = pending(conn, slug)
    assert not missing, f"rows without a current vector: {missing[:10]}"
    assert not extra, f"vectors that should not exist: {extra[:10]}"
    assert queued == 0, f"{queued} items still queued"
    return {"vectors": conn.execute(f"SELECT count(*) FROM {vt}").fetchone()[0]}


def pending(conn, slug: str | None = None) -> int:
    """Changes not embedded yet (queue rows and written keys not yet expanded), not counting dead letters."""
    return conn.execute("SELECT coalesce(sum(queued), 0)::bigint FROM mrl.queue_status "
                        "WHERE %(slug)s::text IS NULL OR slug = %(slug)s", {"slug": slug}).fetchone()[0]


def cosine(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def login_dsn(dsn: str, user: str, password: str) -> str:
    """The same server and database as `dsn`, as another login role."""
    params = conninfo_to_dict(dsn)
    params.update(user=user, password=password)
    return make_conninfo(**params)


def check_chunks(conn, slug: str, text_expr: str, table: str = "docs", embedder=None) -> dict:
    """The invariant of a chunked set: every row with non-empty text has chunks 0..n-1, all of its current text
    (hash = md5(text)), in order, covering it from its first to its last word, each the text between its offsets
    (and, with an embedder, within the model's window); rows without text, and deleted rows, have none; the queue
    is empty apart from dead letters. Returns counts."""
    vt = conn.execute("SELECT mrl.vectors_table(%s)::text", (slug,)).fetchone()[0]
    rows = conn.execute(
        f"SELECT t.id, ({text_expr})::text, array_agg(v.chunk ORDER BY v.chunk), array_agg(v.start_char ORDER BY v.chunk), "
        f"array_agg(v.end_char ORDER BY v.chunk), bool_and(v.content_hash = md5(({text_expr})::text)) "
        f"FROM {table} t LEFT JOIN {vt} v ON v.id = t.id GROUP BY t.id").fetchall()
    bad = []
    n_chunks = 0
    texts = []
    for key, text, chunks, starts, ends, current in rows:
        if not text:
            if chunks != [None]:
                bad.append((key, "chunks of an empty text"))
            continue
        if chunks == [None] or not current or chunks != list(range(len(chunks))):
            bad.append((key, "missing, stale or gapped chunks"))
            continue
        n_chunks += len(chunks)
        if starts[0] > len(text) - len(text.lstrip()) or ends[-1] < len(text.rstrip()) - 1:
            bad.append((key, f"chunks cover [{starts[0]}, {ends[-1]}) of {len(text)} characters"))
        if any(b <= a for a, b in zip(starts, ends)) or any(s2 < s1 for s1, s2 in zip(starts, starts[1:])):
            bad.append((key, "chunk offsets out of order"))
        texts += [text[a:b] for a, b in zip(starts, ends)]
    orphans = conn.execute(f"SELECT count(*) FROM {vt} v LEFT JOIN {table} t ON t.id = v.id WHERE t.id IS NULL"
                           ).fetchone()[0]
    assert not bad, f"chunk invariant broken: {bad[:5]}"
    assert orphans == 0, f"{orphans} chunks of deleted rows"
    if embedder is not None and texts:
        budget = embedder.token_budget("document")
        counts = embedder.count_tokens(texts)
        assert max(counts) <= budget, f"a chunk of {max(counts)} tokens (window {budget})"
    queued = pending(conn, slug)
    assert queued == 0, f"{queued} items still queued"
    return {"chunks": n_chunks}
