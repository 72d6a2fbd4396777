"""The built-in embedding models and their aliases, read from catalogue.json (the one source: the SQL seed in
sql/functions/070_configs.sql is generated from the same file by sqlgen)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Model:
    name: str
    model: str
    provider: str
    dims: int
    supports_mrl: bool
    matryoshka_dims: tuple[int, ...] | None
    default_truncate_dim: int | None
    query_prefix: str
    document_prefix: str
    max_seq_length: int
    params_millions: float
    best_for: str
    aliases: tuple[str, ...]

    @property
    def mrl_dims(self) -> tuple[int, ...] | None:
        return self.matryoshka_dims


@lru_cache(maxsize=1)
def data() -> dict[str, Any]:
    """The parsed catalogue.json: {"questions", "models", "decision_tree"}."""
    text = (resources.files("pgmrl.guide") / "catalogue.json").read_text(encoding="utf-8")
    return json.loads(text)


def _model(row: dict[str, Any]) -> Model:
    fields = dict(row)
    fields["matryoshka_dims"] = tuple(row["matryoshka_dims"]) if row["matryoshka_dims"] else None
    fields["aliases"] = tuple(row["aliases"])
    return Model(**fields)


CATALOGUE: dict[str, Model] = {m["name"]: _model(m) for m in data()["models"]}
ALIASES: dict[str, str] = {alias: m.name for m in CATALOGUE.values() for alias in m.aliases}


def lookup(name: str) -> Model | None:
    """A built-in model by name or alias (case-insensitive), else None."""
    name = name.lower()
    return CATALOGUE.get(ALIASES.get(name, name))
