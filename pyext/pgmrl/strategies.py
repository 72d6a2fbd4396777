"""The search strategies, named once for Python (the SQL names them once too: mrl_internal._strategies()).

two_stage: coarse HNSW on the truncated vector, exact re-rank with the full one (the default);
binary_two_stage: the same with a binary-quantized first stage; hnsw: full-dimension HNSW; coarse: the truncated
vector alone; exact: a sequential scan over the full vectors (the reference the others are measured against).
"""

from __future__ import annotations

from typing import Literal, get_args

Strategy = Literal["two_stage", "binary_two_stage", "hnsw", "coarse", "exact"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
TWO_STAGE: tuple[str, ...] = ("two_stage", "binary_two_stage")  # the strategies `tune` can tune
