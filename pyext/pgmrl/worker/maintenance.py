"""Set maintenance the worker does after draining the queue: fitting PCA rotations that are due, and switching in
re-embedded replacements (blue/green model changes) once they are complete."""

from __future__ import annotations

import logging

import numpy as np
import psycopg

from ..db import VectorList, scalar, to_numpy
from ..errors import PgmrlError
from ..matryoshka import fit_rotation

log = logging.getLogger("pgmrl.worker")


def fit_set_rotation(conn: psycopg.Connection, set_id: int, sample: int = 50000) -> int:
    """Fits and stores the PCA rotation of a set; returns the number of vectors it was fitted on."""
    with conn.transaction():
        row = conn.execute("SELECT slug, truncate_dim FROM mrl.embedding_sets WHERE id = %s FOR UPDATE",
                           (set_id,)).fetchone()
        if row is None:  # dropped since it was found due; the caller logs the failure
            raise PgmrlError(f"embedding set {set_id} no longer exists")
        slug, tdim = row
        rows = conn.execute("SELECT e FROM mrl_internal._sample_embeddings(%s, %s) AS e", (set_id, sample)).fetchall()
        if len(rows) < tdim:
            log.info("set %s: %d vectors, need at least %d to fit a %d-d rotation", slug, len(rows), tdim, tdim)
            conn.execute("UPDATE mrl.embedding_sets SET rotation_requested_at = NULL WHERE id = %s", (set_id,))
            return 0
        x = np.vstack([to_numpy(r[0]) for r in rows])
        components, explained = fit_rotation(x, tdim)
        total = scalar(conn.execute("SELECT count(*) FROM mrl_internal._sample_embeddings(%s, NULL)", (set_id,)))
        conn.execute("SELECT mrl_internal._store_rotation(%s, %s, %s, %s)",
                     (set_id, VectorList(components), [float(v) for v in explained], total))
    log.info("set %s: fitted a %d-d rotation on %d vectors (%.1f%% of the variance)", slug, tdim, len(x),
             100 * float(explained.sum()))
    # every coarse vector was written again: a role that does not own the table updated it in place, leaving each
    # old row version behind until the table is compacted
    with conn.transaction():
        compacted = scalar(conn.execute("SELECT mrl_internal._compact_after_refit(%s)", (set_id,)))
    if compacted is None:
        log.warning("set %s: the refit left the old coarse vectors in its vectors table (twice its size until "
                    "compacted); run `pgmrl compact %s` as the set's owner", slug, slug)
    return len(x)


def fit_due_rotations(conn: psycopg.Connection) -> None:
    """Fits every rotation that is due; one set's failure is logged and does not stop the others."""
    due = [r[0] for r in conn.execute("SELECT mrl_internal._rotation_due()").fetchall()]
    conn.commit()
    for set_id in due:
        try:
            fit_set_rotation(conn, set_id)
        except psycopg.OperationalError:
            raise
        except Exception as exc:  # one set's maintenance must not stop the others
            conn.rollback()
            log.error("set %d: fitting the rotation failed: %s", set_id, exc)


def switch_due_sets(conn: psycopg.Connection) -> list[str]:
    """Switches in every replacement set whose re-embedding is complete; returns the slugs switched."""
    switched = []
    for slug in [r[0] for r in conn.execute("SELECT mrl_internal._switch_due()").fetchall()]:
        try:
            with conn.transaction():
                conn.execute("SELECT mrl.switch_embedding_set(%s)", (slug,))
        except psycopg.errors.InsufficientPrivilege:
            log.warning("set %s is re-embedded but this worker may not switch it in: run "
                        "SELECT mrl.switch_embedding_set('%s') as the set's owner", slug, slug)
            continue
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            log.error("set %s: switching in its replacement failed: %s", slug, exc)
            continue
        switched.append(slug)
        log.info("set %s: switched to its re-embedded replacement", slug)  # (a tuning reset is logged as a notice)
    conn.commit()
    return switched
