"""Datasets of query-document pairs as stored in the database (mrl.finetune_datasets / mrl.finetune_pairs)."""

from __future__ import annotations

from ..errors import PgmrlError


def documents(conn, slug: str) -> dict[str, str]:
    """id -> the text the set embeds, for every row with text."""
    return dict(conn.execute("SELECT id, body FROM mrl.set_documents(%s)", (slug,)).fetchall())


def dataset_info(conn, name: str) -> tuple[str, dict]:
    """(set slug, the dataset's config); a clear error for an unknown dataset."""
    row = conn.execute("SELECT source ->> 'slug', config FROM mrl.finetune_datasets WHERE name = %s",
                       (name,)).fetchone()
    if row is None:
        known = [r[0] for r in conn.execute("SELECT name FROM mrl.finetune_datasets ORDER BY name")]
        raise PgmrlError(f"unknown dataset {name!r}" + (f"; known: {', '.join(known)}" if known else
                                                        "; create one with `pgmrl finetune generate`"))
    return row[0], row[1] or {}


def load_dataset(conn, name: str) -> tuple[str, list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(set slug, train (doc_id, query, doc), validation (doc_id, query)); pairs whose row is gone are left out."""
    slug, _ = dataset_info(conn, name)
    docs = documents(conn, slug)
    pairs = conn.execute("SELECT doc_id, query, split FROM mrl.finetune_pairs WHERE dataset = %s ORDER BY n",
                         (name,)).fetchall()
    train = [(d, q, docs[d]) for d, q, s in pairs if s == "train" and d in docs]
    val = [(d, q) for d, q, s in pairs if s == "validation" and d in docs]
    return slug, train, val
