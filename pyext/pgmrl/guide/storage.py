"""Storage sizes: the guide's per-vector figure, and what pgmrl stores for a set (vectors, coarse vectors, HNSW
index estimates) so that `pgmrl storage` can compare them with what a database measures."""

from __future__ import annotations

FLOAT32 = 4  # bytes per dimension of a full `vector`
HALF = 2     # bytes per dimension of a `halfvec`
VARLENA = 8  # header of a pgvector value (4-byte varlena + dims/unused)


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


def layout(dims: int, rows: int, truncate_dim: int | None = None, m: int = 16,
           full_type: str = "halfvec") -> list[tuple[str, float]]:
    """What pgmrl stores for a set (bytes): the full vector (`full_type`: halfvec, the default, or vector), the
    halfvec coarse vector, the coarse HNSW index, and the optional binary and full-dimension HNSW indexes."""
    if full_type not in ("halfvec", "vector"):
        raise ValueError(f"full_type must be 'halfvec' or 'vector', not {full_type!r}")
    full = dims * (HALF if full_type == "halfvec" else FLOAT32) + VARLENA
    out: list[tuple[str, float]] = [(f"embedding {full_type}({dims})", full * rows)]
    if truncate_dim:
        coarse = truncate_dim * HALF + VARLENA
        out.append((f"coarse halfvec({truncate_dim})", coarse * rows))
        out.append((f"coarse HNSW index (m {m}), estimate", hnsw_bytes_per_row(coarse, m) * rows))
    out.append((f"optional binary HNSW on bit({dims}), estimate", hnsw_bytes_per_row(dims // 8 + VARLENA, m) * rows))
    if dims <= (4000 if full_type == "halfvec" else 2000):  # pgvector's HNSW limits
        out.append((f"optional full-dimension HNSW (m {m}), estimate", hnsw_bytes_per_row(full, m) * rows))
    return out
