"""The model selection guide's decision tree, read from catalogue.json (mrl.recommend_config in SQL is generated
from the same rules). Content type decides first (code, then multilingual/CJK), then: LLM re-ranking ->
all-MiniLM-L6-v2; storage -> an MRL model; domain-specific -> fine-tune a base model; else a strong general model."""

from __future__ import annotations

from dataclasses import dataclass

from .catalogue import data


@dataclass(frozen=True)
class Recommendation:
    config: str
    alternative: str | None
    truncate_dim: int | None
    fine_tune: bool
    reason: str


def recommend(llm_rerank: bool = False, storage: bool = False, domain: bool = False, multilingual: bool = False,
              code: bool = False, speed: bool = False) -> Recommendation:
    """The first rule of the tree whose questions are all answered yes (the last rule has none)."""
    answers = {"llm_rerank": llm_rerank, "storage": storage, "domain": domain, "multilingual": multilingual,
               "code": code, "speed": speed}
    for rule in data()["decision_tree"]:
        if all(answers[q] for q in rule["when"]):
            return Recommendation(rule["config"], rule["alternative"], rule["truncate_dim"], rule["fine_tune"],
                                  rule["reason"])
    raise AssertionError("catalogue.json: the decision tree has no final rule without conditions")
