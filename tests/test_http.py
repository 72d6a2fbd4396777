"""The sidecar's HTTP API: the REST contract, auth, health, metrics, and schemathesis over the OpenAPI."""

import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from helpers import check_invariant, cosine, make_docs_table
from pgmrl import PgmrlError
from pgmrl.sidecar import create_app
from pgmrl.sidecar.runner import check_bind
from pgmrl.worker import Worker

TOKEN = "t0ken-for-tests"


@pytest.fixture
def api(dsn, embedder, corpus):
    app = create_app(dsn, token=TOKEN)
    app.state.model_ready = True
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as tc:
        yield tc
    app.state.db.close_all()


def test_config_by_short_name(api):
    r = api.get("/api/v1/embedding-configs/nomic-embed-text")
    assert r.status_code == 200
    body = r.json()
    assert body["supports_mrl"] is True
    assert body["matryoshka_dims"] == [768, 512, 256, 128, 64]
    assert body["default_truncate_dim"] == 256
    assert body["name"] == "nomic-embed-text-v1.5" and body["available_offline"] is False
    names = {c["name"]: c for c in api.get("/api/v1/embedding-configs").json()}
    assert names["all-minilm-l6-v2"]["available_offline"] is True
    assert api.get("/api/v1/embedding-configs/nope").status_code == 404


def test_create_set_embed_and_search(api, client, dsn, corpus):
    make_docs_table(client.conn, corpus[:40])
    body = {"name": "Docs", "slug": "docs", "set_type": "full", "embedding_config_id": "all-minilm-l6-v2",
            "truncate_dim": 32, "auto_embed_rules": {"on_create": True, "on_update": True},
            "source_table": "public.docs", "text_column": "body"}
    r = api.post("/api/v1/embedding-sets", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["queued"] == 40
    assert api.post("/api/v1/embedding-sets", json=body).status_code == 409
    Worker(dsn).run(once=True)
    client.refit("docs")
    check_invariant(client.conn, "docs", "body")
    st = api.get("/api/v1/embedding-sets/docs").json()
    assert (st["embedded"], st["queued"]) == (40, 0)

    r = api.get("/api/v1/search", params={"q": corpus[5]["query"], "set": "docs", "strategy": "two_stage",
                                          "coarse_k": 100, "k": 10})
    assert r.status_code == 200
    res = r.json()
    q = np.array(api.post("/v1/embed", json={"texts": [corpus[5]["query"]]}).json()["vectors"][0], dtype=np.float32)
    sql_ids = [row[0] for row in client.conn.execute(
        "SELECT id FROM mrl.two_stage_search('docs', %s, k => 10, coarse_k => 100)", (q,))]
    assert res["ids"] == sql_ids and len(sql_ids) == 10
    assert set(res["timings_ms"]) == {"embed", "search", "total"}
    assert api.get("/api/v1/search", params={"q": "x", "set": "nope"}).status_code == 404
    bad = api.get("/api/v1/search", params={"q": "x", "set": "docs", "k": 20, "coarse_k": 5})
    assert bad.status_code == 422 and "coarse_k" in bad.json()["detail"]


def test_embed_endpoint(api, embedder):
    r = api.post("/v1/embed", json={"texts": ["hello world", "grüße 🙂"], "kind": "document"})
    assert r.status_code == 200
    vecs = np.array(r.json()["vectors"])
    assert vecs.shape == (2, 384)
    assert cosine(vecs, embedder.model.encode(["hello world", "grüße 🙂"], normalize_embeddings=True)).min() >= 0.999
    raw = api.post("/v1/embed", json={"texts": ["hello world"], "format": "f32"})
    assert raw.headers["x-dims"] == "384"
    assert np.allclose(np.frombuffer(raw.content, "<f4"), vecs[0], atol=1e-6)
    refused = api.post("/v1/embed", json={"texts": ["x"], "truncate_dim": 128})
    assert refused.status_code == 422 and "not a Matryoshka dimension" in refused.json()["detail"]


def test_auth_health_and_metrics(dsn, embedder):
    app = create_app(dsn, token=TOKEN)
    with TestClient(app) as tc:
        assert tc.get("/healthz").status_code == 200
        assert tc.get("/readyz").status_code == 503  # model not loaded yet: honest
        app.state.model_ready = True
        assert tc.get("/readyz").status_code == 200
        assert tc.get("/api/v1/embedding-configs").status_code == 401
        assert tc.get("/api/v1/embedding-configs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert tc.post("/v1/embed", json={"texts": ["x"]}).status_code == 401
        m = tc.get("/metrics")  # open, like the health checks
        assert m.status_code == 200 and "pgmrl_rows_embedded_total 0" in m.text and "pgmrl_queue_depth" in m.text
    app.state.db.close_all()


def test_readyz_reports_a_missing_schema(server_dsn):
    import psycopg

    from conftest import with_db

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS pgmrl_empty_test")
        conn.execute("CREATE DATABASE pgmrl_empty_test")  # pgmrl not installed there
    app = create_app(with_db(server_dsn, "pgmrl_empty_test"))
    app.state.model_ready = True
    with TestClient(app) as tc:
        r = tc.get("/readyz")
    app.state.db.close_all()
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE pgmrl_empty_test WITH (FORCE)")
    assert r.status_code == 503 and "pgmrl install" in r.json()["problems"][0]


def test_real_server_and_wrong_token(sidecar):
    url = sidecar(token=TOKEN)
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/api/v1/embedding-configs", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = httpx.get(f"{url}/api/v1/embedding-configs/minilm", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["dims"] == 384


def test_non_loopback_bind_needs_a_token(dsn):
    with pytest.raises(PgmrlError, match="without a token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(PgmrlError, match="1-character token"):
        check_bind("0.0.0.0", "x")
    with pytest.raises(PgmrlError, match="blank"):
        check_bind("0.0.0.0", "   ")
    check_bind("0.0.0.0", "x" * 32)
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    out = subprocess.run([sys.executable, "-m", "pgmrl.cli", "serve", "--dsn", dsn, "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode != 0 and "refusing to listen on 0.0.0.0 without a token" in out.stderr


def test_openapi_no_server_errors(dsn, embedder, corpus):
    """Schemathesis generates requests for every operation of the OpenAPI document; none may get a 5xx.
    (Driven from a plain test: schemathesis' pytest plugin does not run under this pytest version.)"""
    import psycopg
    from hypothesis import given

    with psycopg.connect(dsn, autocommit=True) as conn:
        make_docs_table(conn, corpus[:30])
        conn.execute("SELECT mrl.create_embedding_set('Docs', 'docs', 'docs', 'body', truncate_dim => 16)")
    Worker(dsn).run(once=True)
    app = create_app(dsn, token=TOKEN)
    app.state.model_ready = True
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    try:
        for operation in operations:
            @given(case=operation.as_strategy())
            @settings(max_examples=int(os.environ.get("PGMRL_FUZZ_EXAMPLES", "25")), deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case):
                case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error])

            check()
    finally:
        app.state.db.close_all()


# -- tokens and roles (a database shared by many roles) ----------------------------------------------------------
def test_every_database_endpoint_needs_a_token_even_on_loopback(dsn, embedder):
    app = create_app(dsn, token=TOKEN, open_embed=True)  # as `pgmrl serve` on 127.0.0.1
    app.state.model_ready = True
    open_paths = {"/healthz", "/readyz", "/metrics", "/v1/embed", "/docs", "/docs/oauth2-redirect", "/openapi.json",
                  "/redoc"}
    with TestClient(app) as tc:
        checked = 0
        for path, operations in app.openapi()["paths"].items():  # every route, however the routers nest
            if path in open_paths:
                continue
            for method in {m.upper() for m in operations} - {"HEAD", "OPTIONS"}:
                url = path.replace("{name}", "x").replace("{slug}", "x")
                r = tc.request(method, url, json={})
                assert r.status_code == 401, (method, url, r.status_code)
                checked += 1
        assert checked >= 7
        assert tc.post("/v1/embed", json={"texts": ["x"]}).status_code == 200  # open on loopback
        # the scheme is case-insensitive; the token itself is not
        assert tc.get("/api/v1/embedding-configs", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
        assert tc.get("/api/v1/embedding-configs", headers={"Authorization": f"BEARER {TOKEN}"}).status_code == 200
        assert tc.get("/api/v1/embedding-configs",
                      headers={"Authorization": f"Bearer {TOKEN.upper()}"}).status_code == 401
    app.state.db.close_all()


def test_body_cap_and_no_echo(dsn, embedder):
    from pgmrl.sidecar.auth import MAX_BODY

    app = create_app(dsn, token=TOKEN)
    with TestClient(app) as tc:
        big = b"x" * (MAX_BODY + 1)
        # refused before the token is looked at or the body is parsed
        assert tc.post("/api/v1/embedding-sets", content=big).status_code == 413
        r = tc.post("/v1/embed", content=big, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 413 and len(r.content) < 200
        # chunked (no Content-Length) is counted too
        r = tc.post("/v1/embed", content=iter([big[:MAX_BODY // 2], big[MAX_BODY // 2:]]),
                    headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 413
        # a 422 names the problem without repeating the input
        r = tc.post("/v1/embed", json={"texts": ["y" * 200_000]}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 422 and len(r.content) < 2000 and "yyyy" not in r.text
    app.state.db.close_all()


@pytest.fixture
def api_roles(dsn, server_dsn, client, corpus):
    """Two roles and a token each: `noread` may not read public.docs, `admin` manages sets but may not read it
    either; the sidecar's login (the test's) is a member of both, as `GRANT role TO sidecar_login` makes it."""
    import uuid

    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    suffix = uuid.uuid4().hex[:8]
    names = {"noread": f"noread_{suffix}", "admin": f"admin_{suffix}"}
    login = conninfo_to_dict(dsn).get("user") or client.conn.execute("SELECT current_user").fetchone()[0]
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {names['noread']}")
        conn.execute(f"CREATE ROLE {names['admin']} IN ROLE pgmrl_admin")
    make_docs_table(client.conn, corpus[:30])
    client.create_set("Docs", "docs", "docs", "body")
    Worker(dsn).run(once=True)
    client.conn.execute(f"CREATE SCHEMA adm AUTHORIZATION {names['admin']}")
    client.conn.execute("CREATE TABLE adm.notes (id int PRIMARY KEY, body text)")
    client.conn.execute(f"ALTER TABLE adm.notes OWNER TO {names['admin']}")
    yield names, login
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {conninfo_to_dict(dsn)['dbname']} WITH (FORCE)")
        for name in names.values():
            conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_tokens_map_to_roles(dsn, embedder, api_roles):
    """Each token acts as its role (SET ROLE): the API never does more than that role could in SQL."""
    names, _ = api_roles
    t_noread, t_admin, t_self = "n" * 24, "a" * 24, "s" * 24
    app = create_app(dsn, {t_noread: names["noread"], t_admin: names["admin"], t_self: None})
    app.state.model_ready = True
    body = {"name": "Docs2", "slug": "docs2", "source_table": "public.docs", "text_column": "body"}

    def h(token):
        return {"Authorization": f"Bearer {token}"}

    with TestClient(app) as tc:
        # a role that may not read public.docs can neither create a set over it nor see or search its set
        r = tc.post("/api/v1/embedding-sets", json=body, headers=h(t_noread))
        assert r.status_code == 403 and r.json()["sqlstate"] == "42501", r.text
        r = tc.post("/api/v1/embedding-sets", json=body, headers=h(t_admin))
        assert r.status_code == 403 and "permission denied for table" in r.json()["detail"], r.text
        assert tc.get("/api/v1/embedding-sets/docs", headers=h(t_noread)).status_code == 404
        assert tc.get("/api/v1/search", params={"q": "x", "set": "docs"}, headers=h(t_noread)).status_code == 404
        r = tc.post("/api/v1/fine-tuning/generate", json={"name": "ft", "source": {"slug": "docs"}}, headers=h(t_noread))
        assert r.status_code == 404
        # the administrator creates a set over its own table; the sidecar's own login sees everything
        r = tc.post("/api/v1/embedding-sets", headers=h(t_admin),
                    json={"name": "Notes", "slug": "notes", "source_table": "adm.notes", "text_column": "body"})
        assert r.status_code == 201, r.text
        assert tc.get("/api/v1/embedding-sets/docs", headers=h(t_self)).status_code == 200
        r = tc.get("/api/v1/search", params={"q": "compress files", "set": "docs", "k": 3}, headers=h(t_self))
        assert r.status_code == 200 and len(r.json()["ids"]) == 3
    app.state.db.close_all()
