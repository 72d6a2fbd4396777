"""How a set stores its vectors: halfvec or vector full vectors, refits that leave no dead rows, compaction and
in-place conversion, and the invariant and search results through all of it (real server, real vectors)."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest

from helpers import check_invariant, login_dsn, make_docs_table
from pgmrl.worker import Worker

N = 2000


def full_type_of(conn, slug: str) -> str:
    return conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = mrl.vectors_table(%s) AND attname = 'embedding'", (slug,)).fetchone()[0]


def table_bytes(conn, slug: str) -> int:
    return conn.execute("SELECT pg_relation_size(mrl.vectors_table(%s))", (slug,)).fetchone()[0]


def ids(conn, slug: str, q: np.ndarray, strategy: str, coarse_k: int | None = None) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM mrl.search(%s, %s, 10, %s, %s)",
                                       (slug, np.asarray(q, dtype=np.float32), strategy, coarse_k))]


@pytest.fixture
def two_layouts(client, corpus, corpus_vectors):
    """The same N real documents in a halfvec set (the default) and a vector set, 128-d rotation, fitted."""
    docs, _ = corpus_vectors
    make_docs_table(client.conn, corpus[:N])
    client.create_set("Half", "half", "docs", "body", truncate_dim=128)
    client.create_set("Single", "single", "docs", "body", truncate_dim=128, full_type="vector")
    for slug in ("half", "single"):
        assert client.load_vectors(slug, list(range(1, N + 1)), docs[:N]) == N
        client.refit(slug)
    return client


def test_halfvec_is_the_default_and_searches_like_vector(two_layouts, corpus_vectors):
    conn = two_layouts.conn
    assert full_type_of(conn, "half") == "halfvec(384)" and full_type_of(conn, "single") == "vector(384)"
    assert conn.execute("SELECT slug, full_type FROM mrl.embedding_sets ORDER BY slug").fetchall() == [
        ("half", "halfvec"), ("single", "vector")]
    # half the bytes of the full vectors: the heap is well under the single-precision one
    assert table_bytes(conn, "half") < 0.75 * table_bytes(conn, "single")

    for slug in ("half", "single"):
        conn.execute("SELECT mrl.create_full_index(%s)", (slug,))
        conn.execute("SELECT mrl.add_binary_index(%s)", (slug,))
    _, queries = corpus_vectors
    overlap = []
    for q in queries[:40]:
        exact_half, exact_single = ids(conn, "half", q, "exact"), ids(conn, "single", q, "exact")
        # at a coarse_k that reaches every row, two-stage equals exact in each layout
        assert ids(conn, "half", q, "two_stage", coarse_k=N) == exact_half
        assert ids(conn, "single", q, "two_stage", coarse_k=N) == exact_single
        overlap.append(len(set(exact_half) & set(exact_single)) / 10)
        for strategy in ("hnsw", "binary_two_stage"):
            assert len(ids(conn, "half", q, strategy)) == 10
    # half precision barely changes the ranking (measured: 0.99+ of the exact top 10 shared)
    assert np.mean(overlap) >= 0.97, np.mean(overlap)
    # the full index of a halfvec set is a halfvec index, and the hnsw strategy uses it
    assert "halfvec_cosine_ops" in conn.execute(
        "SELECT pg_get_indexdef('mrl_data.half_full_hnsw'::regclass)").fetchone()[0]


def test_a_refit_leaves_no_dead_rows(two_layouts):
    conn = two_layouts.conn
    for slug in ("half", "single"):
        before = table_bytes(conn, slug)
        coarse_before = conn.execute(f"SELECT id, coarse::text FROM mrl_data.{slug} ORDER BY id LIMIT 5").fetchall()
        conn.execute("UPDATE mrl.rotation_components SET direction = "
                     "(SELECT array_agg(-x)::real[]::vector FROM unnest(direction::real[]) x) "
                     "WHERE set_id = (SELECT id FROM mrl.embedding_sets WHERE slug = %s) AND component = 0", (slug,))
        two_layouts.refit(slug)  # refits from the stored vectors: every coarse vector written again
        after = table_bytes(conn, slug)
        assert after <= 1.05 * before, (slug, before, after)  # an UPDATE of every row would double it
        assert conn.execute(f"SELECT count(*) FROM mrl_data.{slug} WHERE coarse IS NULL").fetchone()[0] == 0
        assert len(conn.execute(f"SELECT id, coarse::text FROM mrl_data.{slug} ORDER BY id LIMIT 5").fetchall()) \
            == len(coarse_before)
        # and the coarse index was rebuilt with the table: the two-stage search still uses it
        assert conn.execute(f"SELECT count(*) FROM pg_indexes WHERE indexname = '{slug}_coarse_hnsw'").fetchone()[0] == 1


def test_compact_converts_an_old_layout_set_in_place(two_layouts, corpus_vectors, server_dsn):
    conn = two_layouts.conn
    _, queries = corpus_vectors
    conn.execute("SELECT mrl.create_full_index('single', 8, 32)")
    conn.execute("SELECT mrl.add_binary_index('single')")
    hashes = conn.execute("SELECT id, content_hash FROM mrl_data.single ORDER BY id").fetchall()
    # bloat it the way an in-place update does, then convert and compact
    conn.execute("UPDATE mrl_data.single SET embedded_at = embedded_at")
    bloated = table_bytes(conn, "single")
    before, after, stored = two_layouts.compact("single", "halfvec")
    assert stored == "halfvec" and full_type_of(conn, "single") == "halfvec(384)"
    assert after < 0.5 * bloated and before >= bloated
    assert conn.execute("SELECT id, content_hash FROM mrl_data.single ORDER BY id").fetchall() == hashes
    # the full index came back with the halfvec operator class and its parameters; every strategy works
    indexes = {r[0]: (r[1], r[3]) for r in conn.execute("SELECT * FROM mrl.search_indexes('single')")}
    assert indexes["single_full_hnsw"] == ("full", 8) and "single_binary_hnsw" in indexes
    for q in queries[:10]:
        assert ids(conn, "single", q, "two_stage", coarse_k=N) == ids(conn, "single", q, "exact") \
            == ids(conn, "half", q, "exact")
        assert len(ids(conn, "single", q, "hnsw")) == len(ids(conn, "single", q, "binary_two_stage")) == 10
    # back to single precision, and a plain compaction
    assert two_layouts.compact("single", "vector")[2] == "vector" and full_type_of(conn, "single") == "vector(384)"
    assert two_layouts.compact("single")[2] == "vector"
    check_invariant(conn, "single", "body")

    with pytest.raises(psycopg.errors.InvalidParameterValue, match="full_type"):
        two_layouts.compact("single", "float16")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="full_type"):
        conn.execute("SELECT mrl.create_embedding_set('x', 'x', 'docs', 'body', full_type => 'bit')")

    # only the table's owner may rewrite it (another set administrator does not even see the set)
    role, password = f"other_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(server_dsn, autocommit=True) as su:
        su.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        su.execute(f"GRANT pgmrl_admin TO {role}")
    try:
        with psycopg.connect(login_dsn(two_layouts.dsn, role, password), autocommit=True) as other, \
                pytest.raises(psycopg.errors.UndefinedObject):
            other.execute("SELECT * FROM mrl.compact_embedding_set('single')")
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as su:
            su.execute(f"DROP OWNED BY {role}")
            su.execute(f"DROP ROLE {role}")


def test_the_workers_automatic_refit_compacts_where_it_may(client, corpus, corpus_vectors, server_dsn, embedder):
    """The least-privileged worker does not own the vectors table: from PostgreSQL 17 it compacts with the MAINTAIN
    privilege the set grants it; before, the dead rows stay until the owner compacts (and the set still works)."""
    docs, _ = corpus_vectors
    make_docs_table(client.conn, corpus[:N])
    client.create_set("Docs", "docs", "docs", "body", truncate_dim=128)
    client.load_vectors("docs", list(range(1, N + 1)), docs[:N])
    client.refit("docs")
    fitted = table_bytes(client.conn, "docs")
    client.conn.execute("SELECT mrl.refit_rotation('docs')")
    role, password = f"w_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(server_dsn, autocommit=True) as su:
        su.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        su.execute(f"GRANT pgmrl_worker TO {role}")
    try:
        Worker(login_dsn(client.dsn, role, password)).run(once=True)
        version = client.conn.info.server_version
        assert client.conn.execute("SELECT rotation_version FROM mrl.embedding_sets WHERE slug = 'docs'").fetchone()[0] == 2
        after = table_bytes(client.conn, "docs")
        if version >= 170000:
            assert after <= 1.05 * fitted, (fitted, after)
        else:
            assert after > 1.5 * fitted  # (measured: every row twice) ...
            assert client.compact("docs")[1] <= 1.05 * fitted  # ... until the owner compacts
        check_invariant(client.conn, "docs", "body")
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as su:
            su.execute(f"DROP OWNED BY {role}")
            su.execute(f"DROP ROLE {role}")
