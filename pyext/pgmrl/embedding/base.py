"""What every embedder is: a config row and encode(texts, kind). Imports no embedder (they import this)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..chunking import Span, regex_tokenize
from ..errors import PgmrlError

# Texts are cut to this many characters before tokenising (far beyond any model's window; bounds the cost of a
# pathological row). Such texts, like those longer than the model's token window, are flagged as truncated.
MAX_CHARS = 100_000


@dataclass(frozen=True)
class EmbeddingConfig:
    name: str
    model: str
    provider: str
    dims: int
    query_prefix: str = ""
    document_prefix: str = ""
    max_seq_length: int | None = None
    supports_mrl: bool = False
    endpoint: str | None = None

    @classmethod
    def load(cls, conn, name: str) -> EmbeddingConfig:
        row = conn.execute(
            "SELECT name, model, provider, dims, query_prefix, document_prefix, max_seq_length, supports_mrl, "
            "endpoint FROM mrl_internal._config(%s)", (name,)).fetchone()
        return cls(*row)


class Embedder:
    """encode(texts, kind) -> float32 array (n, dims), unit length; kind is 'query' or 'document'."""

    config: EmbeddingConfig

    def encode(self, texts: list[str], kind: str = "document") -> np.ndarray:
        raise NotImplementedError

    def truncated(self, texts: list[str], kind: str = "document") -> list[bool]:
        """Which texts are longer than what the model reads (their vectors cover the beginning only)."""
        return [len(t) > MAX_CHARS for t in texts]

    def token_spans(self, text: str) -> list[Span]:
        """The character spans of the tokens of `text` (without special tokens): approximate unless the model's
        tokenizer is at hand."""
        return regex_tokenize(text)

    def count_tokens(self, texts: list[str], kind: str = "document") -> list[int]:
        """Tokens of each text without the prefix and the special tokens (what token_budget is compared with)."""
        return [len(self.token_spans(t)) for t in texts]

    def token_budget(self, kind: str = "document") -> int:
        """Tokens of a text the model reads whole: its window less the prefix and the special tokens (an
        approximate tokenizer keeps a margin of a quarter)."""
        window = self.config.max_seq_length or 512
        prefix = self.config.query_prefix if kind == "query" else self.config.document_prefix
        return max(16, (window - 2 - len(regex_tokenize(prefix))) * 3 // 4)

    def _prefixed(self, texts: list[str], kind: str) -> list[str]:
        if kind not in ("query", "document"):
            raise PgmrlError(f"kind must be 'query' or 'document', got {kind!r}")
        prefix = self.config.query_prefix if kind == "query" else self.config.document_prefix
        return [prefix + t[:MAX_CHARS] for t in texts]
