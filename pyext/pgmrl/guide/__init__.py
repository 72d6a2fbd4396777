"""The model selection guide: the built-in catalogue (catalogue.json), the decision tree, storage sizes, and the
generator of the SQL that seeds the same facts into the database (sqlgen)."""

from .catalogue import ALIASES, CATALOGUE, Model, lookup
from .recommend import Recommendation, recommend
from .storage import FLOAT32, HALF, VARLENA, guide_gb, hnsw_bytes_per_row, layout

__all__ = ["ALIASES", "CATALOGUE", "FLOAT32", "HALF", "VARLENA", "Model", "Recommendation", "guide_gb",
           "hnsw_bytes_per_row", "layout", "lookup", "recommend"]
