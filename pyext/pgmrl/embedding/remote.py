"""Remote embedding providers: Ollama (`POST /api/embed`) and OpenAI-compatible (`POST /v1/embeddings`).

Texts go out in batches; every request has a timeout; 429, 5xx, timeouts and connection errors are retried with
exponential backoff, waiting what a Retry-After header asks for (seconds or an HTTP date) when there is one.
Configuration (environment, overridden by a config's `endpoint` column):

    PGMRL_OLLAMA_URL          default http://127.0.0.1:11434
    PGMRL_OPENAI_BASE_URL     default https://api.openai.com/v1
    PGMRL_OPENAI_API_KEY      (or OPENAI_API_KEY) bearer token for the OpenAI-compatible endpoint
    PGMRL_PROVIDER_TIMEOUT    seconds per request, default 60
    PGMRL_PROVIDER_RETRIES    retries after the first try, default 5
    PGMRL_PROVIDER_BATCH      texts per request, default 64
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request

import numpy as np

from ..errors import PgmrlError
from .base import Embedder, EmbeddingConfig

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 300.0  # a server asking for a longer pause fails the batch instead (the worker retries later)


class ProviderError(PgmrlError):
    pass


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpEmbedder(Embedder):
    path = ""
    default_url = ""
    url_env = ""

    def __init__(self, config: EmbeddingConfig, *, endpoint: str | None = None, api_key: str | None = None,
                 timeout: float | None = None, max_retries: int | None = None, batch_size: int | None = None,
                 backoff: float = 0.5, max_backoff: float = 30.0, sleep=time.sleep):
        self.config = config
        base = endpoint or config.endpoint or os.environ.get(self.url_env) or self.default_url
        self.url = base.rstrip("/") + self.path
        self.api_key = api_key
        self.timeout = timeout if timeout is not None else float(os.environ.get("PGMRL_PROVIDER_TIMEOUT", "60"))
        self.max_retries = max_retries if max_retries is not None else int(os.environ.get("PGMRL_PROVIDER_RETRIES", "5"))
        self.batch_size = batch_size or int(os.environ.get("PGMRL_PROVIDER_BATCH", "64"))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self.requests = 0  # HTTP requests sent, retries included

    # subclasses: the request body and the vectors in the response
    def payload(self, texts: list[str]) -> dict:
        raise NotImplementedError

    def parse(self, body: dict, n: int) -> list[list[float]]:
        raise NotImplementedError

    def headers(self) -> dict:
        h = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "pgmrl"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def encode(self, texts: list[str], kind: str = "document") -> np.ndarray:
        texts = self._prefixed(texts, kind)
        out = [self._batch(texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        if not out:
            return np.zeros((0, self.config.dims), dtype=np.float32)
        vecs = np.vstack(out)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        if not np.all(np.isfinite(vecs)) or np.any(norms == 0):
            raise ProviderError(f"{self.url} returned a zero or non-finite vector")
        return (vecs / norms).astype(np.float32)

    def _batch(self, texts: list[str]) -> np.ndarray:
        body = post_json(self.url, self.payload(texts), self.headers(), timeout=self.timeout,
                         max_retries=self.max_retries, backoff=self.backoff, max_backoff=self.max_backoff,
                         sleep=self._sleep, counter=self)
        try:
            vecs = np.asarray(self.parse(body, len(texts)), dtype=np.float32)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ProviderError(f"{self.url} returned an unexpected body ({exc!r})") from None
        if vecs.shape != (len(texts), self.config.dims):
            raise ProviderError(f"{self.url} returned vectors of shape {vecs.shape} for {len(texts)} texts; config "
                                f"{self.config.name} expects {self.config.dims} dimensions")
        return vecs


def post_json(url: str, payload: dict, headers: dict, *, timeout: float, max_retries: int, backoff: float = 0.5,
              max_backoff: float = 30.0, sleep=time.sleep, counter=None) -> dict:
    """POSTs JSON and returns the decoded answer, retrying 408/429/5xx, timeouts and connection errors with
    exponential backoff (or the server's Retry-After). Other HTTP errors raise ProviderError at once."""
    data = json.dumps(payload).encode()
    attempt = 0
    while True:
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        if counter is not None:
            counter.requests += 1
        wait = -1.0
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace").strip()
            if exc.code not in RETRY_STATUS:
                raise ProviderError(f"{url} answered HTTP {exc.code}: {detail or exc.reason}") from None
            after = retry_after_seconds(exc.headers.get("Retry-After"))
            if after is not None and after > MAX_RETRY_AFTER:
                raise ProviderError(f"{url} answered HTTP {exc.code} and asks to wait {after:.0f} s") from None
            wait = -1.0 if after is None else after
            problem = f"HTTP {exc.code}"
        except TimeoutError:
            problem = f"no answer within {timeout:g} s"
        except urllib.error.URLError as exc:
            problem = (f"no answer within {timeout:g} s" if isinstance(exc.reason, (TimeoutError, socket.timeout))
                       else f"cannot connect ({exc.reason})")
        except (ConnectionError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            problem = f"broken response ({exc})"
        attempt += 1
        if attempt > max_retries:
            raise ProviderError(f"{url}: {problem} (gave up after {attempt} tries)")
        delay = wait if wait >= 0 else min(max_backoff, backoff * 2 ** (attempt - 1))
        log.warning("%s: %s; retry %d/%d in %.1f s", url, problem, attempt, max_retries, delay)
        sleep(delay)


class OllamaEmbedder(HttpEmbedder):
    path = "/api/embed"
    default_url = "http://127.0.0.1:11434"
    url_env = "PGMRL_OLLAMA_URL"

    def payload(self, texts):
        return {"model": self.config.model, "input": texts, "truncate": True}

    def parse(self, body, n):
        return body["embeddings"]


class OpenAIEmbedder(HttpEmbedder):
    path = "/embeddings"
    default_url = "https://api.openai.com/v1"
    url_env = "PGMRL_OPENAI_BASE_URL"

    def __init__(self, config, **kwargs):
        kwargs.setdefault("api_key", os.environ.get("PGMRL_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY"))
        super().__init__(config, **kwargs)

    def payload(self, texts):
        body = {"model": self.config.model, "input": texts, "encoding_format": "float"}
        if self.config.supports_mrl:
            body["dimensions"] = self.config.dims  # MRL models: the endpoint truncates server-side
        return body

    def parse(self, body, n):
        rows = sorted(body["data"], key=lambda r: r["index"])
        if [r["index"] for r in rows] != list(range(n)):
            raise ValueError("indexes do not cover the batch")
        return [r["embedding"] for r in rows]
