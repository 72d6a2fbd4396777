"""Matryoshka maths, in one place: truncate-then-renormalise, the fitted rotation, agreement.

The database computes coarse vectors with mrl.coarse_of() (same definitions); the worker, the benchmarks and
the tests use these functions to fit rotations and to check the SQL against numpy.
"""

from __future__ import annotations

import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n == 0, 1, n)


def truncate(x: np.ndarray, dim: int) -> np.ndarray:
    """MRL truncation: the first `dim` components, re-normalised to unit length."""
    x = np.asarray(x, dtype=np.float32)
    if not 0 < dim <= x.shape[-1]:
        raise ValueError(f"dim must be in 1..{x.shape[-1]}, got {dim}")
    return normalize(x[..., :dim])


def fit_rotation(vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Principal directions of the (uncentred) vectors, strongest first.

    Returns (components, explained) with components of shape (dim, D): the rows of an orthogonal rotation.
    Uncentred because queries are projected by inner products alone (measured on the Debian corpus: slightly
    better two-stage agreement than centred PCA at 64 and 128 dimensions).
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError("need a 2-D array of at least two vectors")
    if not 0 < dim <= x.shape[1]:
        raise ValueError(f"dim must be in 1..{x.shape[1]}, got {dim}")
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    explained = (s**2) / (s**2).sum()
    # Fix the sign of each direction (SVD's is arbitrary) so refits on the same data agree.
    signs = np.sign(vt[:dim].sum(axis=1))
    signs[signs == 0] = 1
    return (vt[:dim] * signs[:, None]).astype(np.float32), explained[:dim]


def project(x: np.ndarray, components: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Coarse vector of a rotation set: normalise((R . x)[:dim])."""
    c = components if dim is None else components[:dim]
    return normalize(np.asarray(x, dtype=np.float32) @ c.T)


def agreement(found: list, reference: list, k: int) -> float:
    """Share of the reference top-k that the other list also has in its top-k."""
    ref = list(reference)[:k]
    if not ref:
        return 1.0
    return len(set(list(found)[:k]) & set(ref)) / len(ref)
