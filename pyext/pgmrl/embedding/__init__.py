"""Embedding providers behind one interface (`base`), and the one table that maps a config's provider to its
embedder: sentence-transformers models run in this process (`local`), Ollama and OpenAI-compatible endpoints over
HTTP (`remote`). Each embedder is created once per process and shared (worker and HTTP server)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..errors import PgmrlError
from .base import MAX_CHARS, Embedder, EmbeddingConfig
from .local import BUNDLED_MODEL, SentenceTransformerEmbedder, resolve_local_model

__all__ = ["BUNDLED_MODEL", "MAX_CHARS", "PROVIDERS", "Embedder", "EmbeddingConfig", "SentenceTransformerEmbedder",
           "get_embedder", "register_embedder", "resolve_local_model"]


def _local(config: EmbeddingConfig, device: str | None) -> Embedder:
    return SentenceTransformerEmbedder(config, device=device)


def _ollama(config: EmbeddingConfig, device: str | None) -> Embedder:
    from .remote import OllamaEmbedder

    return OllamaEmbedder(config)


def _openai(config: EmbeddingConfig, device: str | None) -> Embedder:
    from .remote import OpenAIEmbedder

    return OpenAIEmbedder(config)


# provider name (mrl.embedding_configs.provider) -> factory
PROVIDERS: dict[str, Callable[[EmbeddingConfig, str | None], Embedder]] = {
    "sentence-transformers": _local, "ollama": _ollama, "openai": _openai}


def _make(config: EmbeddingConfig, device: str | None) -> Embedder:
    try:
        factory = PROVIDERS[config.provider]
    except KeyError:
        raise PgmrlError(f"unknown provider {config.provider!r} of config {config.name}; use "
                         f"{', '.join(repr(p) for p in PROVIDERS)}") from None
    return factory(config, device)


_cache: dict[tuple[str, str], Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(config: EmbeddingConfig, device: str | None = None) -> Embedder:
    key = (config.name, config.model)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _make(config, device)
        return _cache[key]


def register_embedder(embedder: Embedder) -> None:
    """Makes an already-loaded embedder the one used for its config (tests, embedding apps)."""
    with _cache_lock:
        _cache[(embedder.config.name, embedder.config.model)] = embedder
