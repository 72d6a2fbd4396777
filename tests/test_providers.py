"""Remote providers against stub HTTP servers written here: Ollama /api/embed, OpenAI-compatible /v1/embeddings
(and chat completions for query generation). Batching, prefixes, dimensions, auth, 429 + Retry-After, timeouts."""

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from helpers import check_invariant
from pgmrl.embedding import EmbeddingConfig, get_embedder
from pgmrl.embedding.remote import OllamaEmbedder, OpenAIEmbedder, ProviderError, retry_after_seconds
from pgmrl.worker import Worker


def stub_vector(text: str, dims: int) -> list[float]:
    rng = np.random.default_rng(int(hashlib.md5(text.encode()).hexdigest()[:8], 16))
    v = rng.normal(size=dims)
    return (v / np.linalg.norm(v)).tolist()


class Stub:
    """A tiny embedding service. `script` holds what to do with the next requests: ("status", code, headers),
    ("sleep", seconds) or ("dims", n); afterwards every request succeeds."""

    def __init__(self, dims: int):
        self.dims = dims
        self.script: list[tuple] = []
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                action = stub.script.pop(0) if stub.script else ("ok",)
                dims = stub.dims
                if action[0] == "status":
                    self.send_response(action[1])
                    for k, v in action[2].items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(b'{"error": "stub says no"}')
                    return
                if action[0] == "sleep":
                    time.sleep(action[1])
                if action[0] == "dims":
                    dims = action[1]
                texts = body.get("input", [])
                if self.path == "/api/embed":
                    out = {"model": body["model"], "embeddings": [stub_vector(t, dims) for t in texts]}
                elif self.path == "/v1/embeddings":
                    data = [{"object": "embedding", "index": i, "embedding": stub_vector(t, dims)} for i, t in enumerate(texts)]
                    out = {"object": "list", "data": data[::-1]}  # any order: the client sorts by index
                elif self.path == "/v1/chat/completions":
                    out = {"choices": [{"message": {"content": "1. first query here\n2. second query here\n"}}]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                payload = json.dumps(out).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = Stub(8)
    yield s
    s.close()


def cfg(provider, name="remote-test", dims=8, mrl=False, prefixes=("", "")):
    return EmbeddingConfig(name, "stub-model", provider, dims, prefixes[0], prefixes[1], None, mrl)


def test_ollama_batches_prefixes_and_vectors(stub):
    emb = OllamaEmbedder(cfg("ollama", prefixes=("search_query: ", "search_document: ")), endpoint=stub.url,
                         batch_size=4)
    texts = [f"text {i}" for i in range(10)]
    out = emb.encode(texts, "document")
    assert out.shape == (10, 8) and out.dtype == np.float32
    assert [len(r["body"]["input"]) for r in stub.requests] == [4, 4, 2]
    assert all(r["path"] == "/api/embed" and r["body"]["model"] == "stub-model" for r in stub.requests)
    assert np.allclose(out[3], stub_vector("search_document: text 3", 8), atol=1e-6)
    q = emb.encode(["hello"], "query")
    assert stub.requests[-1]["body"]["input"] == ["search_query: hello"]
    assert np.allclose(q[0], stub_vector("search_query: hello", 8), atol=1e-6)


def test_openai_dimensions_auth_and_order(stub):
    emb = OpenAIEmbedder(cfg("openai", mrl=True), endpoint=stub.url + "/v1", api_key="sk-test")
    out = emb.encode(["a", "b", "c"])
    body, headers = stub.requests[0]["body"], stub.requests[0]["headers"]
    assert stub.requests[0]["path"] == "/v1/embeddings"
    assert body["dimensions"] == 8 and body["encoding_format"] == "float"
    assert headers["Authorization"] == "Bearer sk-test"
    assert np.allclose(out, [stub_vector(t, 8) for t in "abc"], atol=1e-6)  # reordered by index
    OpenAIEmbedder(cfg("openai", mrl=False), endpoint=stub.url + "/v1").encode(["x"])
    assert "dimensions" not in stub.requests[-1]["body"]


def test_429_honours_retry_after(stub):
    stub.script = [("status", 429, {"Retry-After": "1"}), ("status", 503, {})]
    slept = []
    emb = OllamaEmbedder(cfg("ollama"), endpoint=stub.url, backoff=0.01, sleep=lambda s: (slept.append(s), time.sleep(s)))
    t = time.perf_counter()
    out = emb.encode(["x"])
    assert time.perf_counter() - t >= 1.0
    assert slept[0] == 1.0 and slept[1] == pytest.approx(0.02)  # Retry-After, then exponential backoff
    assert emb.requests == 3 and out.shape == (1, 8)


def test_retry_after_too_long_fails_fast(stub):
    stub.script = [("status", 429, {"Retry-After": "3600"})]
    with pytest.raises(ProviderError, match="asks to wait 3600 s"):
        OllamaEmbedder(cfg("ollama"), endpoint=stub.url).encode(["x"])


def test_timeout_is_retried(stub):
    stub.script = [("sleep", 1.5)]
    emb = OpenAIEmbedder(cfg("openai"), endpoint=stub.url + "/v1", timeout=0.3, backoff=0.01)
    out = emb.encode(["x", "y"])
    assert emb.requests == 2 and out.shape == (2, 8)


def test_timeouts_give_up_with_a_clear_error(stub):
    stub.script = [("sleep", 1.0)] * 3
    emb = OllamaEmbedder(cfg("ollama"), endpoint=stub.url, timeout=0.2, max_retries=2, backoff=0.01)
    with pytest.raises(ProviderError, match=r"no answer within 0.2 s \(gave up after 3 tries\)"):
        emb.encode(["x"])
    assert emb.requests == 3


def test_client_errors_are_not_retried(stub):
    stub.script = [("status", 400, {})]
    emb = OllamaEmbedder(cfg("ollama"), endpoint=stub.url)
    with pytest.raises(ProviderError, match="HTTP 400.*stub says no"):
        emb.encode(["x"])
    assert emb.requests == 1


def test_wrong_dimensions_are_refused(stub):
    stub.script = [("dims", 7)]
    with pytest.raises(ProviderError, match="expects 8 dimensions"):
        OllamaEmbedder(cfg("ollama"), endpoint=stub.url).encode(["x"])


def test_unreachable_endpoint():
    emb = OllamaEmbedder(cfg("ollama"), endpoint="http://127.0.0.1:9", max_retries=1, backoff=0.01)
    with pytest.raises(ProviderError, match="cannot connect"):
        emb.encode(["x"])


def test_retry_after_parsing():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)


def test_worker_embeds_a_set_through_ollama(client, dsn, corpus, stub):
    """A config registered in SQL with provider 'ollama' and an endpoint: the sidecar's worker uses it."""
    conn = client.conn
    stub.dims = 16
    stub.script = [("status", 429, {"Retry-After": "0"})]
    conn.execute("INSERT INTO mrl.embedding_configs (name, model, provider, dims, document_prefix, endpoint) "
                 "VALUES ('stub-ollama', 'nomic-embed-text', 'ollama', 16, 'search_document: ', %s)", (stub.url,))
    conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    conn.cursor().executemany("INSERT INTO notes VALUES (%s, %s)", [(i, corpus[i]["doc"]) for i in range(30)])
    client.create_set("Notes", "notes", "notes", "body", config="stub-ollama")
    Worker(dsn).run(once=True)
    check_invariant(conn, "notes", "body", table="notes")
    stored = conn.execute("SELECT embedding FROM mrl_data.notes WHERE id = 5").fetchone()[0]
    # (stored as halfvec, the default: 11 significant bits)
    assert np.allclose(stored.to_list(), stub_vector("search_document: " + corpus[5]["doc"], 16), rtol=1e-3, atol=1e-4)
    assert any(r["body"]["model"] == "nomic-embed-text" for r in stub.requests)
    assert get_embedder(client.config("stub-ollama")).url == stub.url + "/api/embed"


def test_unknown_provider_is_refused_by_the_registry(client):
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation):
        client.conn.execute("INSERT INTO mrl.embedding_configs (name, model, provider, dims) "
                            "VALUES ('x', 'y', 'cohere', 8)")
