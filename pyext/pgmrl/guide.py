"""The embedding model selection guide as code: the catalogue, the decision tree, and storage sizes.

The SQL side (mrl.recommend_config, the seeded mrl.embedding_configs rows) implements the same facts; the tests
check that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT32 = 4  # bytes per dimension of a full `vector`
HALF = 2     # bytes per dimension of a `halfvec`
VARLENA = 8  # header of a pgvector value (4-byte varlena + dims/unused)


@dataclass(frozen=True)
class Model:
    name: str
    params_millions: float
    dims: int
    mrl_dims: tuple[int, ...] | None
    best_for: str


CATALOGUE = {m.name: m for m in [
    Model("all-minilm-l6-v2", 22.7, 384, None, "fast general English search; first stage before LLM re-ranking"),
    Model("nomic-embed-text-v1.5", 137, 768, (768, 512, 256, 128, 64), "storage-optimised search (Matryoshka)"),
    Model("mxbai-embed-large-v1", 335, 1024, (1024, 512, 256, 128, 64), "high-quality search with Matryoshka truncation"),
    Model("bge-large-en-v1.5", 335, 1024, None, "high-quality general English retrieval"),
    Model("gte-large-en-v1.5", 434, 1024, None, "base for domain fine-tuning; long context"),
    Model("e5-mistral-7b", 7111, 4096, None, "best quality with a GPU; base for domain fine-tuning"),
    Model("multilingual-e5-large", 560, 1024, None, "multilingual and CJK search"),
    Model("multilingual-e5-small", 118, 384, None, "multilingual and CJK search, fast"),
    Model("jina-embeddings-v2-base-code", 161, 768, None, "code search (natural language to code)"),
]}


ALIASES = {"all-minilm": "all-minilm-l6-v2", "minilm": "all-minilm-l6-v2", "nomic-embed-text": "nomic-embed-text-v1.5",
           "nomic": "nomic-embed-text-v1.5", "mxbai-embed-large": "mxbai-embed-large-v1", "mxbai": "mxbai-embed-large-v1",
           "bge-large": "bge-large-en-v1.5", "bge-large-en": "bge-large-en-v1.5", "e5-mistral": "e5-mistral-7b",
           "gte-large": "gte-large-en-v1.5", "multilingual-e5": "multilingual-e5-large",
           "jina-code": "jina-embeddings-v2-base-code", "code": "jina-embeddings-v2-base-code"}


def lookup(name: str) -> Model | None:
    name = name.lower()
    return CATALOGUE.get(ALIASES.get(name, name))


@dataclass(frozen=True)
class Recommendation:
    config: str
    alternative: str | None
    truncate_dim: int | None
    fine_tune: bool
    reason: str


def recommend(llm_rerank: bool = False, storage: bool = False, domain: bool = False, multilingual: bool = False,
              code: bool = False, speed: bool = False) -> Recommendation:
    """The guide's decision tree. Content type (code, languages) decides first, then the tree proper:
    LLM re-ranking -> MiniLM; storage -> an MRL model; domain-specific -> fine-tune a base model; else bge/e5."""
    if code:
        return Recommendation("jina-embeddings-v2-base-code", None, None, False,
                              "code search: a model trained on code and its documentation matches natural-language "
                              "queries to code far better than a text model")
    if multilingual:
        if speed:
            return Recommendation("multilingual-e5-small", "multilingual-e5-large", None, False,
                                  "multilingual/CJK text, speed first: the small multilingual E5 (384 dims)")
        return Recommendation("multilingual-e5-large", "multilingual-e5-small", None, False,
                              "multilingual/CJK text: English-only models tokenise other scripts poorly")
    if llm_rerank:
        return Recommendation("all-minilm-l6-v2", None, None, False,
                              "an LLM re-ranks the candidates, so the first stage only needs fast, cheap recall: "
                              "all-MiniLM-L6-v2 (384 dims)")
    if storage:
        return Recommendation("nomic-embed-text-v1.5", "mxbai-embed-large-v1", 128, False,
                              "storage matters: an MRL model keeps most of its quality truncated; nomic 768 -> 128 "
                              "dims stores 1/6 of the floats (0.5 GB instead of 3.0 GB per 1M documents)")
    if domain:
        return Recommendation("gte-large-en-v1.5", "e5-mistral-7b", None, True,
                              "domain-specific vocabulary: fine-tune a base model on your documents, but only if "
                              "the baseline Recall@10 on your validation pairs is below 60%")
    return Recommendation("bge-large-en-v1.5", "e5-mistral-7b", None, False,
                          "general English retrieval without special constraints: a strong general model")


def guide_gb(dims: int, rows: int) -> float:
    """The guide's storage figure: float32 vectors, counted as KiB per vector x millions of rows
    (384 dims = 1.5 KiB -> 1.5 GB per 1M documents)."""
    return dims * FLOAT32 / 1024 * rows / 1e6


def hnsw_bytes_per_row(value_bytes: int, m: int = 16) -> float:
    """Estimated pgvector HNSW index bytes per row: an element tuple (the value + ~32 bytes) and a neighbour tuple
    (2m item pointers of 6 bytes at layer 0 + ~32 bytes) share 8 KiB pages. Matches measured sizes within ~5%
    (54,615 MiniLM rows: vector(384) 106 MB, halfvec(128) 30 MB, halfvec(64) 23 MB, bit(384) 18 MB)."""
    per = value_bytes + 32 + 12 * m + 32
    return 8192 / max(1, 8150 // per)


def layout(dims: int, rows: int, truncate_dim: int | None = None, m: int = 16) -> list[tuple[str, float]]:
    """What pgmrl stores for a set (bytes): the full vector, the halfvec coarse vector, the coarse HNSW index, and
    the optional binary and full-dimension HNSW indexes."""
    full = dims * FLOAT32 + VARLENA
    out = [(f"embedding vector({dims})", full * rows)]
    if truncate_dim:
        coarse = truncate_dim * HALF + VARLENA
        out.append((f"coarse halfvec({truncate_dim})", coarse * rows))
        out.append((f"coarse HNSW index (m {m}), estimate", hnsw_bytes_per_row(coarse, m) * rows))
    out.append((f"optional binary HNSW on bit({dims}), estimate", hnsw_bytes_per_row(dims // 8 + VARLENA, m) * rows))
    if dims <= 2000:
        out.append((f"optional full-dimension HNSW (m {m}), estimate", hnsw_bytes_per_row(full, m) * rows))
    return out
