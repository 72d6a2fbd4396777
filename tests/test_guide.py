"""The model selection guide: recommend (CLI, SQL, REST agree on every branch), storage, the catalogue."""

import itertools
import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from pgmrl import guide
from pgmrl.cli import cli
from pgmrl.sidecar import create_app

FLAGS = ("llm_rerank", "storage", "domain", "multilingual", "code", "speed")

# (flags set, expected config, truncate_dim, fine_tune): one row per branch of the guide's tree
BRANCHES = [
    ({"llm_rerank"}, "all-minilm-l6-v2", None, False),
    ({"storage"}, "nomic-embed-text-v1.5", 128, False),
    ({"domain"}, "gte-large-en-v1.5", None, True),
    (set(), "bge-large-en-v1.5", None, False),
    ({"multilingual"}, "multilingual-e5-large", None, False),
    ({"multilingual", "speed"}, "multilingual-e5-small", None, False),
    ({"code"}, "jina-embeddings-v2-base-code", None, False),
    ({"llm_rerank", "storage", "domain"}, "all-minilm-l6-v2", None, False),  # the tree's order
    ({"storage", "domain"}, "nomic-embed-text-v1.5", 128, False),
]


@pytest.mark.parametrize("flags, config, tdim, fine_tune", BRANCHES)
def test_recommend_cli_follows_the_tree(flags, config, tdim, fine_tune):
    args = [f"--{f.replace('_', '-')}" for f in sorted(flags)]
    out = CliRunner().invoke(cli, ["recommend", *args, "--json"])
    assert out.exit_code == 0, out.output
    r = json.loads(out.output)
    assert (r["config"], r["truncate_dim"], r["fine_tune"]) == (config, tdim, fine_tune)
    assert r["reason"]
    text = CliRunner().invoke(cli, ["recommend", *args]).output
    assert f"use: {config}" in text and "why: " in text


def test_sql_and_rest_agree_with_python_on_every_combination(client, dsn):
    app = create_app(dsn, token="test-token-0123456789")
    app.state.model_ready = True
    with TestClient(app, headers={"Authorization": "Bearer test-token-0123456789"}) as api:
        for values in itertools.product([False, True], repeat=len(FLAGS)):
            kw = dict(zip(FLAGS, values))
            want = guide.recommend(**kw).__dict__
            sql = client.conn.execute("SELECT * FROM mrl.recommend_config(%s, %s, %s, %s, %s, %s)", values)
            got = dict(zip([d.name for d in sql.description], sql.fetchone()))
            assert got == want, kw
            r = api.get("/api/v1/embedding-configs/recommend", params={k: str(v).lower() for k, v in kw.items()})
            assert r.status_code == 200 and r.json() == want, kw
    app.state.db.close_all()
    # every recommended config is in the registry
    names = {r[0] for r in client.conn.execute("SELECT name FROM mrl.embedding_configs")}
    assert {b[1] for b in BRANCHES} <= names


def test_catalogue_matches_the_seeded_registry(client):
    rows = {r[0]: r[1:] for r in client.conn.execute(
        "SELECT name, dims, matryoshka_dims, params_millions FROM mrl.embedding_configs WHERE builtin")}
    assert set(rows) == set(guide.CATALOGUE)
    for name, m in guide.CATALOGUE.items():
        dims, mrl_dims, params = rows[name]
        assert (dims, tuple(mrl_dims) if mrl_dims else None, float(params)) == (m.dims, m.mrl_dims, m.params_millions)


def test_storage_reproduces_the_guide_table():
    assert [round(guide.guide_gb(d, 1_000_000), 1) for d in (384, 768, 1024, 4096, 128)] == [1.5, 3.0, 4.0, 16.0, 0.5]
    out = CliRunner().invoke(cli, ["storage", "--model", "nomic-embed-text-v1.5", "--rows", "1000000",
                                   "--truncate-dim", "128"])
    assert out.exit_code == 0, out.output
    assert "3.0 GB full, 0.5 GB at 128 dims" in out.output
    assert "embedding halfvec(768)" in out.output and "coarse halfvec(128)" in out.output
    assert "1.54 GB" in out.output and "0.26 GB" in out.output  # (768*2+8) and (128*2+8) bytes x 1M
    single = CliRunner().invoke(cli, ["storage", "--model", "nomic-embed-text-v1.5", "--truncate-dim", "128",
                                      "--full-type", "vector"]).output
    assert "embedding vector(768)" in single and "3.08 GB" in single  # (768*4+8) bytes x 1M
    for model, gb in (("all-minilm-l6-v2", "1.5"), ("bge-large-en-v1.5", "4.0"), ("e5-mistral-7b", "16.0")):
        assert f"{gb} GB full" in CliRunner().invoke(cli, ["storage", "--model", model]).output
    bad = CliRunner().invoke(cli, ["storage", "--model", "nope"])
    assert bad.exit_code != 0 and "unknown model" in bad.output


def test_storage_of_a_set_is_measured(loaded, dsn):
    out = CliRunner().invoke(cli, ["storage", "--set", "docs", "--dsn", dsn])
    assert out.exit_code == 0, out.output
    assert "3,000 vectors of 384 dims, coarse 128 dims" in out.output and "docs_coarse_hnsw" in out.output
    conn = loaded.conn
    emb, coarse = conn.execute("SELECT sum(pg_column_size(embedding)), sum(pg_column_size(coarse)) FROM mrl_data.docs").fetchone()
    layout = dict(guide.layout(384, 3000, 128))  # (the default full_type, halfvec)
    assert emb == layout["embedding halfvec(384)"] and coarse == layout["coarse halfvec(128)"]  # first principles
    assert dict(guide.layout(384, 3000, 128, full_type="vector"))["embedding vector(384)"] == 2 * emb - 8 * 3000
    measured = conn.execute("SELECT size_bytes FROM mrl.search_indexes('docs') WHERE kind = 'coarse'").fetchone()[0]
    estimate = layout["coarse HNSW index (m 16), estimate"]
    assert abs(estimate - measured) / measured < 0.15, (estimate, measured)


def test_models_lists_the_registry(client, dsn):
    out = CliRunner().invoke(cli, ["models", "--dsn", dsn, "--json"])
    rows = {r["name"]: r for r in json.loads(out.output)}
    assert rows["all-minilm-l6-v2"]["available"] == "yes"
    assert rows["nomic-embed-text-v1.5"]["matryoshka_dims"] == [768, 512, 256, 128, 64]
    assert rows["bge-large-en-v1.5"]["available"] == "no"
    table = CliRunner().invoke(cli, ["models", "--dsn", dsn]).output
    assert "MRL dims" in table and "PGMRL_MODEL_DIR" in table


def test_sql_seed_is_generated_from_the_one_catalogue():
    """070_configs.sql and 075_recommend.sql are what catalogue.json gives (regenerating makes no diff)."""
    from pgmrl import schema
    from pgmrl.guide import sqlgen

    shipped = dict(schema._files("functions"))
    for name, text in sqlgen.generated().items():
        assert shipped[name] == text, f"{name} is stale: run python -m pgmrl.guide.sqlgen"
    assert sqlgen.main(["--check"]) == 0


def test_every_alias_resolves_offline_as_in_sql(client):
    """Each alias of the registry resolves the same way in Python (no database) and in SQL."""
    for name, aliases in client.conn.execute("SELECT name, aliases FROM mrl.embedding_configs WHERE builtin"):
        for alias in [name, *aliases]:
            assert guide.lookup(alias).name == name
            assert client.conn.execute("SELECT (mrl_internal._config(%s)).name", (alias,)).fetchone()[0] == name
    out = CliRunner().invoke(cli, ["storage", "--model", "gte-large-en", "--rows", "1000"])
    assert out.exit_code == 0, out.output
